"""Batch grading throughput: a class graded on a local Dask cluster against the same class one by one.

    .venv/bin/python bench/batch.py [--submissions 6] [--repeats 3] [--workers 2] [--only Q1,sigmoid]

The class is copies of the reference solution (each zip a little different, as real ones are). Each repeat
grades it both ways, in turns, so that the load of a busy machine falls on both alike: one by one
(`grade_one`, its checks 2 at a time, as `python -m staff.grade ZIP` does) and as a batch
(`staff.batch.grade_batch`, a fresh local cluster of N single-threaded workers, starting it included).
Prints the median submissions per minute of each and their ratio, with the cores and the load average;
and the CPU seconds each way spends per submission (this process and every process it waited for: the
cluster's, the sandbox's), which a busy machine disturbs much less than the wall time: on an idle machine
of C cores, a batch that keeps them busy grades about C * 60 / (CPU seconds per submission) a minute.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

KIT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT_DIR))

from asgn3.assignment import graded_modules  # noqa: E402
from staff.batch import grade_batch  # noqa: E402
from staff.grade import grade_one  # noqa: E402
from staff.sandbox import isolation  # noqa: E402


def make_class(folder, count):
    """count zips of the reference's student files, each with its own comment line (distinct hashes)."""
    folder.mkdir(parents=True)
    for index in range(count):
        with zipfile.ZipFile(folder / f"student{index:03d}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            for module in graded_modules():
                rel = module.replace(".", "/") + ".py"
                text = (KIT_DIR / rel).read_text() + f"\n# student {index}\n"
                archive.writestr(rel, text)
    return sorted(folder.glob("*.zip"))


def cpu_seconds():
    """CPU seconds used so far by this process and by the child processes it has waited for."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", help="grade only these checks (comma-separated), for a quicker run")
    args = parser.parse_args()
    only = args.only.split(",") if args.only else None
    print(f"sandbox: {isolation()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    rates = {"one by one": [], f"batch, {args.workers} workers": []}
    cpu = {name: [] for name in rates}
    with tempfile.TemporaryDirectory() as tmp:
        zips = make_class(Path(tmp) / "class", args.submissions)
        for repeat in range(args.repeats):
            start, used = time.perf_counter(), cpu_seconds()
            scores = [grade_one(path, only=only, seed=repeat, quiet=True)["score"] for path in zips]
            rates["one by one"].append(len(zips) / (time.perf_counter() - start) * 60)
            cpu["one by one"].append((cpu_seconds() - used) / len(zips))
            csv_path = Path(tmp) / f"gradebook{repeat}.csv"
            start, used = time.perf_counter(), cpu_seconds()
            rows = grade_batch(
                zips[0].parent, csv_path, args.workers, only=only, seed=repeat, log=lambda _: None
            )
            rates[f"batch, {args.workers} workers"].append(len(zips) / (time.perf_counter() - start) * 60)
            cpu[f"batch, {args.workers} workers"].append((cpu_seconds() - used) / len(zips))
            assert [row["score"] for row in rows] == scores, (rows, scores)
            print(
                f"repeat {repeat + 1}: "
                + ", ".join(
                    f"{name} {values[-1]:.2f}/min ({cpu[name][-1]:.1f} CPU s each)"
                    for name, values in rates.items()
                )
                + f" (load average {os.getloadavg()[0]:.1f})"
            )
    one, many = (median(values) for values in rates.values())
    cpu_one, cpu_many = (median(values) for values in cpu.values())
    print(
        f"{args.submissions} submissions, medians over {args.repeats} repeats: one by one {one:.2f} "
        f"submissions a minute, batch on {args.workers} workers {many:.2f} (ratio {many / one:.2f}); "
        f"CPU seconds per submission {cpu_one:.1f} one by one, {cpu_many:.1f} in the batch"
    )


if __name__ == "__main__":
    main()
