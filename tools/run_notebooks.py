"""Execute the kit's notebooks headless, each from a clean kernel, and write the executed copies.

    python tools/run_notebooks.py --out output                     # all, in the manifest's order
    python tools/run_notebooks.py --out output RNN_Captioning      # a subset (names with or without .ipynb)
    python tools/run_notebooks.py --out output --param TRAIN_FULL=True RNN_Captioning
    python tools/run_notebooks.py --out output --figures           # also save every figure as a PNG
    python tools/run_notebooks.py --list                           # the notebooks it would run

The executed copies (with their figures) go to the output folder; the committed notebooks are not touched.
A `--param NAME=VALUE` is set in a cell inserted right after the notebook's cell tagged `parameters`, the
way papermill does it. After each notebook the script prints its run time and the checks it printed (see
asgn3/notebook_checks.py); it exits non-zero when a cell raised or a check failed.
"""

import argparse
import ast
import base64
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the asgn3 of this kit, not another
from asgn3.assignment import NOTEBOOKS as MANIFEST_NOTEBOOKS  # noqa: E402
from asgn3.data_paths import KIT_DIR  # noqa: E402
from asgn3.notebook_checks import parse_checks  # noqa: E402

NOTEBOOKS = tuple(notebook.name for notebook in MANIFEST_NOTEBOOKS)  # the assignment's, in its order


def notebook_path(name):
    """The path of a kit notebook given its name, with or without .ipynb, or a path to any notebook."""
    path = Path(name)
    if path.suffix != ".ipynb":
        path = path.with_suffix(".ipynb")
    if not path.exists() and not path.is_absolute():
        path = KIT_DIR / path
    if not path.exists():
        raise FileNotFoundError(
            f"notebook {name!r} not found (looked for {path}); the kit's notebooks are {', '.join(NOTEBOOKS)}"
        )
    return path


def parse_param(text):
    """Split 'NAME=VALUE' into (NAME, VALUE); VALUE is a Python literal, else taken as a string."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ValueError(f"expected a parameter as NAME=VALUE (e.g. TRAIN_FULL=True), got {text!r}")
    try:
        return name, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return name, value.strip()


def parameters_cell(nb):
    """The index of the notebook's cell tagged 'parameters', or None."""
    for index, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def parameter_names(nb):
    """The names the notebook's 'parameters' cell assigns (an empty set without such a cell)."""
    index = parameters_cell(nb)
    if index is None:
        return set()
    tree = ast.parse(nb.cells[index].source)
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def inject_parameters(nb, params):
    """Insert a cell setting those of `params` (a dict) that the notebook's 'parameters' cell defines.

    Returns the names set; the others do not belong to this notebook and are left out.
    """
    names = [name for name in params if name in parameter_names(nb)]
    if names:
        source = "# Parameters set by tools/run_notebooks.py\n" + "".join(
            f"{name} = {params[name]!r}\n" for name in names
        )
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(parameters_cell(nb) + 1, cell)
    return names


def check_parameters(paths, params):
    """Raise ValueError naming any parameter that none of the notebooks defines (a typo, most likely)."""
    known = set().union(*(parameter_names(nbformat.read(p, as_version=4)) for p in paths))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}: the notebooks run define "
            f"{', '.join(sorted(known)) or 'no parameters'} in their 'parameters' cells"
        )


def execute_notebook(path, params=None, timeout=1800, cwd=None):
    """Execute a notebook from a clean kernel.

    Inputs:
    - path: the notebook file.
    - params: optional dict of parameters to inject after the cell tagged 'parameters'.
    - timeout: seconds allowed per cell.
    - cwd: the kernel's working directory (default: the notebook's folder, as Jupyter does).

    Returns a tuple of:
    - nb: the executed notebook (executed up to the failing cell when one raised).
    - seconds: the wall time of the execution.
    - error: None, or the CellExecutionError raised by the failing cell.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, params or {})
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd or path.parent)}}
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = exc
    return nb, time.perf_counter() - start, error


def printed_text(nb):
    """Everything the notebook's cells printed to stdout, in order."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                parts.append(output["text"])
    return "".join(parts)


def export_figures(nb, folder):
    """Save every PNG output of an executed notebook as folder/cellNN_K.png; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, cell in enumerate(nb.cells):
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        for k, png in enumerate(pngs):
            path = folder / f"cell{index:02d}_{k}.png"
            path.write_bytes(base64.b64decode(png))
            paths.append(path)
    return paths


def run(names, out_dir, params=None, timeout=1800, figures=False, cwd=None):
    """Execute the named notebooks into out_dir, printing times and checks; returns True if all passed."""
    paths = [notebook_path(name) for name in names]
    check_parameters(paths, params or {})
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    all_ok = True
    total = 0.0
    for path in paths:
        print(f"Executing {path.name} ...", flush=True)
        nb, seconds, error = execute_notebook(path, params, timeout, cwd)
        total += seconds
        out_path = out_dir / path.name
        nbformat.write(nb, out_path)
        checks = parse_checks(printed_text(nb))
        failed = [c for c in checks if not c.passed]
        status = "raised an error" if error else ("FAILED checks" if failed else "ok")
        print(
            f"  {path.name}: {status} in {seconds:.0f} s, {len(checks)} checks, {len(failed)} failed "
            f"-> {out_path}",
            flush=True,
        )
        for check in failed:
            print(
                f"  failed check: {check.name}: {check.quantity} {check.value:g} "
                f"(should be {check.relation} {check.bound:g})"
            )
        if error:
            print("  " + str(error).strip().splitlines()[-1])
        if figures:
            pngs = export_figures(nb, out_dir / "figures" / path.stem)
            print(f"  {len(pngs)} figures saved in {out_dir / 'figures' / path.stem}")
        all_ok = all_ok and not error and not failed
    print(f"Done in {total:.0f} s; executed notebooks are in {out_dir}")
    return all_ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks",
        nargs="*",
        default=list(NOTEBOOKS),
        help=f"notebooks to run (default: all of {', '.join(NOTEBOOKS)})",
    )
    parser.add_argument("--out", default="output", help="folder for the executed copies (default: output)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a parameter of the notebooks' 'parameters' cell, e.g. TRAIN_FULL=True",
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)")
    parser.add_argument("--figures", action="store_true", help="also save every figure as a PNG")
    parser.add_argument("--cwd", default=None, help="the kernels' working directory (default: the kit)")
    parser.add_argument("--list", action="store_true", help="print the notebooks that would run, and stop")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(str(notebook_path(name)) for name in args.notebooks))
        return 0
    try:
        params = dict(parse_param(p) for p in args.param)
        return 0 if run(args.notebooks, args.out, params, args.timeout, args.figures, args.cwd) else 1
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
