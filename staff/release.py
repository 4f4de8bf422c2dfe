"""Write the student kit from the staff master copy: `python -m staff.release OUT_DIR`.

The kit is the master's tracked files (`git ls-files`, or a walk of the tree outside git) with:
- every marked region of a .py file or a notebook code cell replaced by its stub (staff/markers.py), and
  the notebooks' outputs cleared;
- the staff tools (`staff/`), the staff-only tests (those of staff/, and every test that exercises the
  reference code, i.e. names a module or function with marked regions) and the hostile fixtures left out.
Everything else (the data scripts, the shipped default model, the photos, the notebooks, kit.sh, README,
requirements, pyproject/setup) is copied as it is. A zip of the kit is written next to OUT_DIR, and the
tool refuses to finish when a non-trivial line of a reference region would survive in the kit.
"""

import argparse
import ast
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from asgn3.data_paths import KIT_DIR
from staff.markers import (
    find_regions,
    outside_lines,
    region_functions,
    region_lines,
    stub_notebook,
    stub_source,
)

STAFF_TESTS = {"tests/test_release.py", "tests/test_grade.py", "tests/test_collect_submission.py"}
STAFF_FILES = {"requirements-staff.txt"}  # what only the staff tools need (Dask for batch grading)
STAFF_PREFIXES = ("staff/", "tests/hostile/")
# Never part of a kit even outside git: environments, builds, downloads, outputs.
UNTRACKED = {
    ".git",
    ".venv",
    ".venv-bench",
    "build",
    "dist",
    "output",
    "checkpoints",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "coco_captioning",
    "tiny-imagenet-100-A",
    "fashion-mnist",
    "default",
}


def kit_files(kit_dir=KIT_DIR):
    """The kit's files as sorted relative POSIX paths: git's tracked files, or a filtered walk outside git."""
    kit_dir = Path(kit_dir)
    if (kit_dir / ".git").exists():
        listing = subprocess.run(
            ["git", "-C", str(kit_dir), "ls-files", "-z"], check=True, capture_output=True
        ).stdout.decode()
        names = [name for name in listing.split("\0") if name and (kit_dir / name).is_file()]
    else:
        names = [
            path.relative_to(kit_dir).as_posix()
            for path in kit_dir.rglob("*")
            if path.is_file()
            and not UNTRACKED & set(path.relative_to(kit_dir).parts)
            and path.suffix not in (".so", ".pyd", ".pyc")
        ]
    return sorted(names)


def marked_modules(kit_dir, names):
    """The dotted names of the kit's modules that hold marked regions (the code students write)."""
    return {
        name[:-3].replace("/", ".")
        for name in names
        if name.endswith(".py")
        and not name.startswith(STAFF_PREFIXES)
        and find_regions((Path(kit_dir) / name).read_text(encoding="utf-8"), name)
    }


def load_manifest(kit_dir=KIT_DIR):
    """The manifest (asgn3/assignment.py) of a kit, loaded from its file: the kit need not be this one."""
    spec = importlib.util.spec_from_file_location(
        "_kit_assignment", Path(kit_dir) / "asgn3" / "assignment.py"
    )
    manifest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(manifest)
    return manifest


def manifest_problems(kit_dir, manifest, marked=()):
    """What the kit and its manifest disagree on, as sentences (empty when they agree).

    Every notebook of the manifest exists; every graded function exists and holds a marked region;
    every marked region (marked: the modules with regions) sits in a graded function, else the grader
    would never look at it.
    """
    kit_dir = Path(kit_dir)
    problems = [
        f"the manifest lists the notebook {nb.filename}, which is not in {kit_dir}"
        for nb in manifest.NOTEBOOKS
        if not (kit_dir / nb.filename).is_file()
    ]
    graded = {function for q in manifest.QUESTIONS for function in q.functions}
    problems += [
        f"{module} has marked regions but no question grades it: add its functions to asgn3/assignment.py"
        for module in sorted(set(marked) - set(manifest.graded_modules()))
    ]
    for module in manifest.graded_modules():
        rel = module.replace(".", "/") + ".py"
        if not (kit_dir / rel).is_file():
            problems.append(f"the manifest names the module {module}, but {rel} does not exist")
            continue
        owners = region_functions((kit_dir / rel).read_text(encoding="utf-8"), rel)
        for function in sorted(f for f in graded if f.startswith(module + ":")):
            if function.split(":")[1] not in owners:
                problems.append(
                    f"the manifest grades {function}, but {rel} has no marked region in a function of that "
                    "name: put its reference code between START/END markers"
                )
        for owner in sorted(set(owners) - {f.split(":")[1] for f in graded if f.startswith(module + ":")}):
            problems.append(
                f"{rel} has a marked region in {owner or 'its module level'}, which no question grades: "
                f"add {module}:{owner} to a question's functions in asgn3/assignment.py"
            )
    return problems


def _imported_modules(source):
    """Every module a Python source imports, as dotted names (`from a import b` gives a and a.b)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def is_staff_only(name, kit_dir, marked):
    """Whether a file stays out of the student kit.

    Staff-only: the staff tools, their requirements, every other script that imports them (a benchmark
    of the grader), their tests, and every test that exercises reference code, i.e. imports a module
    with marked regions (or staff), or executes the notebooks.
    """
    if name.startswith(STAFF_PREFIXES) or name in STAFF_TESTS or name in STAFF_FILES:
        return True
    if name.endswith(".py") and not name.startswith("tests/"):  # e.g. a benchmark of the grader
        return any(
            module.split(".")[0] == "staff"
            for module in _imported_modules((Path(kit_dir) / name).read_text(encoding="utf-8"))
        )
    if name.startswith("tests/") and name.endswith(".py"):
        text = (Path(kit_dir) / name).read_text(encoding="utf-8")
        imports = _imported_modules(text)
        return (
            bool(imports & marked)
            or any(module.split(".")[0] == "staff" for module in imports)
            or "nbclient" in imports
            or ".ipynb" in text
        )
    return False


def _write_release_file(source, target, name):
    """Copy one file into the kit, stubbing .py files and notebooks; returns the number of regions."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".py"):
        text = source.read_text(encoding="utf-8")
        target.write_text(stub_source(text, name), encoding="utf-8")
        return len(find_regions(text, name))
    if name.endswith(".ipynb"):
        notebook = json.loads(source.read_text(encoding="utf-8"))
        count = stub_notebook(notebook, name)
        target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return count
    shutil.copy2(source, target)
    return 0


def reference_lines(kit_dir, names, shared=False):
    """The non-trivial lines of every reference region, stripped: what must not reach the student kit.

    Trivial lines are blank lines, comments, `pass`, and lines that also appear outside the regions of
    the master (a `return out, cache` or `N, T, D = x.shape` may legitimately be there too). With
    shared=True, returns instead those lines of the regions (longer than 12 characters) that the
    master also has outside them: the student sees them, which may give part of a solution away.
    """
    secret, public = set(), set()
    marked = marked_modules(kit_dir, names)
    for name in names:
        if not name.endswith((".py", ".ipynb")) or name.startswith(STAFF_PREFIXES) or name in STAFF_TESTS:
            continue
        for text in _code_texts(Path(kit_dir) / name):
            secret |= {line.strip() for line in region_lines(text, name)}
            if not is_staff_only(name, kit_dir, marked):  # only what the student kit shows is public
                public |= {line.strip() for line in outside_lines(text, name)}
    if shared:
        return {line for line in secret & public if len(line) > 12 and not line.startswith("#")}
    return {line for line in secret - public if line and not line.startswith("#") and line != "pass"}


def _code_texts(path):
    """The Python texts of a file: the file itself, or each code cell of a notebook."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        return [
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells
            if c.get("cell_type") == "code"
        ]
    return [path.read_text(encoding="utf-8")]


TEXT_SUFFIXES = (".py", ".ipynb", ".md", ".txt", ".sh", ".json", ".cfg", ".toml", ".pyx")


def leaked_lines(out_dir, secret):
    """(file, line) pairs of the student kit that repeat a reference line; empty when nothing leaked."""
    leaks = []
    for path in sorted(Path(out_dir).rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
            texts = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]
        else:
            texts = [path.read_text(encoding="utf-8", errors="replace")]
        leaks += [
            (path.relative_to(out_dir).as_posix(), line.strip())
            for text in texts
            for line in text.splitlines()
            if line.strip() in secret
        ]
    return leaks


def release(out_dir, kit_dir=KIT_DIR, verbose=True):
    """Write the student kit into out_dir (which must not exist yet) and a zip of it next to it.

    Inputs:
    - out_dir: the folder to create.
    - kit_dir: the staff master copy (this repository by default).
    - verbose: print what was stubbed and left out.

    Returns a dict: `files` (released paths), `left_out` (staff-only paths), `regions` (stubbed count),
    `zip` (path of the zip).
    """
    out_dir, kit_dir = Path(out_dir).resolve(), Path(kit_dir).resolve()
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists: give a new folder (the release never overwrites)")
    if out_dir == kit_dir or kit_dir in out_dir.parents:
        raise ValueError(f"write the release outside the master copy {kit_dir}, not to {out_dir}")
    problems = manifest_problems(kit_dir, load_manifest(kit_dir))
    if problems:
        raise ValueError(
            "the kit and its manifest (asgn3/assignment.py) disagree:\n  " + "\n  ".join(problems)
        )
    names = kit_files(kit_dir)
    marked = marked_modules(kit_dir, names)
    released, left_out, regions = [], [], 0
    for name in names:
        if is_staff_only(name, kit_dir, marked):
            left_out.append(name)
            continue
        regions += _write_release_file(kit_dir / name, out_dir / name, name)
        released.append(name)
    leaks = leaked_lines(out_dir, reference_lines(kit_dir, names))
    if leaks:
        shutil.rmtree(out_dir)
        shown = "\n".join(f"  {name}: {line}" for name, line in leaks[:20])
        raise RuntimeError(f"reference code would reach the student kit, release removed:\n{shown}")
    archive = out_dir.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in released:
            zf.write(out_dir / name, f"{out_dir.name}/{name}")
    if verbose:
        print(f"student kit: {len(released)} files in {out_dir}, {regions} regions stubbed, zip {archive}")
        print("left out (staff only): " + (", ".join(left_out) or "nothing"))
        shared = sorted(reference_lines(kit_dir, names, shared=True))
        if shared:
            print(
                f"note: {len(shared)} lines of reference code also appear outside the markers, so the "
                "student kit shows them (check that they give nothing away):"
            )
            print("\n".join(f"  {line}" for line in shared))
    return {"files": released, "left_out": left_out, "regions": regions, "zip": archive}


def main(argv=None):
    """Command line: python -m staff.release OUT_DIR [--kit KIT_DIR]."""
    parser = argparse.ArgumentParser(description="Write the student kit (stubs instead of reference code).")
    parser.add_argument("out_dir", help="folder to create for the student kit (a zip is written next to it)")
    parser.add_argument("--kit", default=str(KIT_DIR), help="the staff master copy (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        release(args.out_dir, args.kit)
    except (FileExistsError, ValueError, RuntimeError) as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
