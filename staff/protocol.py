"""How the grader and its runner talk: the job and outcome types, the file names, reading and writing.

Both sides import this module: the grader (staff/grade.py) writes jobs and reads outcomes; the runner
(staff/runner.py, run on the master in a trusted process, or on a submission inside the sandbox, where
this file is copied next to it) reads jobs and writes outcomes. A job folder holds:

    jobs.json          [{"id": 0, "task": "call", "options": {...}}, ...]   (written by the grader)
    in_<id>.npz        the job's input arrays                                 (written by the grader)
    out_<id>.npz       the job's output arrays, plain numbers only             (written by the runner)
    status_<id>.json   {"ok": true, "missing": [...]} or {"ok": false, "error": "..."}   (by the runner)

The runner writes each job's files as soon as it finishes, so a crash leaves the results before it.
What comes back from a run is untrusted (a submission may have written anything there): `read_outcomes`
is the one place the grader reads it, as JSON and pickle-free npz, with size limits, numbers only.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JOBS_FILE = "jobs.json"
MAX_STATUS_BYTES = 1 << 20
MAX_OUTPUT_BYTES = 64 << 20


@dataclass
class Job:
    """One call for the runner: a task name (runner.TASKS), its options (JSON) and its input arrays."""

    task: str
    options: dict
    arrays: dict


@dataclass
class Outcome:
    """What a job produced: ok, its arrays, the outputs that were None (`missing`), or why it failed."""

    ok: bool
    arrays: dict = field(default_factory=dict)
    error: str = ""
    missing: list = field(default_factory=list)


def input_path(job_dir, index):
    return Path(job_dir) / f"in_{index}.npz"


def output_path(job_dir, index):
    return Path(job_dir) / f"out_{index}.npz"


def status_path(job_dir, index):
    return Path(job_dir) / f"status_{index}.json"


# -- the grader's side ------------------------------------------------------------------------------------


def write_jobs(job_dir, jobs):
    """Create job_dir with jobs.json and the input arrays of a list of Jobs."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True)
    for index, job in enumerate(jobs):
        np.savez(input_path(job_dir, index), **job.arrays)
    specs = [{"id": index, "task": job.task, "options": job.options} for index, job in enumerate(jobs)]
    (job_dir / JOBS_FILE).write_text(json.dumps(specs))


def run_failure(result):
    """Why a run (a sandbox.RunResult) stopped without reporting a job: timeout, resource limit, crash."""
    code = result.returncode
    signal = -code if code < 0 else code - 128 if code > 128 else 0
    if result.timed_out:
        why = f"timed out (no result after {result.seconds:.0f} s; the wall-clock limit)"
    elif signal in (9, 24, 25):
        why = f"killed by a resource limit (CPU time, processes or file size; signal {signal})"
    elif signal:
        why = f"crashed (signal {signal})"
    else:
        why = f"the process exited (code {code}) before reporting"
    tail = [line for line in result.output.strip().splitlines() if line.strip()][-3:]
    return why + (": " + " | ".join(line.strip()[:200] for line in tail) if tail else "")


def _regular_file(path, limit, what):
    """Whether path is a plain file (not a link) of at most `limit` bytes; ValueError when too large."""
    if not path.is_file() or path.is_symlink():
        return False
    if path.stat().st_size > limit:
        raise ValueError(f"{what} too large")
    return True


def _read_outcome(job_dir, index, result):
    """The Outcome of one job, read as plain data; OSError/ValueError/TypeError on a malformed file."""
    if not _regular_file(status_path(job_dir, index), MAX_STATUS_BYTES, "status file"):
        return Outcome(False, error=run_failure(result))
    status = json.loads(status_path(job_dir, index).read_text(encoding="utf-8", errors="replace"))
    if not isinstance(status, dict) or status.get("ok") is not True:
        error = status.get("error", "failed") if isinstance(status, dict) else "bad status"
        return Outcome(False, error=str(error)[:1000])
    arrays = {}
    if _regular_file(output_path(job_dir, index), MAX_OUTPUT_BYTES, "output"):
        with np.load(output_path(job_dir, index), allow_pickle=False) as data:
            arrays = {key: np.array(data[key]) for key in data.files}
    for key, array in arrays.items():
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ValueError(f"output {key} has dtype {array.dtype}")
    missing = [str(m) for m in status.get("missing", []) if isinstance(m, str)]
    return Outcome(True, arrays=arrays, missing=missing)


def read_outcomes(job_dir, count, result):
    """The Outcome of each of `count` jobs after a run (result: its sandbox.RunResult)."""
    outcomes = []
    for index in range(count):
        try:
            outcomes.append(_read_outcome(Path(job_dir), index, result))
        except (OSError, ValueError, TypeError) as error:
            outcomes.append(Outcome(False, error=f"unreadable output ({error})"))
    return outcomes


# -- the runner's side ------------------------------------------------------------------------------------


def read_jobs(job_dir):
    """The jobs of job_dir as (id, task, options, arrays), one at a time (arrays loaded without pickles)."""
    specs = json.loads((Path(job_dir) / JOBS_FILE).read_text())
    for spec in specs:
        with np.load(input_path(job_dir, spec["id"]), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        yield spec["id"], spec["task"], spec.get("options", {}), arrays


def _plain(value):
    """A returned value as a plain numeric ndarray (None stays None; objects are refused)."""
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"expected numbers, got {type(value).__name__} of dtype {array.dtype}")
    return array


def write_outcome(job_dir, index, outputs):
    """Write a finished job's outputs ({name: array or None}); None outputs are reported as missing."""
    plain = {key: _plain(value) for key, value in outputs.items()}
    np.savez(output_path(job_dir, index), **{key: value for key, value in plain.items() if value is not None})
    missing = sorted(key for key, value in plain.items() if value is None)
    status_path(job_dir, index).write_text(json.dumps({"ok": True, "missing": missing}))


def write_failure(job_dir, index, error):
    """Write a failed job's status with the reason (text)."""
    status_path(job_dir, index).write_text(json.dumps({"ok": False, "error": error}))
