"""Submissions made from the master: the reference (what a perfect student submits), and variations of it."""

import shutil
import zipfile
from pathlib import Path

from asgn3.data_paths import KIT_DIR
from staff.markers import find_regions


def copy_reference(folder):
    """The master's asgn3 sources into folder/asgn3; returns folder."""
    folder = Path(folder)
    for path in (KIT_DIR / "asgn3").rglob("*.py"):
        rel = path.relative_to(KIT_DIR)
        if "build" in rel.parts:
            continue
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / rel)
    return folder


def zip_folder(folder, zip_path, prefix=""):
    """Zip every file under folder (names relative to it, after `prefix`); returns zip_path."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return zip_path


def replace_region(folder, rel, function, code):
    """Replace the marked region inside `function` of folder/rel by `code` (indented to fit)."""
    path = Path(folder) / rel
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(f"def {function}("))
    region = next(r for r in find_regions("\n".join(lines)) if r.start > start)
    body = [region.indent + line if line else line for line in code.strip("\n").splitlines()]
    path.write_text("\n".join(lines[: region.start + 1] + body + lines[region.end :]) + "\n")


def append_to(folder, rel, code):
    """Add top-level code at the end of folder/rel (it runs when the module is imported)."""
    path = Path(folder) / rel
    path.write_text(path.read_text() + "\n" + code.strip("\n") + "\n")
