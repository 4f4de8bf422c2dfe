"""How long the grader takes on one submission: the reference solution and the released stubs.

    .venv/bin/python bench/grade.py [--repeats 3]

Prints the median wall time of a whole grading (all 26 hidden checks, 100 points) of each, with the
number of cores and the machine's load average, and the time of the slowest checks. The target: under
one minute on 2 cores.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from asgn3.data_paths import KIT_DIR

sys.path.insert(0, str(KIT_DIR))

from bench.common import median_seconds  # noqa: E402
from staff.grade import Grader  # noqa: E402
from staff.markers import stub_source  # noqa: E402
from staff.sandbox import isolation  # noqa: E402
from staff.submission import student_files  # noqa: E402


def submission(folder, stubs):
    """A zip of the master's asgn3 sources, with the student files stubbed when asked."""
    for path in (KIT_DIR / "asgn3").rglob("*.py"):
        rel = path.relative_to(KIT_DIR)
        if "build" not in rel.parts:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / rel)
    if stubs:
        for rel in student_files():
            (folder / rel).write_text(stub_source((folder / rel).read_text(), rel))
    zip_path = folder.with_suffix(".zip")
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in folder.rglob("*.py"):
            archive.write(path, path.relative_to(folder).as_posix())
    return zip_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"sandbox: {isolation()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, stubs in [("reference", False), ("stubs", True)]:
            zip_path = submission(Path(tmp) / name, stubs)
            scores = []

            def grade_once(zip_path=zip_path, scores=scores):
                scores.append(Grader(zip_path).grade()["score"])

            seconds = median_seconds(grade_once, repeats=args.repeats, warmup=0)
            print(
                f"{name}: score {scores[-1]:g} / 100, median {seconds:.1f} s over {args.repeats} gradings "
                f"(load average now {os.getloadavg()[0]:.1f})"
            )
        start = time.monotonic()
        Grader(submission(Path(tmp) / "verbose", False), verbose=True).grade()
        print(f"one more reference grading with per-check times above: {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
