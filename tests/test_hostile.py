"""The hostile suite: a class of ten submissions, eight of them hostile (41 attacks), graded in batch at every
sandbox level this machine provides (tests/hostile/levels.py).

At each level: every submission gets its JSON; an honest submission gets its full score and a hostile one
exactly its honest part (an attack scores only if it succeeds); no process, IPC object or file of a run
is left; the checkout is unchanged. One batch per level keeps the cost to a few minutes.
"""

import csv
import json
import os
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from asgn3.data_paths import KIT_DIR
from tests.hostile.attacks import FULL_SCORE, ONLY, SLOTS, hostile_submissions
from tests.hostile.build import append_to, copy_reference, replace_region, zip_folder
from tests.hostile.levels import LEVELS, grade_at, grader_command, leftovers, open_folder, private_uids

SEED = 20261204
TIMEOUT = 2  # CPU seconds per check (wall clock 4 s): every honest check here needs well under one
TRACES = [  # files the attacks try to leave; none may exist after grading
    KIT_DIR / "asgn3-hostile-was-here",
    KIT_DIR / ".venv" / "asgn3-hostile-was-here",
    Path("/tmp/asgn3-hostile-file"),
    Path("/tmp/asgn3-hostile-daemon"),
    Path("/tmp/asgn3-hostile-pickle"),
    Path("/var/tmp/asgn3-hostile-file"),
    Path("/dev/shm/asgn3-hostile-file"),
    Path("/dev/shm/asgn3_hostile"),
]


@pytest.fixture(autouse=True, scope="module")
def _private_uids():
    with private_uids():
        yield


def build_class(folder):
    """Ten submission zips in folder; returns {zip name: (points expected, {check: attack})}."""
    expected = {}
    submissions, module_code = hostile_submissions()
    for name, attacks in submissions.items():
        source = copy_reference(folder / "sources" / name)
        for slot, (_, code) in attacks.items():
            replace_region(source, SLOTS[slot][0], slot, code)
        if name in module_code:
            append_to(source, *module_code[name])
        zip_folder(source, folder / f"{name}.zip")
        named = {SLOTS[slot][2]: attack for slot, (attack, _) in attacks.items()}
        if name in module_code:  # every check of the module's functions fails with it
            file = module_code[name][0]
            named |= {
                check: f"{name}: top-level code in {file}" for f, _, check, _ in SLOTS.values() if f == file
            }
        expected[f"{name}.zip"] = (
            FULL_SCORE - sum(SLOTS[s][3] for s in SLOTS if SLOTS[s][2] in named),
            named,
        )
    reference = copy_reference(folder / "sources" / "reference")
    zip_folder(reference, folder / "reference.zip")
    zip_folder(reference, folder / "nested-folder.zip", prefix="assignment3/")
    expected["reference.zip"] = expected["nested-folder.zip"] = (FULL_SCORE, {})
    for path in folder.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return expected


@pytest.fixture(scope="module")
def hostile_class():
    folder = open_folder(0, "asgn3-hostile-class-")
    return folder, build_class(folder)


def checkout_state():
    """git's view of the checkout, ignored files included (a written trace would show), but for the
    bytecode caches the grader's own (trusted) processes may write."""
    command = ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--", "asgn3", "staff"]
    status = subprocess.run([*command, "tests"], cwd=KIT_DIR, capture_output=True, text=True).stdout
    return [line for line in status.splitlines() if "__pycache__" not in line]


def wait_for_no_leftovers(uid, seconds=5.0):
    deadline = time.monotonic() + seconds
    while (found := leftovers(uid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("level", LEVELS)
def test_a_hostile_class_gains_nothing_and_leaves_nothing(level, hostile_class):
    folder, expected = hostile_class
    _, uid = grader_command(level)
    out = open_folder(uid, "asgn3-hostile-out-")
    before = checkout_state()
    start = time.monotonic()
    args = ["--csv", str(out / "gradebook.csv"), "--json-dir", str(out / "json"), "--only", ",".join(ONLY)]
    args += ["--seed", str(SEED), "--timeout", str(TIMEOUT), "--jobs", "2"]
    process, tmpdir = grade_at(level, folder, args)
    seconds = time.monotonic() - start
    print(f"level {level}: the class of {len(expected)} graded in {seconds:.0f} s\n{process.stdout[-3000:]}")
    assert process.returncode == 0, process.stderr[-3000:]
    rows = {row["submission"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    assert sorted(rows) == sorted(expected)
    wrong = {}
    for name, (points, attacks) in sorted(expected.items()):
        json_path = out / "json" / f"{Path(name).stem}.json"
        assert json_path.is_file(), f"{name}: no JSON written ({rows[name]['notes']})"
        result = json.loads(json_path.read_text())
        for test in result["tests"]:
            check = test["name"].split(": ", 1)[1]
            attack = attacks.get(check)
            score = f"{test['score']:g}/{test['max_score']:g}"
            print(f"  {level:10s} {name:20s} {attack or 'honest':62.62s} {score}")
            want = 0 if attack else test["max_score"]
            if abs(test["score"] - want) > 1e-9:
                wrong[f"{name}: {check} ({attack or 'honest'})"] = (test["score"], want, test["output"][:300])
        assert abs(result["score"] - points) < 1e-9 or wrong, (name, result["score"], points)
    assert wrong == {}
    assert wait_for_no_leftovers(uid) == []
    assert [p for p in TRACES if p.exists()] == []
    assert checkout_state() == before
    # every grading removed its private folder (Dask keeps its own scratch space there)
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("asgn3-grade")] == []


# -- what the grader itself reads: zip shapes, notebooks, and what it hands the trusted side ----------------


def grade_in_process(zip_path, only):
    from staff.grade import Grader

    return Grader(zip_path, only=only, seed=SEED, timeout=TIMEOUT).grade()


def scores(result):
    return {test["name"].split(": ", 1)[1]: test["score"] for test in result["tests"]}


@pytest.mark.slow
def test_zip_shapes_notebooks_lies_to_the_trusted_side_and_error_lines(tmp_path):
    """At the full level (these are read by the grader, not run in the sandbox): the obvious fix of a
    zip without asgn3/ is graded, broken notebooks are noted, parameters of the wrong shape fail the
    check instead of the trusted evaluation, and errors point at the student's own lines."""
    reference = copy_reference(tmp_path / "reference")
    only = ["sigmoid values", "rnn_step_forward values"]
    loose = zip_folder(reference / "asgn3", tmp_path / "loose.zip")  # rnn_layers.py etc. at the root
    inner = zip_folder(reference, tmp_path / "assignment3.zip")
    with zipfile.ZipFile(tmp_path / "zip-in-zip.zip", "w") as archive:
        archive.write(inner, "assignment3.zip")
    notebooks = copy_reference(tmp_path / "notebooks")
    (notebooks / "RNN_Captioning.ipynb").write_text("{not json")
    (notebooks / "LSTM_Captioning.ipynb").write_text("[" * 100000 + "]" * 100000)
    notebooks_zip = zip_folder(notebooks, tmp_path / "notebooks.zip")
    for zip_path, note in [
        (loose, "classifiers/rnn.py as asgn3/classifiers/rnn.py"),  # "loose files you write: graded ..."
        (tmp_path / "zip-in-zip.zip", "graded the asgn3 in assignment3.zip"),
        (notebooks_zip, "RNN_Captioning.ipynb is not a valid notebook"),
    ]:
        result = grade_in_process(zip_path, only)
        print(zip_path.name, result["score"], result["output"])
        assert result["score"] == 6 and note in result["output"]
    assert "LSTM_Captioning.ipynb is not a valid notebook" in result["output"]

    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    result = grade_in_process(empty, only)
    assert result["score"] == 0 and "the zip is empty" in result["tests"][0]["output"]

    lines = copy_reference(tmp_path / "lines")
    replace_region(lines, RNN := "asgn3/rnn_layers.py", "rnn_step_forward", "next_h = x @ Wh\ncache = None")
    text = (lines / RNN).read_text()
    student_line = text.splitlines().index("    next_h = x @ Wh") + 1
    (lines / RNN).write_text("# a comment of the student's own\n" * 7 + text)  # shifts every line by 7
    result = grade_in_process(zip_folder(lines, tmp_path / "lines.zip"), ["rnn_step_forward values"])
    output = result["tests"][0]["output"]
    print(output)
    assert (
        result["score"] == 0 and f"your asgn3/rnn_layers.py:{student_line + 7} in rnn_step_forward" in output
    )

    shapes = copy_reference(tmp_path / "shapes")
    replace_region(
        shapes,
        "asgn3/classifiers/rnn.py",
        "loss",
        'self.params["W_embed"] = np.zeros(1)\n'
        "loss, grads = 1.0, {k: np.zeros_like(v) for k, v in self.params.items()}",
    )
    result = grade_in_process(zip_folder(shapes, tmp_path / "shapes.zip"), ["CaptioningRNN('rnn') overfit"])
    print(result["tests"][0]["output"])
    assert result["score"] == 0
    assert "expected param_W_embed of shape (12, 16), got (1,)" in result["tests"][0]["output"]


def test_a_submission_that_uses_up_its_time_budget_is_told_it_took_too_long(tmp_path):
    from staff.grade import Grader

    submission = zip_folder(copy_reference(tmp_path / "slow"), tmp_path / "slow.zip")
    result = Grader(submission, only=["sigmoid values"], seed=SEED, budget=0.5).grade()
    print(result["output"])
    assert result["score"] == 0
    assert "not run: took too long" in result["tests"][0]["output"]
    assert "the time budget of 0.5 s for the whole submission ran out, 1 checks" in result["output"]
