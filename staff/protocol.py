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
is the one place the grader reads it. Every file is opened without following links and size-checked
before it is read; the status is JSON of a fixed shape; the arrays are read from the npz member by
member, each .npy header checked (real numbers only, a size that matches the data actually there)
before anything is allocated. Whatever is wrong makes that job's Outcome a failure with a clear note.
"""

import io
import json
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JOBS_FILE = "jobs.json"
MAX_STATUS_BYTES = 1 << 20
MAX_OUTPUT_BYTES = 64 << 20
MAX_ARRAYS = 64
REAL_KINDS = "biuf"  # bool, signed and unsigned integers, floats: what a numeric answer may be


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
    stopped = getattr(result, "stopped", "")
    if result.timed_out:
        why = f"timed out (no result after {result.seconds:.0f} s; the wall-clock limit)"
    elif stopped:
        why = f"stopped by the sandbox ({stopped})"
    elif signal in (9, 24, 25):
        why = f"killed by a resource limit (CPU time, processes or file size; signal {signal})"
    elif signal:
        why = f"crashed (signal {signal})"
    else:
        why = f"the process exited (code {code}) before reporting"
    tail = [line for line in result.output.strip().splitlines() if line.strip()][-3:]
    return why + (": " + " | ".join(line.strip()[:200] for line in tail) if tail else "")


class Unreadable(ValueError):
    """A result file that cannot be trusted: the message says what is wrong with it."""


def _read_bytes(path, limit, what):
    """The bytes of a regular file (never through a link), refused beyond `limit`; None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise Unreadable(f"{what} cannot be opened ({error.strerror}: a link or a special file?)") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(f"{what} is not a regular file")
        if info.st_size > limit:
            raise Unreadable(f"{what} holds {info.st_size} bytes, more than {limit}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Unreadable(f"{what} grew beyond {limit} bytes while read")
    return data


def _parse_status(data):
    """The status dict {"ok": bool, "missing": [str], "error": str} from the bytes of a status file."""
    try:
        status = json.loads(data.decode("utf-8", errors="replace"))
    except RecursionError:
        raise Unreadable("the status file is JSON nested too deep") from None
    except ValueError as error:
        raise Unreadable(f"the status file is not JSON ({error})") from None
    if not isinstance(status, dict) or not isinstance(status.get("ok"), bool):
        raise Unreadable('the status file is not {"ok": true|false, ...}')
    missing = status.get("missing", [])
    if not isinstance(missing, list) or not all(isinstance(m, str) and len(m) < 100 for m in missing):
        raise Unreadable("the status file's 'missing' is not a list of output names")
    return {"ok": status["ok"], "missing": missing, "error": str(status.get("error", "failed"))[:1000]}


def _array_header(member):
    """(shape, dtype, data bytes) an .npy member declares, refused unless plain real numbers."""
    version = np.lib.format.read_magic(member)
    if version not in ((1, 0), (2, 0)):
        raise Unreadable(f"unknown .npy version {version}")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(member, max_header_size=2000)
    if dtype.kind not in REAL_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise Unreadable(f"holds {dtype} values: only real numbers (bool, int, float) are accepted")
    size = dtype.itemsize
    for dimension in shape:
        size *= int(dimension)  # Python integers: a forged shape cannot overflow
    return shape, dtype, size


def load_arrays(path, limit=MAX_OUTPUT_BYTES):
    """{name: ndarray} from an npz written by write_outcome; Unreadable for anything else.

    Checked before any allocation: the file (regular, at most `limit` bytes), the zip directory (at most
    MAX_ARRAYS members named NAME.npy), each member's .npy header (real numbers, and a declared size
    that the member really holds). The zip's CRC is checked as the data is read.
    """
    data = _read_bytes(path, limit, "the output file")
    if data is None:
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ARRAYS:
                raise Unreadable(f"the output file holds {len(infos)} arrays, more than {MAX_ARRAYS}")
            arrays = {}
            for info in infos:
                name = info.filename.removesuffix(".npy")
                if not info.filename.endswith(".npy") or not name.isidentifier() or name in arrays:
                    raise Unreadable(f"the output file holds {info.filename[:80]!r}, not an array NAME.npy")
                if info.file_size > limit:
                    raise Unreadable(f"array {name} declares {info.file_size} bytes, more than {limit}")
                with archive.open(info) as member:
                    _, _, size = _array_header(member)
                    header_end = member.tell()
                if size != info.file_size - header_end:
                    raise Unreadable(
                        f"array {name} declares {size} bytes of data but holds {info.file_size - header_end}"
                    )
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False, max_header_size=2000)
            return arrays
    except Unreadable:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        NotImplementedError,
    ) as error:
        raise Unreadable(
            f"the output file is not a valid npz ({type(error).__name__}: {str(error)[:200]})"
        ) from None


def _read_outcome(job_dir, index, result):
    """The Outcome of one job, read as plain data; Unreadable on a malformed file."""
    data = _read_bytes(status_path(job_dir, index), MAX_STATUS_BYTES, "the status file")
    if data is None:
        return Outcome(False, error=run_failure(result))
    status = _parse_status(data)
    if not status["ok"]:
        return Outcome(False, error=status["error"])
    return Outcome(True, arrays=load_arrays(output_path(job_dir, index)), missing=status["missing"])


def read_outcomes(job_dir, count, result):
    """The Outcome of each of `count` jobs after a run (result: its sandbox.RunResult).

    Never raises on what the run left: a file that cannot be trusted fails its job, with the reason.
    """
    outcomes = []
    for index in range(count):
        try:
            outcomes.append(_read_outcome(Path(job_dir), index, result))
        except (Unreadable, OSError, MemoryError, RecursionError) as error:
            outcomes.append(Outcome(False, error=f"its result files cannot be trusted: {error}"))
    return outcomes


# -- the runner's side ------------------------------------------------------------------------------------


def read_jobs(job_dir):
    """The jobs of job_dir as (id, task, options, arrays), one at a time (arrays loaded without pickles)."""
    specs = json.loads((Path(job_dir) / JOBS_FILE).read_text())
    for spec in specs:
        with np.load(input_path(job_dir, spec["id"]), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        yield spec["id"], spec["task"], spec.get("options", {}), arrays


def plain_array(value):
    """A returned value as a plain numeric ndarray (None stays None; objects are refused)."""
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype.kind not in REAL_KINDS or array.dtype.fields is not None:
        raise TypeError(f"expected real numbers, got {type(value).__name__} of dtype {array.dtype}")
    return array


def write_outcome(job_dir, index, outputs):
    """Write a finished job's outputs ({name: array or None}); None outputs are reported as missing."""
    plain = {key: plain_array(value) for key, value in outputs.items()}
    np.savez(output_path(job_dir, index), **{key: value for key, value in plain.items() if value is not None})
    missing = sorted(key for key, value in plain.items() if value is None)
    status_path(job_dir, index).write_text(json.dumps({"ok": True, "missing": missing}))


def write_failure(job_dir, index, error):
    """Write a failed job's status with the reason (text)."""
    status_path(job_dir, index).write_text(json.dumps({"ok": False, "error": error}))
