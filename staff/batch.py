"""Grade a folder of submission zips on Dask: `python -m staff.grade --batch DIR --csv OUT.csv`.

Each submission's grading is one Dask task, run by `grade_one` (staff/grade.py) on a worker: a local
cluster of N worker processes (`--workers N`, one thread each, so N gradings run at a time), or an
existing cluster (Kubernetes, Slurm, SSH...) given by its scheduler's address (`--scheduler tcp://...`).
The workers read the zips, and write the JSON files, through a filesystem they share with the client, and
run from a copy of the same master (the task checks it: see `master_hash`).

The CSV gradebook is the state. It is rewritten after every grading, so an interrupted batch loses
nothing; a rerun keeps every row whose zip (by content hash) was graded by the same master (by content
hash) with the same options, and grades the rest, unless `--force`. A row is the submission's points per
question and total. Whatever goes wrong with one submission is that row's `status` and `notes`, never
the batch's: a refused zip (`refused`), or the grader's own failure or a worker that died (`error`,
graded again by the next run). Hanging code is stopped by the sandbox's limits inside the grading.
"""

import csv
import hashlib
import logging
import os
import tempfile
import time
from contextlib import ExitStack
from functools import cache
from pathlib import Path

from asgn3.assignment import QUESTIONS, total_points
from asgn3.data_paths import KIT_DIR
from staff.grade import grade_one
from staff.report import question_scores, regular_maximum

QUESTION_KEYS = [q.key for q in QUESTIONS]
COLUMNS = ["submission", "score", "max_score", *QUESTION_KEYS, "seconds", "status", "notes"]
COLUMNS += ["sha256", "master", "options"]
NUMBERS = ["score", "max_score", *QUESTION_KEYS, "seconds"]
MASTER_PARTS = ("asgn3", "staff")  # what a grading depends on: the reference, the checks, the sandbox


def file_hash(path):
    """The SHA-256 of a file's content, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@cache
def master_hash(kit_dir=KIT_DIR):
    """A SHA-256 (16 hex digits) of the master's Python sources under asgn3/ and staff/: their paths and
    contents. Two checkouts with the same code grade alike, wherever they are."""
    digest = hashlib.sha256()
    kit_dir = Path(kit_dir)
    for part in MASTER_PARTS:
        for path in sorted((kit_dir / part).rglob("*.py")):
            rel = path.relative_to(kit_dir)
            if "build" in rel.parts or "__pycache__" in rel.parts:
                continue
            digest.update(rel.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def options_key(only=None, seed=None, timeout=None):
    """The grading options that change scores, as the text stored in a row ('' for a full grading)."""
    parts = [f"only={','.join(only)}" if only else "", f"seed={seed}" if seed is not None else ""]
    parts.append(f"timeout={timeout:g}" if timeout else "")
    return ";".join(part for part in parts if part)


# -- one task -----------------------------------------------------------------------------------------


def result_row(name, result, seconds):
    """The gradebook row of a graded submission (the result dict of grade_one)."""
    totals = {key: score for key, (score, _) in question_scores(result).items()}
    refused = result["output"].startswith("submission refused")
    return {
        "submission": name,
        "score": result["score"],
        "max_score": round(regular_maximum(result), 2),  # extra credit adds to the score only
        **{key: round(value, 2) for key, value in totals.items()},
        "seconds": round(seconds, 1),
        "status": "refused" if refused else "graded",
        "notes": result["output"].splitlines()[0] if refused else "",
    }


def error_row(name, why, seconds=0.0):
    """The gradebook row of a submission the grader could not grade (graded again on the next run)."""
    return {
        "submission": name,
        "score": 0,
        "max_score": total_points(),
        **dict.fromkeys(QUESTION_KEYS, 0),
        "seconds": round(seconds, 1),
        "status": "error",
        "notes": why,
    }


def grade_task(zip_path, options, json_dir=None, expected_master=None):
    """Grade one zip; runs on a Dask worker. Never raises: a failure is the row's `error` status.

    Inputs:
    - zip_path: the submission, on the filesystem the worker shares with the client.
    - options: keywords of grade_one (only, seed, timeout).
    - json_dir: where to write the submission's results JSON, or None.
    - expected_master: the client's master_hash(); a worker that runs another master refuses to grade.

    Returns the gradebook row (a dict of COLUMNS).
    """
    start = time.monotonic()
    name = Path(zip_path).name
    try:
        digest = file_hash(zip_path)
        master = master_hash()
        if expected_master and master != expected_master:
            why = f"the worker runs another master ({master}, the client {expected_master}): "
            return error_row(name, why + "start the workers from the same checkout", time.monotonic() - start)
        json_path = Path(json_dir) / f"{Path(zip_path).stem}.json" if json_dir else None
        result = grade_one(zip_path, json_path, workers=1, quiet=True, **options)
        row = result_row(name, result, time.monotonic() - start)
    except Exception as error:  # noqa: BLE001 - one submission's trouble must not stop the batch
        return error_row(name, f"grader error: {type(error).__name__}: {error}", time.monotonic() - start)
    return {**row, "sha256": digest, "master": master}


# -- the gradebook as the batch's state ---------------------------------------------------------------


def read_gradebook(csv_path):
    """{submission: row} of an existing gradebook ({} when there is none yet), its numbers as floats."""
    if not Path(csv_path).is_file():
        return {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise ValueError(
                f"{csv_path} is not a gradebook of this grader (columns {reader.fieldnames}, expected "
                f"{COLUMNS}): give another --csv, or remove it to grade everything again"
            )
        rows = {row["submission"]: row for row in reader}
    for row in rows.values():
        for column in NUMBERS:
            row[column] = float(row[column]) if row[column] else 0.0
    return rows


def write_gradebook(csv_path, rows):
    """Write the rows (dicts of COLUMNS) to csv_path atomically (a crash never leaves half a file)."""
    partial = Path(f"{csv_path}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, csv_path)


def plan(zips, gradebook, master, options, force=False):
    """Split the zips into those whose row is kept and those to grade; returns (kept rows, zips to grade).

    A row is kept when its zip has the same content hash, it was graded by the same master with the same
    options, and its status is not `error`; --force grades everything.
    """
    kept, todo = {}, []
    for path in zips:
        row = gradebook.get(path.name)
        if (
            not force
            and row is not None
            and row["status"] != "error"
            and (row["master"], row["options"]) == (master, options)
            and row["sha256"] == file_hash(path)
        ):
            kept[path.name] = row
        else:
            todo.append(path)
    return kept, todo


def _dask():
    """Dask's `distributed` module, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "batch grading runs on Dask: install the staff requirements with "
            "`.venv/bin/python -m pip install -r requirements-staff.txt` (bash kit.sh setup does)"
        ) from None
    return distributed


def _connect(stack, workers, scheduler):
    """A Dask client, closed with the ExitStack: of an existing cluster's scheduler, or of a new local
    cluster of `workers` processes with one thread each."""
    dask = _dask()
    if scheduler:
        return stack.enter_context(dask.Client(scheduler))
    scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="asgn3-dask-"))  # removed at the end
    cluster = stack.enter_context(
        dask.LocalCluster(
            local_directory=scratch,  # spill and lock files: no dask-scratch-space left in TMPDIR
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: several batches (or engineers) on one machine
            silence_logs=logging.ERROR,
        )
    )
    return stack.enter_context(dask.Client(cluster))


def grade_batch(
    folder,
    csv_path,
    workers=2,
    scheduler=None,
    force=False,
    only=None,
    seed=None,
    timeout=None,
    json_dir=None,
    log=print,
):
    """Grade every *.zip of a folder on Dask into a CSV gradebook, keeping what is already graded.

    Inputs:
    - folder: the submissions (zips); csv_path: the gradebook (read first, rewritten after every row).
    - workers: processes of the local cluster; scheduler: an existing cluster's address (then workers is
      that cluster's business).
    - force: grade everything again; only, seed, timeout: as for grade_one; json_dir: one JSON each.
    - log: where progress lines go.

    Returns the rows in the order of the zips' names (dicts of COLUMNS).
    """
    as_completed = _dask().as_completed
    zips = sorted(path for path in Path(folder).glob("*.zip") if path.is_file())
    master, options = master_hash(), options_key(only, seed, timeout)
    rows, todo = plan(zips, read_gradebook(csv_path), master, options, force)
    where = f"the cluster at {scheduler}" if scheduler else f"a local cluster of {workers} workers"
    log(
        f"{len(zips)} submissions: {len(rows)} already graded (kept; --force grades them again), "
        f"{len(todo)} to grade"
    )
    if json_dir:
        Path(json_dir).mkdir(parents=True, exist_ok=True)

    def save():
        write_gradebook(csv_path, [rows[path.name] for path in zips if path.name in rows])

    if todo:
        log(f"grading on {where}")
        start = time.monotonic()
        kwargs = {"only": only, "seed": seed, "timeout": timeout}
        with ExitStack() as stack:
            client = _connect(stack, workers, scheduler)
            json_folder = str(Path(json_dir).resolve()) if json_dir else None
            futures = {
                client.submit(grade_task, str(path.resolve()), kwargs, json_folder, master, pure=False): path
                for path in todo
            }
            for done, future in enumerate(as_completed(futures), start=1):
                path = futures[future]
                try:
                    row = future.result()
                except Exception as error:  # noqa: BLE001 - e.g. KilledWorker: the process grading it died
                    row = error_row(
                        path.name, f"the worker grading it failed: {type(error).__name__}: {error}"
                    )
                row.update(sha256=row.get("sha256") or file_hash(path), master=master, options=options)
                rows[path.name] = row
                save()
                rate = done / (time.monotonic() - start) * 60
                notes = f": {row['notes']}" if row["notes"] else ""
                log(
                    f"[{done}/{len(todo)}] {path.name}: {row['score']:g} / {row['max_score']:g} "
                    f"{row['status']} ({row['seconds']} s; {rate:.1f} submissions a minute){notes}"
                )
    save()
    return [rows[path.name] for path in zips]
