"""What a submission runs in: its asgn3 folder, and the sandbox kit assembled from it and the master.

The grader (staff/grade.py) extracts a submission's zip, finds its package, and builds the kit its
checks run on: the master's infrastructure, the submission's regions spliced into the master's student
files (the modules of the manifest's graded functions), and the runner with its protocol; errors are
pointed back into the student's own lines, and the note says which notebooks were handed in.
"""

import json
import os
import re
import shutil
from pathlib import Path

from asgn3.assignment import graded_modules, handed_in_notebooks
from asgn3.data_paths import KIT_DIR
from staff.markers import splice_with_lines, stub_source
from staff.safezip import locate_package

STAFF_DIR = Path(__file__).resolve().parent
RUNNER = "staff/runner.py"  # in the master and in the sandbox kit, next to the protocol it speaks
RUNNER_FILES = ("__init__.py", "protocol.py", "runner.py")
MAX_NOTEBOOK_BYTES = 20 << 20


def find_package(root):
    """The submission's asgn3 folder (at the root, or the one shallowest folder of that name), or None."""
    return locate_package(root, student_files(), scratch=None)[0]


def student_files():
    """The files students write (the modules of the manifest's graded functions), as relative paths."""
    return sorted(module.replace(".", "/") + ".py" for module in graded_modules())


def build_sandbox_kit(package, out_dir, kit_dir=KIT_DIR):
    """Assemble the kit the submission runs in; returns ({student file: how it was taken}, line maps).

    The master's infrastructure (every asgn3 .py without marked regions, and the compiled extension)
    is copied as it is, so a submission cannot replace it. In a file with marked regions, the student's
    regions are spliced into the master's current file (markers.splice_regions: infrastructure fixed
    after the release still applies, and the student's own top-level helpers are kept); a file whose
    regions do not correspond is used whole, and a missing file is the release stub. New .py files of
    the submission (its own helpers) are added; nothing else of it is copied. The line maps, {file
    under asgn3/: {kit line: the student's line}}, point errors back into the student's own files.
    """
    out_dir = Path(out_dir)
    master = Path(kit_dir) / "asgn3"
    own = set(student_files())
    provenance, line_maps = {}, {}
    for path in master.rglob("*"):
        rel = path.relative_to(kit_dir).as_posix()
        if "build" in path.relative_to(master).parts or "__pycache__" in rel or not path.is_file():
            continue
        if path.suffix not in (".py", ".so", ".pyd"):
            continue
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        submitted = package / path.relative_to(master) if package else None
        if rel in own and submitted is not None and submitted.is_file():
            text = submitted.read_text(encoding="utf-8", errors="replace")
            spliced, note, lines = splice_with_lines(path.read_text(encoding="utf-8"), text, rel)
            target.write_text(spliced, encoding="utf-8")
            line_maps[path.relative_to(master).as_posix()] = lines
            provenance[rel] = f"submitted: {note}"
        elif rel in own:
            target.write_text(stub_source(path.read_text(encoding="utf-8"), rel), encoding="utf-8")
            provenance[rel] = "missing (stub used)"
        else:
            shutil.copyfile(path, target)
    if package:
        for path in package.rglob("*.py"):
            target = out_dir / "asgn3" / path.relative_to(package)
            if not target.exists() and "build" not in path.relative_to(package).parts:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    (out_dir / "staff").mkdir()
    for name in RUNNER_FILES:
        shutil.copyfile(STAFF_DIR / name, out_dir / "staff" / name)
    for path in [out_dir, *out_dir.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return provenance, line_maps


def your_lines(error, line_maps):
    """An error text whose kit locations (`rnn_layers.py:57 in f`) point into the student's own files."""

    def mapped(match):
        name, line = match[1], int(match[2])
        if name not in line_maps:
            return match[0]
        if line in line_maps[name]:
            return f"your asgn3/{name}:{line_maps[name][line]}"
        return f"asgn3/{name}:{line} (kit code)"

    return re.sub(r"(?<![\w/.])((?:\w+/)*\w+\.py):(\d+)", mapped, error)


def notebook_note(root):
    """Which of the manifest's notebooks the submission holds, and whether they were executed."""
    parts = []
    for name in handed_in_notebooks():
        found = sorted(Path(root).rglob(name), key=lambda p: len(p.parts))
        if not found:
            parts.append(f"{name} missing")
            continue
        if found[0].stat().st_size > MAX_NOTEBOOK_BYTES:
            parts.append(f"{name} too large to read ({found[0].stat().st_size >> 20} MB: clear big outputs)")
            continue
        try:
            cells = json.loads(found[0].read_text(encoding="utf-8", errors="replace")).get("cells", [])
            executed = any(c.get("execution_count") for c in cells if isinstance(c, dict))
        except (ValueError, OSError, AttributeError, TypeError, RecursionError):
            parts.append(f"{name} is not a valid notebook (not JSON with cells): save it again from Jupyter")
            continue
        parts.append(f"{name} {'executed' if executed else 'NOT executed'}")
    return "notebooks: " + ", ".join(parts)
