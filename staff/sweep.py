"""How far each hidden check of the reference stays from its bound, over many seeds.

    python -m staff.sweep --seeds 200                     # every check, seeds 0..199
    python -m staff.sweep --seeds 2000 --only gradients   # the gradient checks only
    python -m staff.sweep --seeds 50 --first 1000 --only Q4

For each seed the checks are built as the grader builds them, and their jobs run here, in this process
(the reference as the submission: the master is trusted, no sandbox). Every verdict line of the judges
is collected; printed per check and measure: the worst error over the seeds, the bound, the margin
(bound / worst error, the smallest first) and the seed of the worst. A check that fails at any seed is
named with its seed (reproduce it with `python -m staff.grade REF.zip --seed N`), and the command
exits 1. `sweep(...)` does the same for the tests, optionally with the student modules replaced by
another implementation.
"""

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from staff import runner
from staff.judging import Context, parse_verdicts, run_judge
from staff.protocol import Outcome, plain_array
from staff.questions import build_checks


def run_in_process(jobs, modules=None):
    """The Outcomes of jobs run here; modules: {student module: module to import instead}."""
    outcomes = []
    for job in jobs:
        options = dict(job.options)
        if modules and options.get("module") in modules:
            options["module"] = modules[options["module"]]
        arrays = {key: np.array(array, copy=True) for key, array in job.arrays.items()}
        try:
            outputs = {key: plain_array(out) for key, out in runner.TASKS[job.task](arrays, options).items()}
        except Exception as error:  # noqa: BLE001 - reported as the job's failure, as the runner does
            outcomes.append(Outcome(False, error=f"{type(error).__name__}: {error}"))
            continue
        present = {key: np.array(out) for key, out in outputs.items() if out is not None}
        outcomes.append(Outcome(True, arrays=present, missing=sorted(set(outputs) - set(present))))
    return outcomes


@dataclass
class Worst:
    """The worst error a check's measure reached over the seeds swept."""

    check: str
    measure: str
    error: float
    bound: float
    seed: int

    @property
    def margin(self):
        return self.bound / self.error if self.error > 0 else float("inf")


def sweep(seeds, only=None, modules=None, select=None):
    """Judge the checks built from each seed on the reference (or on `modules`, see run_in_process).

    only: as the grader's (question keys or parts of check names); select: a further filter, a
    function of a HiddenCheck. Returns (worst, failures): worst, a list of Worst (one per check and
    verdict name), the smallest margin first; failures, (seed, check name, judge's text) for every
    check that did not pass.
    """
    worst, failures = {}, []
    for seed in seeds:
        for check in build_checks(seed, only):
            if select and not select(check):
                continue
            reference = run_in_process(check.reference)
            broken = [outcome.error for outcome in reference if not outcome.ok]
            if broken:  # the grader would stop here: the reference must answer every hidden check
                failures.append((seed, check.name, "the reference failed: " + "; ".join(broken)))
                continue
            student = run_in_process(check.student_jobs(reference), modules)
            fraction, text = run_judge(check, Context(student, reference, run_in_process))
            if fraction < 1:
                failures.append((seed, check.name, text))
            for name, measure, error, bound in parse_verdicts(text):
                key = (check.name, f"{name}: {measure}")
                if key not in worst or error > worst[key].error:
                    worst[key] = Worst(check.name, f"{name}: {measure}", error, bound, seed)
    return sorted(worst.values(), key=lambda row: row.margin), failures


def format_worst(rows):
    """The sweep's table: margin, worst error, bound, seed of the worst, the measure."""
    lines = [f"{'margin':>9}  {'worst':>9}  {'bound':>8}  {'seed':>10}  measure"]
    lines += [f"{r.margin:9.3g}  {r.error:9.2e}  {r.bound:8.1e}  {r.seed:>10}  {r.measure}" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds (default 200)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--only", help="comma-separated questions (Q1..) or parts of check names")
    args = parser.parse_args(argv)
    only = [part.strip() for part in args.only.split(",")] if args.only else None
    start = time.monotonic()
    rows, failures = sweep(range(args.first, args.first + args.seeds), only)
    print(f"{args.seeds} seeds from {args.first}, {time.monotonic() - start:.0f} s")
    print(format_worst(rows))
    for seed, name, text in failures:
        print(f"FAILED at seed {seed}: {name}\n  " + "\n  ".join(text.splitlines()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
