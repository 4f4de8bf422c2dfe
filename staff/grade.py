"""Grade submissions: `python -m staff.grade SUBMISSION.zip --json OUT.json`, or a folder of zips.

One submission: the zip is checked and extracted (staff/safezip.py) into a private temporary folder; a
sandbox kit is assembled from the master's infrastructure and the submission's student files
(staff/submission.py; a missing one is replaced by its stub); the hidden checks of the manifest's
questions (staff/questions/) run their jobs on the reference in one trusted process and on the
submission in the sandbox (staff/sandbox.py), one process per check, two at a time, through the job
files of staff/protocol.py; the judging (staff/judging.py) happens here on plain arrays. The result is
printed as a table and written in the shape of Gradescope's results.json (staff/report.py).

A folder (`--batch DIR`): every *.zip in it is graded on Dask (staff/batch.py), one task per submission,
into a resumable CSV gradebook (and one JSON per submission).
The result's extra_data holds the seed and the kit version: grading again with that seed on that kit
gives the same result. Programmatic use: `grade_one(zip_path, ...)` returns the result dict, as does
`Grader(zip_path, ...).grade()`.
"""

import argparse
import functools
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from asgn3.data_paths import KIT_DIR
from staff.judging import Context, Failed, job_modules, run_judge
from staff.protocol import Job, Outcome, read_outcomes, write_jobs
from staff.questions import build_checks
from staff.report import format_table, test_entry
from staff.safezip import SubmissionError, extract_zip, locate_package
from staff.sandbox import (
    Limits,
    RunResult,
    SandboxRefused,
    accept_risks,
    accepted_risks,
    isolation,
    require_safe,
    run_untrusted,
)
from staff.submission import RUNNER, build_sandbox_kit, notebook_note, student_files, your_lines

REFERENCE_LIMITS = Limits(cpu_seconds=300, wall_seconds=300, memory_mb=4096, processes=64)
IMPORT_LIMITS = Limits(cpu_seconds=10, wall_seconds=12)  # importing a student module must be quick
BUDGET_SECONDS = 180.0  # a whole submission; an honest one takes about 30 s on two busy cores


# -- running jobs ----------------------------------------------------------------------------------------


def run_trusted(jobs, job_dir, limits=REFERENCE_LIMITS):
    """Run jobs with the master (reference) code in a separate process; a failure is the grader's bug."""
    write_jobs(job_dir, jobs)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "HOME": str(job_dir),
        "MPLCONFIGDIR": str(job_dir),
    }
    start = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-I", str(KIT_DIR / RUNNER), str(KIT_DIR), str(job_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=limits.wall_seconds,
    )
    result = RunResult(
        completed.returncode, False, time.monotonic() - start, completed.stdout + completed.stderr
    )
    outcomes = read_outcomes(job_dir, len(jobs), result)
    broken = [f"job {i} ({jobs[i].task}): {o.error}" for i, o in enumerate(outcomes) if not o.ok]
    if broken:
        raise RuntimeError("the reference failed on the hidden checks (a grader bug):\n" + "\n".join(broken))
    return outcomes


# -- grading one submission ----------------------------------------------------------------------------


class Grader:
    """Grades one submission in its own private temporary folder (removed afterwards)."""

    def __init__(
        self, zip_path, only=None, seed=None, workers=2, verbose=False, timeout=None, budget=BUDGET_SECONDS
    ):
        """zip_path: the submission; only: question ids or parts of check names; seed: of the hidden
        inputs (fresh when None); workers: checks run at a time; timeout: seconds of CPU per check
        (wall clock 1.5 times that), instead of each check's own limits; budget: seconds for the whole
        submission: no run outlives it, and the checks not started by then score 0, "took too long"."""
        self.budget = budget
        self.start = time.monotonic()
        self.zip_path = Path(zip_path)
        self.timeout = timeout
        self.only = only
        self.seed = secrets.randbits(32) if seed is None else int(seed)
        self.workers = workers
        self.verbose = verbose
        self._evaluations = 0

    def grade(self):
        """Run every check; returns the Gradescope-shaped result dict."""
        self.start = start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="asgn3-grade-") as private:
            # Sandbox uids pass through (never list) to box/, their kit and job folders; everything the
            # grader keeps for itself (the submission, the reference results) sits in trusted/ (0700).
            self.private = Path(private)
            os.chmod(private, 0o711)
            self.trusted = self.private / "trusted"
            self.trusted.mkdir(mode=0o700)
            try:
                tests, notes = self._grade_checks()
            except SubmissionError as error:
                tests, notes = self._refused(str(error)), [f"submission refused: {error}"]
            except SandboxRefused:
                raise
            except Exception as error:  # noqa: BLE001 - whatever the input, the result is written
                why = f"the grader failed on this submission ({type(error).__name__}: {str(error)[:300]})"
                tests, notes = self._refused(why + ": tell the staff"), [why]
        score = round(sum(test["score"] for test in tests), 2)
        accepted = "".join(f"; RISK ACCEPTED: {name}" for name in accepted_risks())
        version, seconds = kit_version(), time.monotonic() - start
        notes.append(
            f"sandbox: {isolation()}{accepted}; seed {self.seed}; kit {version}; graded in {seconds:.1f} s"
        )
        return {
            "score": score,
            "execution_time": round(seconds, 1),
            "output": "\n".join(notes),
            "tests": tests,
            "extra_data": {"seed": self.seed, "kit_version": version},  # a regrade with both reproduces this
        }

    def _refused(self, reason):
        """Every check scored zero with the same reason (the zip could not be graded)."""
        return [test_entry(check, 0.0, f"not run: {reason}") for check in build_checks(self.seed, self.only)]

    def _grade_checks(self):
        submission = self.trusted / "submission"
        extract_zip(self.zip_path, submission)
        package, where = locate_package(submission, student_files(), self.trusted / "rebuilt")
        notes = [notebook_note(submission)] + ([where] if where else [])
        if package is None:
            return self._refused(where), notes
        box = self.private / "box"
        (box / "jobs").mkdir(parents=True)
        for folder in (box, box / "jobs"):
            os.chmod(folder, 0o711)
        provenance, self.line_maps = build_sandbox_kit(package, box / "kit")
        notes.append(
            "student files: " + ", ".join(f"{name} {how}" for name, how in sorted(provenance.items()))
        )
        checks = build_checks(self.seed, self.only)
        reference = self._run_reference(checks)
        broken = self._broken_modules(box, provenance)
        for module, error in sorted(broken.items()):
            notes.append(f"{module} does not import: {error}")
        self.skipped = 0

        def run_student(index):
            return self._run_student(box, str(index), checks[index], reference[index], broken)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            student = list(pool.map(run_student, range(len(checks))))
        tests = []
        for check, outcomes, reference_outcomes in zip(checks, student, reference, strict=True):
            ctx = Context(outcomes, reference_outcomes, self._evaluate)
            try:
                fraction, text = run_judge(check, ctx)
            except (Failed, KeyError, ValueError, TypeError, IndexError) as error:
                fraction, text = 0.0, f"could not judge the answer: {type(error).__name__}: {error}"
            tests.append(test_entry(check, fraction, text))
        if self.skipped:
            notes.append(
                f"took too long: the time budget of {self.budget:g} s for the whole submission ran out, "
                f"{self.skipped} checks were not run (look for code that sleeps, loops or runs at import)"
            )
        return tests, notes

    def _run_reference(self, checks):
        """The reference's Outcomes of each check's jobs, all run in one trusted process."""
        jobs = [job for check in checks for job in check.reference]
        outcomes = run_trusted(jobs, self.trusted / "reference") if jobs else []
        per_check, position = [], 0
        for check in checks:
            per_check.append(outcomes[position : position + len(check.reference)])
            position += len(check.reference)
        return per_check

    def _broken_modules(self, box, provenance):
        """{module: why} for the student modules that fail to import (or hang while importing).

        Checked once, in parallel, so that a module that hangs at import costs one short timeout
        instead of one per check.
        """
        modules = [name[:-3].replace("/", ".") for name in sorted(provenance)]
        limits = IMPORT_LIMITS
        if self.timeout:
            limits = replace(limits, cpu_seconds=int(self.timeout), wall_seconds=1.5 * self.timeout + 1)

        def run(index_module):
            index, module = index_module
            return module, self._run_jobs(
                box, f"import{index}", [Job("import", {"module": module}, {})], limits
            )[0]

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            results = list(pool.map(run, enumerate(modules)))
        return {module: outcome.error for module, outcome in results if not outcome.ok}

    def _run_student(self, box, name, check, reference, broken):
        """The Outcomes of a check's jobs run in the sandbox (or why they were not run)."""
        jobs = check.student_jobs(reference)
        needed = set().union(*(job_modules(job) for job in jobs)) if jobs else set()
        for module in sorted(needed & set(broken)):
            return [Outcome(False, error=f"{module} does not import: {broken[module]}")] * len(jobs)
        elapsed = time.monotonic() - self.start
        limits = check.limits
        if self.timeout:
            limits = replace(limits, cpu_seconds=int(self.timeout), wall_seconds=1.5 * self.timeout + 1)
        left = self.budget - elapsed
        if left < 1:
            self.skipped += 1
            why = f"not run: took too long (the submission used up its time budget of {self.budget:g} s)"
            return [Outcome(False, error=why)] * len(jobs)
        limits = replace(limits, wall_seconds=min(limits.wall_seconds, left))
        try:
            outcomes = self._run_jobs(box, name, jobs, limits)
        except OSError as error:  # the grader's own trouble (disk full...): report it on the check
            outcomes = [Outcome(False, error=f"the grader could not run this check: {error}")] * len(jobs)
        if self.verbose:
            print(f"  {check.name}: {time.monotonic() - self.start - elapsed:.1f} s", file=sys.stderr)
        return outcomes

    def _run_jobs(self, box, name, jobs, limits):
        job_dir = box / "jobs" / name
        write_jobs(job_dir, jobs)
        result = run_untrusted(box / "kit", job_dir, RUNNER, limits)
        outcomes = read_outcomes(job_dir, len(jobs), result)
        for outcome in outcomes:
            outcome.error = your_lines(outcome.error, self.line_maps)
        return outcomes

    def _evaluate(self, jobs):
        """Trusted evaluation of what a submission returned (e.g. its trained parameters)."""
        self._evaluations += 1
        return run_trusted(jobs, self.trusted / f"evaluate{self._evaluations}")


@functools.cache
def kit_version():
    """The master this grader runs: the package version and a digest of the code that grades (asgn3 and
    staff .py files), plus the git commit when the master is a checkout."""
    digest = hashlib.sha256()
    for path in sorted([*(KIT_DIR / "asgn3").rglob("*.py"), *(KIT_DIR / "staff").rglob("*.py")]):
        if "build" not in path.relative_to(KIT_DIR).parts:
            digest.update(path.relative_to(KIT_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    commit = subprocess.run(
        ["git", "-C", str(KIT_DIR), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    with open(KIT_DIR / "pyproject.toml", "rb") as f:  # the master's own, installed or not
        package = tomllib.load(f)["project"]["version"]
    version = f"asgn3 {package}, code sha256:{digest.hexdigest()[:16]}"
    return version + (f", git {commit}" if commit else "")


def grade_one(
    zip_path, json_path=None, only=None, seed=None, workers=2, verbose=False, quiet=False, timeout=None
):
    """Grade one zip, print the table (unless quiet), write the JSON if asked; returns the result."""
    result = Grader(zip_path, only, seed, workers, verbose, timeout).grade()
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    if not quiet:
        print(format_table(result, f"== {Path(zip_path).name}"))
    return result


def main(argv=None):
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Grade asgn3 submissions with hidden checks in a sandbox.")
    parser.add_argument("submission", nargs="?", help="a submission zip (or a folder of them: as --batch)")
    parser.add_argument("--json", help="one zip: write the Gradescope results.json here")
    parser.add_argument("--batch", metavar="DIR", help="grade every zip of a folder on Dask (staff/batch.py)")
    parser.add_argument("--csv", help="batch: the gradebook, also its state (default: gradebook.csv in DIR)")
    parser.add_argument("--json-dir", help="batch: write one JSON per submission into this folder")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, default=2, help="batch: local Dask worker processes (2)")
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="batch: an existing Dask cluster's scheduler")
    parser.add_argument("--force", action="store_true", help="batch: grade again what the CSV has already")
    parser.add_argument("--only", help="comma-separated questions (Q1..Q4) or parts of check names")
    parser.add_argument("--seed", type=int, help="seed of the hidden inputs (default: fresh random)")
    parser.add_argument("--jobs", type=int, default=2, help="one zip: checks run at a time (default 2)")
    parser.add_argument("--verbose", action="store_true", help="print the time of every check")
    parser.add_argument("--timeout", type=float, help="CPU seconds per check (default: each check's own)")
    parser.add_argument(
        "--accept-risk",
        action="append",
        default=[],
        metavar="RISK",
        help="grade although this machine's sandbox cannot keep the named guarantee (the refusal lists them)",
    )
    args = parser.parse_args(argv)
    try:
        accept_risks(args.accept_risk)
        require_safe()
    except (ValueError, SandboxRefused) as error:
        print(f"grade: {error}", file=sys.stderr)
        return 3
    only = [part.strip() for part in args.only.split(",")] if args.only else None
    target = Path(args.batch or args.submission or "")
    if args.batch or target.is_dir():
        if not target.is_dir():
            print(f"grade: {target} is not a folder: give the folder of submission zips", file=sys.stderr)
            return 2
        from staff.batch import grade_batch  # Dask (`distributed`) is needed for batches only

        csv_path = args.csv or target / "gradebook.csv"
        rows = grade_batch(
            target,
            csv_path,
            args.workers,
            args.scheduler,
            args.force,
            only,
            args.seed,
            args.timeout,
            args.json_dir,
        )
        errors = sum(row["status"] == "error" for row in rows)
        print(
            f"gradebook: {csv_path} ({len(rows)} submissions, {errors} grader errors: a rerun retries them)"
        )
        return 0
    if not args.submission or not target.is_file():
        print(f"grade: {target} not found: give a submission zip, or --batch DIR", file=sys.stderr)
        return 2
    grade_one(target, args.json, only, args.seed, args.jobs, args.verbose, timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
