"""A Gradescope autograder bundle of this master: `python -m staff.gradescope OUT.zip`.

The zip holds, at its root (Gradescope's autograder specification):
- `setup.sh`: run once, as root, when Gradescope builds the autograder's Ubuntu image. It installs a
  Python >= 3.11 (from apt when the image has none), the compilers, a virtual environment at
  /opt/asgn3-venv with the kit's requirements.txt and the compiled im2col extension, points `python3` on
  PATH at it, and grades the reference once (the build fails rather than every student's submission).
  The hidden checks draw their own random inputs and models: they need none of the kit's data sets.
- `run_autograder`: Gradescope copies it to /autograder/run_autograder and runs it from /autograder for
  each submission. It runs `python3 -m staff.gradescope --grade` from the bundle in /autograder/source/kit.
- `kit/`: the master's asgn3 (the reference) and staff (the grader and its hidden checks), the build
  files (setup.py, pyproject.toml, requirements.txt); `settings.json`: the visibility chosen when the
  bundle was made.

Grading (`--grade`): what the student uploaded is in /autograder/submission/, either the four notebooks
and the asgn3/ folder (Gradescope unpacks an uploaded zip) or assignment3.zip itself. It is graded in the
sandbox like any submission, and /autograder/results/results.json gets Gradescope's fields: `score`,
`execution_time`, `output` (which notebooks and files were found), `tests` (one per hidden check:
`name`, `score`, `max_score`, `status`, `output`, `visibility`, `tags` = the question), `visibility`, and
`stdout_visibility` hidden (the log is for staff). ASGN3_AUTOGRADER_ROOT moves /autograder (tests).
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

from asgn3.assignment import graded_modules, handed_in_notebooks, total_points
from asgn3.data_paths import KIT_DIR
from staff.release import kit_files
from staff.report import format_table

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")
# What the bundle's kit holds: the reference, the grader and what building them needs.
BUNDLED = ("asgn3/", "staff/", "setup.py", "pyproject.toml", "requirements.txt")
EXECUTABLE = 0o100755 << 16  # a zip entry's Unix mode: a regular file, rwxr-xr-x
READABLE = 0o100644 << 16  # rw-r--r--

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (Ubuntu); the bundle is
# unpacked in /autograder/source. Made by `python -m staff.gradescope` from the asgn3 master.
set -euo pipefail
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${ASGN3_VENV:-/opt/asgn3-venv}"
export DEBIAN_FRONTEND=noninteractive

newest_python() {  # the first Python >= 3.11 on PATH
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

echo "==> System packages: compilers, util-linux (the sandbox's unshare and setpriv), Python >= 3.11"
apt-get update
apt-get install -y --no-install-recommends build-essential ca-certificates util-linux zip unzip
PY=$(newest_python || true)
if [ -z "$PY" ]; then
  apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev
  PY=python3.11
fi
VERSION=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# Debian and Ubuntu split venv and the headers (for the extension) out of their Pythons
apt-get install -y --no-install-recommends "python$VERSION-venv" "python$VERSION-dev" || true

echo "==> A virtual environment in $VENV with the kit's requirements and the compiled extension"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$SOURCE/kit/requirements.txt"
(cd "$SOURCE/kit" && "$VENV/bin/python" -m pip install --quiet --no-build-isolation --no-deps -e .)
"$VENV/bin/python" -c "import asgn3.im2col_cython"
# run_autograder runs the python3 on PATH: a wrapper, as a symlink would not find the venv's pyvenv.cfg
rm -f /usr/local/bin/python3  # (writing through an old link would overwrite the Python it points at)
printf '#!/bin/sh\nexec %s "$@"\n' "$VENV/bin/python" > /usr/local/bin/python3
chmod 755 /usr/local/bin/python3

echo "==> Grading the reference once (the image is refused if it does not score full marks)"
(cd "$SOURCE/kit" && /usr/local/bin/python3 -m staff.gradescope --self-test)
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope copies this to /autograder/run_autograder and runs it from /autograder for every
# submission: grade /autograder/submission into /autograder/results/results.json.
set -uo pipefail
ROOT="${ASGN3_AUTOGRADER_ROOT:-/autograder}"
cd "$ROOT/source/kit" && python3 -m staff.gradescope --grade
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then  # Python itself failed: still tell the student something
  mkdir -p "$ROOT/results"
  printf '{"score": 0, "output": "%s", "tests": []}\n' \
    "The autograder could not start (exit $status); this says nothing of your work: tell the staff." \
    > "$ROOT/results/results.json"
fi
exit $status
"""


# -- making the bundle --------------------------------------------------------------------------------


def bundle_files(kit_dir=KIT_DIR):
    """The master's files the bundle's kit holds (relative POSIX paths)."""
    return [name for name in kit_files(kit_dir) if name.startswith(BUNDLED) or name in BUNDLED]


def make_bundle(out_zip, visibility="visible", kit_dir=KIT_DIR):
    """Write the autograder zip; returns the list of its entries.

    Inputs:
    - out_zip: the zip to write (an existing one is replaced).
    - visibility: when students see the tests' results: 'visible' (at once, the default),
      'after_due_date', 'after_published' or 'hidden'.
    """
    if visibility not in VISIBILITIES:
        raise ValueError(f"unknown visibility {visibility!r}: use one of {', '.join(VISIBILITIES)}")
    files = bundle_files(kit_dir)
    missing = [name for name in ("staff/gradescope.py", "requirements.txt") if name not in files]
    if missing:
        raise ValueError(f"the master at {kit_dir} lacks {missing}: make the bundle from a full checkout")
    settings = {"visibility": visibility, "made": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
            info.external_attr, info.compress_type = EXECUTABLE, zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
        info = zipfile.ZipInfo("settings.json", date_time=time.gmtime()[:6])
        info.external_attr, info.compress_type = READABLE, zipfile.ZIP_DEFLATED
        archive.writestr(info, json.dumps(settings, indent=1) + "\n")
        for name in files:
            archive.write(Path(kit_dir) / name, f"kit/{name}")
        return archive.namelist()


# -- grading on Gradescope ----------------------------------------------------------------------------


def autograder_root():
    """/autograder, or where ASGN3_AUTOGRADER_ROOT says it is."""
    return Path(os.environ.get("ASGN3_AUTOGRADER_ROOT", "/autograder"))


def uploaded_zip(submission_dir, out_zip):
    """The zip to grade from what the student uploaded; returns its path.

    The upload's own zip when the folder holds one and no asgn3 folder (assignment3.zip not unpacked),
    else a zip of the folder's regular files (the notebooks and asgn3/ as Gradescope unpacked them;
    links are left out). The grader checks either zip like any other submission.
    """
    submission_dir = Path(submission_dir)
    zips = sorted(submission_dir.glob("*.zip"))
    if zips and not any(path.is_dir() for path in submission_dir.rglob("asgn3")):
        preferred = [path for path in zips if path.name == "assignment3.zip"]
        return (preferred or zips)[0]
    with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(submission_dir.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, path.relative_to(submission_dir).as_posix())
    return Path(out_zip)


def gradescope_results(result, visibility="visible"):
    """The grader's result as Gradescope's results.json: its fields only, each test with a visibility."""
    tests = [
        {
            "name": test["name"],
            "score": test["score"],
            "max_score": test["max_score"],
            "status": test["status"],
            "output": test["output"],
            "visibility": visibility,
            "tags": [test["question"]],
        }
        for test in result["tests"]
    ]
    return {
        "score": result["score"],
        "execution_time": result["execution_time"],
        "output": result["output"],
        "visibility": visibility,
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def failure_results(error, seconds):
    """results.json when the grader itself failed: no points yet, and a message for student and staff."""
    return {
        "score": 0,
        "execution_time": round(seconds, 1),
        "output": (
            f"The autograder could not grade this submission ({type(error).__name__}: {error}). This is "
            "not a judgement of your work: tell the course staff, who can run it again."
        ),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [],
    }


def grade_upload(root=None):
    """Grade root/submission into root/results/results.json (see the module docstring); returns it."""
    from staff.grade import Grader  # the sandbox is Linux-only: imported when grading, not when bundling

    root = Path(root) if root else autograder_root()
    settings_path = root / "source" / "settings.json"
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="asgn3-upload-") as scratch:
            zip_path = uploaded_zip(root / "submission", Path(scratch) / "assignment3.zip")
            result = Grader(zip_path).grade()
        print(format_table(result, f"== {zip_path.name} (graded from {root / 'submission'})"))
        results = gradescope_results(result, settings.get("visibility", "visible"))
    except Exception as error:  # noqa: BLE001 - Gradescope must get a results.json whatever happens
        traceback.print_exc()
        results = failure_results(error, time.monotonic() - start)
    (results_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results


def self_test(kit_dir=KIT_DIR):
    """Grade a zip of the master's own student files (the reference); True when it scores full marks."""
    from staff.grade import Grader

    with tempfile.TemporaryDirectory(prefix="asgn3-self-test-") as scratch:
        zip_path = Path(scratch) / "reference.zip"
        with zipfile.ZipFile(zip_path, "w") as archive:
            for module in graded_modules():
                rel = module.replace(".", "/") + ".py"
                archive.write(Path(kit_dir) / rel, rel)
            for name in handed_in_notebooks():
                archive.writestr(name, "{}")
        result = Grader(zip_path).grade()
    print(format_table(result, "== the reference, graded by the bundle"))
    return result["score"] == total_points(extra_credit=True)


def main(argv=None):
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Make (or, on Gradescope, run) the autograder bundle.")
    parser.add_argument("out_zip", nargs="?", help="the bundle to write, e.g. asgn3_autograder.zip")
    parser.add_argument(
        "--visibility",
        choices=VISIBILITIES,
        default="visible",
        help="when students see the checks' results (default: visible, at once)",
    )
    parser.add_argument("--grade", action="store_true", help="on Gradescope: grade the submission")
    parser.add_argument("--self-test", action="store_true", help="on Gradescope's build: grade the reference")
    args = parser.parse_args(argv)
    if args.grade:
        grade_upload()
        return 0
    if args.self_test:
        return 0 if self_test() else 1
    if not args.out_zip:
        parser.error("give the zip to write (python -m staff.gradescope asgn3_autograder.zip)")
    names = make_bundle(args.out_zip, args.visibility)
    print(
        f"wrote {args.out_zip}: setup.sh, run_autograder and the kit ({len(names) - 3} files). Upload it as "
        "the autograder of a Gradescope programming assignment worth 100 points (see README.md)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
