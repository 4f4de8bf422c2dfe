"""Batch grading on Dask: the same scores as one by one, a row per submission whatever happens, resumable.

One class of five submissions (the reference, the stubs, a partial one, one that hangs, a corrupt zip) is
graded once on a local cluster of 2 workers and once one by one, on three cheap checks (one of Q1, Q2
and Q3), with a fixed seed; then the batch is run again and must grade nothing.
"""

import csv
import shutil
import time
import zipfile

import pytest

from asgn3.assignment import graded_modules
from asgn3.data_paths import KIT_DIR
from staff import batch, grade
from staff.markers import find_regions, stub_source

ONLY = ["rnn_step_forward values", "sigmoid", "compute_saliency_maps"]
SEED = 20261204
STUDENT_FILES = [module.replace(".", "/") + ".py" for module in graded_modules()]


def write_zip(folder, zip_path):
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return zip_path


def submission(root, name, change=None):
    """A zip of the reference's student files, changed by change(folder) first; returns its path."""
    folder = root / "sources" / name
    for rel in STUDENT_FILES:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(KIT_DIR / rel, folder / rel)
    if change:
        change(folder)
    return write_zip(folder, root / "class" / f"{name}.zip")


def stubbed(folder):
    for rel in STUDENT_FILES:
        (folder / rel).write_text(stub_source((folder / rel).read_text(), rel))


def without_image_gradients(folder):
    (folder / "asgn3" / "image_gradients.py").unlink()


def hanging_rnn_step(folder):
    """rnn_step_forward loops forever (the first region of rnn_layers.py is its)."""
    path = folder / "asgn3" / "rnn_layers.py"
    lines = path.read_text().splitlines()
    region = find_regions(path.read_text())[0]
    assert "def rnn_step_forward(" in "\n".join(lines[: region.start])
    hang = [region.indent + "while True:", region.indent + "    pass"]
    path.write_text("\n".join(lines[: region.start + 1] + hang + lines[region.end :]) + "\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class folder, the batch rows, the one-by-one results, the rerun's rows and log."""
    root = tmp_path_factory.mktemp("batch")
    (root / "class").mkdir()
    submission(root, "reference")
    submission(root, "stubs", stubbed)
    submission(root, "partial", without_image_gradients)
    submission(root, "hanging", hanging_rnn_step)
    corrupt = submission(root, "corrupt").read_bytes()
    (root / "class" / "corrupt.zip").write_bytes(corrupt[: len(corrupt) // 2])
    csv_path, log = root / "gradebook.csv", []
    options = {"only": ONLY, "seed": SEED}  # each check's own time limits: a busy machine is slow
    start = time.monotonic()
    rows = batch.grade_batch(root / "class", csv_path, workers=2, log=log.append, **options)
    batch_seconds = time.monotonic() - start
    start = time.monotonic()
    one_by_one = {
        path.name: grade.Grader(path, ONLY, SEED).grade() for path in sorted((root / "class").glob("*.zip"))
    }
    print(f"batch on 2 workers {batch_seconds:.1f} s, one by one {time.monotonic() - start:.1f} s")
    print("\n".join(log))
    rerun_log = []
    start = time.monotonic()
    rerun = batch.grade_batch(root / "class", csv_path, workers=2, log=rerun_log.append, **options)
    return {
        "root": root,
        "rows": {row["submission"]: row for row in rows},
        "log": log,
        "one_by_one": one_by_one,
        "rerun": rerun,
        "rerun_log": rerun_log,
        "rerun_seconds": time.monotonic() - start,
        "csv": list(csv.DictReader(open(csv_path))),
    }


@pytest.mark.slow
def test_a_batch_gives_the_scores_of_one_by_one(graded):
    rows, alone = graded["rows"], graded["one_by_one"]
    assert (
        sorted(rows)
        == sorted(alone)
        == [f"{n}.zip" for n in ("corrupt", "hanging", "partial", "reference", "stubs")]
    )
    for name, result in alone.items():
        per_question = {key: 0.0 for key in batch.QUESTION_KEYS}
        for test in result["tests"]:
            per_question[test["question"]] += test["score"]
        assert rows[name]["score"] == result["score"], name
        assert {key: rows[name][key] for key in per_question} == pytest.approx(per_question), name
    assert rows["reference.zip"]["score"] == rows["reference.zip"]["max_score"] == 11
    assert rows["stubs.zip"]["score"] == 0
    assert (rows["partial.zip"]["Q1"], rows["partial.zip"]["Q2"], rows["partial.zip"]["Q3"]) == (3, 3, 0)
    assert (rows["hanging.zip"]["Q1"], rows["hanging.zip"]["Q2"]) == (0, 3)


@pytest.mark.slow
def test_every_submission_has_a_row_with_its_trouble_in_it(graded):
    rows = graded["rows"]
    assert rows["corrupt.zip"]["status"] == "refused" and "refused" in rows["corrupt.zip"]["notes"]
    assert all(rows[name]["status"] == "graded" for name in rows if name != "corrupt.zip")
    assert len({row["master"] for row in rows.values()}) == 1
    assert all(len(row["sha256"]) == 64 for row in rows.values())
    progress = [line for line in graded["log"] if line.startswith("[")]
    assert len(progress) == 5 and progress[-1].startswith("[5/5]")
    assert "a local cluster of 2 workers" in "\n".join(graded["log"])


@pytest.mark.slow
def test_a_rerun_keeps_every_row_and_grades_nothing(graded):
    assert graded["rerun_log"][0].startswith("5 submissions: 5 already graded")
    assert not any(line.startswith(("grading on", "[")) for line in graded["rerun_log"])
    assert [row["submission"] for row in graded["rerun"]] == sorted(graded["rows"])
    assert [float(row["score"]) for row in graded["csv"]] == [row["score"] for row in graded["rerun"]]
    assert graded["rerun"] == [graded["rows"][name] for name in sorted(graded["rows"])]
    print(f"rerun in {graded['rerun_seconds']:.2f} s")


def test_the_plan_regrades_changed_zips_other_masters_errors_and_everything_with_force(tmp_path):
    zips = []
    for name in "abcd":
        (tmp_path / f"{name}.zip").write_bytes(name.encode())
        zips.append(tmp_path / f"{name}.zip")
    master, options = "m" * 16, batch.options_key(["Q1"], 7)
    assert options == "only=Q1;seed=7"
    gradebook = {
        "a.zip": {
            "status": "graded",
            "master": master,
            "options": options,
            "sha256": batch.file_hash(zips[0]),
        },
        "b.zip": {"status": "graded", "master": master, "options": options, "sha256": "0" * 64},
        "c.zip": {
            "status": "error",
            "master": master,
            "options": options,
            "sha256": batch.file_hash(zips[2]),
        },
    }
    kept, todo = batch.plan(zips, gradebook, master, options)
    assert list(kept) == ["a.zip"] and [p.name for p in todo] == ["b.zip", "c.zip", "d.zip"]
    assert batch.plan(zips, gradebook, "other", options)[0] == {}
    assert batch.plan(zips, gradebook, master, "")[0] == {}
    assert batch.plan(zips, gradebook, master, options, force=True)[0] == {}


def test_a_foreign_csv_is_refused_with_a_clear_error(tmp_path):
    (tmp_path / "grades.csv").write_text("student,points\nalice,3\n")
    with pytest.raises(ValueError, match="not a gradebook of this grader"):
        batch.read_gradebook(tmp_path / "grades.csv")


def test_the_master_hash_follows_the_code(tmp_path):
    for rel in ("asgn3/a.py", "staff/b.py", "datasets/c.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    first = batch.master_hash(tmp_path)
    (tmp_path / "datasets/c.py").write_text("x = 2\n")
    assert batch.master_hash.__wrapped__(tmp_path) == first  # not something the grading reads
    (tmp_path / "staff/b.py").write_text("x = 2\n")
    assert batch.master_hash.__wrapped__(tmp_path) != first


def test_the_student_kit_leaves_out_dask_and_what_needs_it():
    from staff.release import is_staff_only, kit_files, marked_modules

    names = kit_files(KIT_DIR)
    marked = marked_modules(KIT_DIR, names)
    for name in ("requirements-staff.txt", "staff/batch.py", "bench/batch.py", "tests/test_batch.py"):
        assert name in names and is_staff_only(name, KIT_DIR, marked), name
    assert not is_staff_only("requirements.txt", KIT_DIR, marked)
    assert not is_staff_only("bench/rnn.py", KIT_DIR, marked)
    assert "distributed" not in (KIT_DIR / "requirements.txt").read_text()


def test_an_existing_cluster_is_reached_by_its_scheduler_address(tmp_path):
    from distributed import LocalCluster

    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "empty.zip").write_bytes(b"")
    log = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        rows = batch.grade_batch(
            tmp_path / "class", tmp_path / "book.csv", scheduler=cluster.scheduler_address, log=log.append
        )
    assert f"grading on the cluster at {cluster.scheduler_address}" in log
    assert [(row["submission"], row["status"]) for row in rows] == [("empty.zip", "refused")]


def test_a_worker_with_another_master_refuses_to_grade(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"PK")
    row = batch.grade_task(str(tmp_path / "a.zip"), {}, expected_master="0123456789abcdef")
    assert row["status"] == "error" and "the worker runs another master" in row["notes"]
