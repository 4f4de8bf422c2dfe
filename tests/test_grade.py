"""The grader: the reference scores 100, the stubs 0, and hostile submissions gain nothing and break nothing.

Every hostile submission is the reference with one function made hostile (or a hostile zip), graded on
the checks that function affects only (`only=`), with a short timeout, to keep the suite fast.
"""

import csv
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from asgn3.assignment import QUESTIONS, question, total_points
from asgn3.data_paths import KIT_DIR
from staff import grade
from staff.markers import find_regions, stub_source
from staff.questions import build_checks
from staff.report import question_scores
from staff.safezip import SubmissionError, check_zip, extract_zip
from staff.submission import student_files

SEED = 20261128
STUDENT_FILES = student_files()


def copy_reference(folder):
    """The master's asgn3 sources (what a perfect student submits) into folder/asgn3."""
    for path in (KIT_DIR / "asgn3").rglob("*.py"):
        rel = path.relative_to(KIT_DIR)
        if "build" in rel.parts:
            continue
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / rel)
    return folder


def zip_folder(folder, zip_path):
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return zip_path


def replace_region(folder, rel, function, code):
    """Replace the marked region inside `function` of folder/rel by `code` (indented to fit)."""
    path = folder / rel
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(f"def {function}("))
    region = next(r for r in find_regions("\n".join(lines)) if r.start > start)
    body = [region.indent + line if line else line for line in code.strip("\n").splitlines()]
    path.write_text("\n".join(lines[: region.start + 1] + body + lines[region.end :]) + "\n")


def hostile_zip(tmp_path, rel, function, code):
    folder = copy_reference(tmp_path / "hostile")
    replace_region(folder, rel, function, code)
    return zip_folder(folder, tmp_path / "hostile.zip")


def run_grader(zip_path, only=None, timeout=None, seed=SEED):
    return grade.Grader(zip_path, only=only, seed=seed, timeout=timeout).grade()


def by_name(result):
    return {test["name"]: test for test in result["tests"]}


def sandbox_processes():
    """Processes still alive under this test process's sandbox uids a moment after grading: must be none.

    The sandbox gives each grading process 64 uids from 100000 + (pid % 20000) * 64 (staff/sandbox.py);
    other graders running on the machine at the same time have their own. A process killed at the end
    of a run may take a moment to disappear, hence the short wait.
    """
    first = 100000 + (os.getpid() % 20000) * 64
    for _ in range(50):
        listing = subprocess.run(["ps", "-eo", "uid="], capture_output=True, text=True).stdout.split()
        alive = [uid for uid in listing if first <= int(uid) < first + 64]
        if not alive:
            break
        time.sleep(0.1)
    return alive


# -- the reference and the stubs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_zip(tmp_path_factory):
    folder = copy_reference(tmp_path_factory.mktemp("reference"))
    return zip_folder(folder, folder.parent / "reference.zip")


@pytest.mark.slow  # whole gradings: over 10 s
def test_reference_scores_100_with_json_and_table(reference_zip, tmp_path, capsys):
    start = time.monotonic()
    assert grade.main([str(reference_zip), "--json", str(tmp_path / "out.json"), "--seed", str(SEED)]) == 0
    print(f"graded the reference in {time.monotonic() - start:.1f} s")
    result = json.loads((tmp_path / "out.json").read_text())
    failed = [(t["name"], t["output"]) for t in result["tests"] if t["score"] != t["max_score"]]
    assert failed == []
    assert total_points() == 100 and result["score"] == total_points(extra_credit=True)
    regular = [t for t in result["tests"] if not question(t["question"]).extra_credit]
    assert sum(t["max_score"] for t in regular) == 100
    for test in result["tests"]:  # the shape of Gradescope's results.json
        assert set(test) >= {"name", "score", "max_score", "output"}
        assert test["output"]
    per_question = question_scores(result)
    assert {q.key: per_question[q.key][1] for q in QUESTIONS} == {q.key: q.points for q in QUESTIONS}
    table = capsys.readouterr().out
    assert f"TOTAL: {total_points(extra_credit=True):g} / 100" in table  # extra credit adds to the score
    assert "Q4 image generation: 15 / 15" in table
    assert result["extra_data"]["seed"] == SEED


@pytest.mark.slow  # whole gradings: over 10 s
def test_released_stubs_score_zero_saying_not_implemented(tmp_path):
    folder = tmp_path / "stubs"
    copy_reference(folder)
    for rel in STUDENT_FILES:
        path = folder / rel
        path.write_text(stub_source(path.read_text(), rel))
    result = run_grader(zip_folder(folder, tmp_path / "stubs.zip"))
    assert result["score"] == 0
    assert len(result["tests"]) == len(build_checks(SEED)) == 38
    outputs = "\n".join(t["output"] for t in result["tests"])
    assert "not implemented yet (still the stub" in outputs


def test_a_missing_student_file_is_graded_as_its_stub(tmp_path):
    folder = copy_reference(tmp_path / "partial")
    (folder / "asgn3" / "image_gradients.py").unlink()
    result = run_grader(zip_folder(folder, tmp_path / "partial.zip"), only=["Q3", "rnn_step_forward"])
    scores = {t["name"]: t["score"] for t in result["tests"]}
    assert scores["Q1 RNN captioning: rnn_step_forward values"] == 3
    assert result["score"] == 3
    assert "asgn3/image_gradients.py missing (stub used)" in result["output"]


def test_fresh_inputs_each_run_unless_seeded(reference_zip):
    seeds = [
        re.search(r"seed (\d+)", run_grader(reference_zip, only=["sigmoid"], seed=None)["output"])[1]
        for _ in range(2)
    ]
    assert seeds[0] != seeds[1]


# -- hostile submissions: each must score 0 on its checks, and leave the grader and the machine intact ----

RNN = "asgn3/rnn_layers.py"
HOSTILE = {
    "infinite loop": (RNN, "rnn_step_forward", "while True:\n    pass"),
    "sleeps forever": (RNN, "rnn_step_forward", "import time\nwhile True:\n    time.sleep(100)"),
    "memory hog": (RNN, "rnn_step_forward", "hog = bytearray(16 << 30)  # 16 GB, zero-filled"),
    "memory hog, step by step": (
        RNN,
        "rnn_step_forward",
        "hog = []\nwhile True:\n    hog.append(bytearray(1 << 28))",
    ),
    "fork bomb": (
        RNN,
        "rnn_step_forward",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    ),
    "os.system reads the reference": (
        RNN,
        "rnn_step_forward",
        f"""
import os
os.system("cat {KIT_DIR}/asgn3/rnn_layers.py > stolen.py 2>/dev/null; touch {KIT_DIR}/PWNED /tmp/PWNED_asgn3")
os.system("curl -s -m 3 http://example.com > net.txt 2>/dev/null")
os.system("git -C {KIT_DIR} show HEAD:asgn3/rnn_layers.py >> stolen.py 2>/dev/null")
source = open("stolen.py").read()
assert "np.tanh" in source, "no reference to steal"
namespace = {{}}
exec(source, namespace)
next_h, cache = namespace["rnn_step_forward"](x, prev_h, Wx, Wh, b)
""",
    ),
    "reads the reference files": (
        RNN,
        "rnn_step_forward",
        f"""
import glob
source = ""
for pattern in ["{KIT_DIR}/asgn3/rnn_layers.py", "/proc/*/root{KIT_DIR}/asgn3/rnn_layers.py",
                "/proc/*/cwd/asgn3/rnn_layers.py", "/tmp/*/reference/*", "/tmp/*/rnn_layers.py",
                "/tmp/*/*/rnn_layers.py", "/tmp/asgn3-grade-*/*/*/*",
                "/tmp/pytest-of-*/*/*/tmp/asgn3-grade-*/*/*/*"]:
    for name in glob.glob(pattern):
        try:
            text = open(name).read()
        except OSError:
            continue
        if "np.tanh(xw" in text:
            source = text
namespace = {{}}
exec(source, namespace)
next_h, cache = namespace["rnn_step_forward"](x, prev_h, Wx, Wh, b)
""",
    ),
    "monkeypatches the checker and numpy": (
        RNN,
        "rnn_step_backward",
        """
import asgn3.gradient_check as gc
import asgn3.notebook_checks as checks
gc.eval_numerical_gradient = lambda f, x, verbose=True, h=1e-5: np.zeros_like(x)
checks.rel_error = lambda *args, **kwargs: 0.0
np.allclose = lambda *args, **kwargs: True
np.max = lambda *args, **kwargs: 0.0
x, prev_h, Wx, Wh, next_h = cache
dx, dprev_h, dWx, dWh, db = (np.zeros_like(x), np.zeros_like(prev_h), np.zeros_like(Wx), np.zeros_like(Wh),
                             np.zeros(Wh.shape[1]))
""",
    ),
    "returns cached answers": (
        RNN,
        "rnn_step_forward",
        """
# next_h of the notebook's fixed inputs (N=3, H=4), whatever the inputs are
next_h = np.array([[-0.58172089, -0.50182032, -0.41232771, -0.31410098],
                   [0.66854692, 0.79562378, 0.87755553, 0.92795967],
                   [0.97934501, 0.99144213, 0.99646691, 0.99854353]])
cache = None
""",
    ),
    "forges the grader's files and pickles": (
        RNN,
        "rnn_step_forward",
        """
import json, os, pickle
class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/PWNED_pickle",))
for index in range(4):
    with open(f"status_{index}.json", "w") as f:
        json.dump({"ok": True, "missing": []}, f)
    with open(f"out_{index}.npz", "wb") as f:
        np.save(f, np.array([Payload()], dtype=object), allow_pickle=True)
os._exit(0)
""",
    ),
    "kills every process it can": (RNN, "rnn_step_forward", "import os, signal\nos.kill(-1, signal.SIGKILL)"),
    "crashes the interpreter": (RNN, "rnn_step_forward", "import ctypes\nctypes.string_at(0)"),
    "exits": (RNN, "rnn_step_forward", "raise SystemExit(0)"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_function_gains_nothing(tmp_path, monkeypatch, name):
    rel, function, code = HOSTILE[name]
    private_tmp = tmp_path / "tmp"  # the grader's temporary folders, apart from other graders' in /tmp
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    check = "rnn_step_backward gradients" if function == "rnn_step_backward" else "rnn_step_forward values"
    start = time.monotonic()
    result = run_grader(hostile_zip(tmp_path, rel, function, code), only=[check], timeout=2)
    seconds = time.monotonic() - start
    print(f"{name}: graded in {seconds:.1f} s: {result['tests'][0]['output']}")
    assert [t["score"] for t in result["tests"]] == [0]
    assert result["tests"][0]["status"] == "failed"
    if name == "memory hog":
        assert "MemoryError" in result["tests"][0]["output"]
    assert seconds < 40
    assert not (KIT_DIR / "PWNED").exists()
    assert not any(entry.startswith("PWNED") for entry in os.listdir("/tmp"))
    assert os.listdir(private_tmp) == []  # the grader's own folders are removed
    assert sandbox_processes() == []


def test_a_hang_costs_only_its_own_check(tmp_path):
    zip_path = hostile_zip(
        tmp_path, "asgn3/image_gradients.py", "make_fooling_image", "hog = bytearray(16 << 30)"
    )
    result = run_grader(zip_path, only=["Q3"])
    scores = {t["name"]: t["score"] for t in result["tests"]}
    assert scores == {
        "Q3 image gradients: compute_saliency_maps values": 5,
        "Q3 image gradients: make_fooling_image fools the model": 0,
    }
    fooling = by_name(result)["Q3 image gradients: make_fooling_image fools the model"]
    assert "MemoryError" in fooling["output"]


@pytest.mark.slow  # whole gradings: over 10 s
def test_a_module_that_hangs_at_import_costs_one_timeout(tmp_path):
    folder = copy_reference(tmp_path / "hangs")
    path = folder / RNN
    # top-level code of the submission's own runs at import (an assignment to a new name is kept)
    path.write_text(path.read_text() + "\n_forever = sum(1 for _ in iter(int, 1))\n")
    start = time.monotonic()
    result = run_grader(zip_folder(folder, tmp_path / "hangs.zip"), only=["Q1", "Q3"], timeout=6)
    seconds = time.monotonic() - start
    scores = {t["question"]: 0.0 for t in result["tests"]}
    for test in result["tests"]:
        scores[test["question"]] += test["score"]
    assert scores == {"Q1": 0, "Q3": 10}
    assert "asgn3.rnn_layers does not import" in result["output"]
    assert seconds < 60  # one import timeout, not one per check


def test_regions_are_spliced_into_the_current_kit_file(tmp_path):
    """Infrastructure changed by the submission is the kit's again; its own helpers are kept."""
    folder = copy_reference(tmp_path / "spliced")
    path = folder / RNN
    header = "def _check_sequence_inputs(x, h0, Wx, Wh, b, gates):"
    text = path.read_text().replace(header, header + '\n    raise ValueError("an old kit")')
    path.write_text(text + "\n\nimport math\n\n\ndef my_tanh(a):\n    return np.tanh(a) * math.cos(0)\n")
    replace_region(
        folder,
        RNN,
        "rnn_step_forward",
        """
xw = x if Wx is None else x @ Wx
next_h = my_tanh(xw + prev_h @ Wh + b)
cache = (x, prev_h, Wx, Wh, next_h)
""",
    )
    result = run_grader(zip_folder(folder, tmp_path / "spliced.zip"), only=["rnn_forward values"])
    assert result["score"] == 4, result["tests"][0]["output"]
    assert "regions spliced into the kit's file, with 2 definitions of its own" in result["output"]


def test_a_file_whose_regions_do_not_match_is_used_whole(tmp_path):
    folder = copy_reference(tmp_path / "whole")
    path = folder / RNN
    lines = path.read_text().splitlines()
    first_end = next(i for i, line in enumerate(lines) if "END OF YOUR CODE" in line)
    first_start = max(i for i in range(first_end) if "START OF YOUR CODE" in lines[i])
    del lines[first_end], lines[first_start]  # markers removed around rnn_step_forward's code
    path.write_text("\n".join(lines) + "\n")
    result = run_grader(zip_folder(folder, tmp_path / "whole.zip"), only=["rnn_step_forward values"])
    assert result["score"] == 3
    assert "asgn3/rnn_layers.py submitted: whole file used (its START/END regions differ" in result["output"]


def test_a_wrong_gradient_is_caught_against_the_reference_forward(tmp_path):
    """A backward pass consistent with a wrong forward pass still fails: the truth is the reference's."""
    folder = copy_reference(tmp_path / "relu")
    replace_region(
        folder,
        RNN,
        "rnn_step_forward",
        """
next_h = np.maximum(0, x @ Wx + prev_h @ Wh + b)  # a ReLU cell instead of tanh
cache = (x, prev_h, Wx, Wh, next_h)
""",
    )
    replace_region(
        folder,
        RNN,
        "rnn_step_backward",
        """
x, prev_h, Wx, Wh, next_h = cache
da = dnext_h * (next_h > 0)  # exactly right for the ReLU cell
dx, dprev_h, dWx, dWh, db = da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)
""",
    )
    result = run_grader(zip_folder(folder, tmp_path / "relu.zip"), only=["rnn_step_backward"])
    assert result["score"] == 0
    assert "relative error" in result["tests"][0]["output"]


# -- hostile zips -------------------------------------------------------------------------------------


def raw_zip(path, entries):
    """A zip from (ZipInfo or name, bytes) pairs, written as they are."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return path


def symlink_entry(name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


HOSTILE_ZIPS = {
    "zip-slip": ([("asgn3/../../evil.py", b"print('escaped')")], "climbs out of the folder"),
    "zip-slip at the start": ([("../evil.py", b"x = 1")], "climbs out of the folder"),
    "absolute path": ([("/tmp/evil.py", b"x = 1")], "absolute path"),
    "symlink entry": (
        [symlink_entry("asgn3/rnn_layers.py", str(KIT_DIR / "asgn3" / "rnn_layers.py"))],
        "symbolic link",
    ),
    "zip bomb": ([("asgn3/rnn_layers.py", bytes(40 << 20))], "compression ratio"),
    "huge file": ([("asgn3/data.bin", os.urandom(1 << 20) * 60)], "more than 50 MB"),
    "backslash path": ([("asgn3\\..\\..\\evil.py", b"x = 1")], "backslash"),
    "not a zip": (None, "not a zip file"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_ZIPS))
def test_hostile_zip_is_refused_with_a_clear_message(tmp_path, name):
    entries, message = HOSTILE_ZIPS[name]
    zip_path = tmp_path / "submissions" / "hostile.zip"
    zip_path.parent.mkdir()
    if entries is None:
        zip_path.write_bytes(b"#!/bin/sh\necho not a zip\n")
    else:
        raw_zip(zip_path, entries)
    with pytest.raises(SubmissionError, match=message):
        check_zip(zip_path)
    result = run_grader(zip_path, only=["rnn_step_forward values"])
    assert result["score"] == 0
    assert "submission refused: " in result["output"] and message in result["output"]
    assert sorted(os.listdir(tmp_path)) == ["submissions"]
    assert os.listdir(tmp_path / "submissions") == ["hostile.zip"]
    assert not Path("/tmp/evil.py").exists()


def test_a_header_that_lies_about_its_size_is_refused(tmp_path):
    zip_path = raw_zip(tmp_path / "liar.zip", [("asgn3/rnn_layers.py", b"x" * 5000)])
    data = bytearray(zip_path.read_bytes())
    # declare 10 bytes in the central directory (offset 24 of the entry's header), keep the data
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    zip_path.write_bytes(bytes(data))
    with pytest.raises(SubmissionError):
        extract_zip(zip_path, tmp_path / "out")
    assert (
        not (tmp_path / "out" / "asgn3" / "rnn_layers.py").exists()
        or (tmp_path / "out" / "asgn3" / "rnn_layers.py").stat().st_size <= 10
    )


def test_extract_writes_only_inside_the_folder(tmp_path):
    zip_path = raw_zip(tmp_path / "ok.zip", [("a/b.py", b"x = 1"), ("c.txt", b"hi"), ("d/", b"")])
    written = extract_zip(zip_path, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == ["a/b.py", "c.txt"]
    assert sorted(os.listdir(tmp_path)) == ["ok.zip", "out"]


# The sandbox itself at every level: tests/test_sandbox.py; hostile classes at every level: test_hostile.py


# -- batch mode ---------------------------------------------------------------------------------------


@pytest.mark.slow  # whole gradings: over 10 s
def test_batch_grades_a_folder_into_a_csv_gradebook(tmp_path, reference_zip):
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(reference_zip, folder / "alice.zip")
    raw_zip(folder / "mallory.zip", [("../evil.py", b"x = 1")])
    stubs = copy_reference(tmp_path / "bob")
    for rel in STUDENT_FILES:
        (stubs / rel).write_text(stub_source((stubs / rel).read_text(), rel))
    zip_folder(stubs, folder / "bob.zip")
    out = io.StringIO()
    sys.stdout, saved = out, sys.stdout
    try:
        assert (
            grade.main(
                [
                    str(folder),
                    "--only",
                    "rnn_step_forward values,sigmoid",
                    "--seed",
                    "7",
                    "--json-dir",
                    str(tmp_path / "json"),
                ]
            )
            == 0
        )
    finally:
        sys.stdout = saved
    rows = {row["submission"]: row for row in csv.DictReader(open(folder / "gradebook.csv"))}
    assert sorted(rows) == ["alice.zip", "bob.zip", "mallory.zip"]
    assert float(rows["alice.zip"]["score"]) == 6 and float(rows["alice.zip"]["max_score"]) == 6
    assert float(rows["alice.zip"]["Q1"]) == 3 and float(rows["alice.zip"]["Q2"]) == 3
    assert float(rows["bob.zip"]["score"]) == 0
    assert float(rows["mallory.zip"]["score"]) == 0 and "refused" in rows["mallory.zip"]["notes"]
    assert sorted(os.listdir(tmp_path / "json")) == ["alice.json", "bob.json", "mallory.json"]
    assert "alice.zip: 6 / 6" in out.getvalue()


def test_numbers_are_compared_here_not_trusted_from_the_child():
    """The outcome reader accepts plain numeric arrays only, and refuses pickled objects."""
    assert np.load  # the grader reads with allow_pickle=False (see protocol.read_outcomes)
    source = (KIT_DIR / "staff" / "protocol.py").read_text()
    assert "allow_pickle=False" in source and "pickle.load" not in source
    for name in ("grade.py", "judging.py", "report.py"):  # the protocol is the one reader of results
        assert "np.load" not in (KIT_DIR / "staff" / name).read_text()
