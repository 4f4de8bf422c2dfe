"""The Gradescope bundle, graded end to end in a temporary /autograder laid out as Gradescope does.

The bundle is unpacked into ROOT/source, run_autograder is copied to ROOT/run_autograder and run from ROOT
with ASGN3_AUTOGRADER_ROOT=ROOT and this environment's python3 first on PATH (what setup.sh provisions;
its compiling of the extension is stood in for by copying the one built here). Two submissions: the
reference as Gradescope unpacks an upload (the notebooks and asgn3/), and the stubs as an assignment3.zip
that was not unpacked.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from asgn3.assignment import graded_modules, handed_in_notebooks, total_points
from asgn3.data_paths import KIT_DIR
from staff import gradescope
from staff.markers import stub_source

STUDENT_FILES = [module.replace(".", "/") + ".py" for module in graded_modules()]


def assert_valid_results(results):
    """results.json has Gradescope's fields with the right types, and the tests add up to the score."""
    assert set(results) <= {"score", "execution_time", "output", "visibility", "stdout_visibility", "tests"}
    assert isinstance(results["score"], int | float) and isinstance(results["output"], str)
    assert results["visibility"] in gradescope.VISIBILITIES
    assert results["stdout_visibility"] in gradescope.VISIBILITIES
    for test in results["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility", "tags"}
        assert isinstance(test["name"], str) and isinstance(test["output"], str) and test["output"]
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed") and test["visibility"] in gradescope.VISIBILITIES
    assert sum(test["score"] for test in results["tests"]) == pytest.approx(results["score"])


def unpack_bundle(bundle, root):
    """Lay the bundle out as Gradescope does: unpacked in root/source, run_autograder copied to root."""
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
        for info in archive.infolist():  # extractall drops the Unix modes: put them back
            mode = info.external_attr >> 16
            if mode:
                os.chmod(root / "source" / info.filename, stat.S_IMODE(mode))
    for built in (KIT_DIR / "asgn3").glob("im2col_cython*.so"):  # setup.sh compiles it there
        shutil.copy(built, root / "source" / "kit" / "asgn3")
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    return root


def run_autograder(root):
    """Run root/run_autograder from root, as Gradescope does; returns results.json as a dict."""
    env = dict(os.environ, ASGN3_AUTOGRADER_ROOT=str(root))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    completed = subprocess.run(
        [str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )
    print(completed.stdout[-3000:], completed.stderr[-3000:])
    assert completed.returncode == 0
    return json.loads((root / "results" / "results.json").read_text())


def student_upload(folder, stubs=False):
    """The notebooks and the asgn3 folder of a student (the reference's, or the stubs)."""
    for path in (KIT_DIR / "asgn3").rglob("*.py"):
        rel = path.relative_to(KIT_DIR)
        if "build" not in rel.parts:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text()
            write = stub_source(text, rel.as_posix()) if stubs and rel.as_posix() in STUDENT_FILES else text
            (folder / rel).write_text(write)
    for name in handed_in_notebooks():
        shutil.copy(KIT_DIR / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "asgn3_autograder.zip"
    assert gradescope.main([str(path), "--visibility", "after_published"]) == 0
    return path


def test_the_bundle_has_the_scripts_at_its_root_and_the_reference_inside(bundle):
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        settings = json.loads(archive.read("settings.json"))
    assert {"setup.sh", "run_autograder", "settings.json"} <= names
    assert all(modes[name] & 0o111 for name in ("setup.sh", "run_autograder"))
    for name in ("kit/staff/gradescope.py", "kit/staff/grade.py", "kit/requirements.txt", "kit/setup.py"):
        assert name in names
    assert {f"kit/{rel}" for rel in STUDENT_FILES} <= names  # the reference
    assert not [name for name in names if name.startswith(("kit/tests/", "kit/.git")) or name.endswith(".so")]
    assert settings["visibility"] == "after_published"


def test_the_scripts_parse_and_run_what_the_layout_expects(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path)
    for script in ("setup.sh", "run_autograder"):
        assert subprocess.run(["bash", "-n", str(tmp_path / script)]).returncode == 0
    setup = (tmp_path / "setup.sh").read_text()
    assert (
        "kit/requirements.txt" in setup and "pip install --quiet --no-build-isolation --no-deps -e ." in setup
    )
    assert "/usr/local/bin/python3" in setup and "--self-test" in setup
    assert 'ROOT="${ASGN3_AUTOGRADER_ROOT:-/autograder}"' in (tmp_path / "run_autograder").read_text()


def test_results_keep_gradescope_fields_only():
    result = {
        "score": 3,
        "execution_time": 1.5,
        "output": "notes",
        "tests": [
            {
                "name": "Q1 a",
                "score": 3,
                "max_score": 3,
                "status": "passed",
                "output": "ok",
                "question": "Q1",
            },
            {
                "name": "Q2 b",
                "score": 0,
                "max_score": 2,
                "status": "failed",
                "output": "no",
                "question": "Q2",
            },
        ],
    }
    results = gradescope.gradescope_results(result, "after_due_date")
    assert_valid_results(results)
    assert [test["tags"] for test in results["tests"]] == [["Q1"], ["Q2"]]
    assert {test["visibility"] for test in results["tests"]} == {"after_due_date"}
    assert results["stdout_visibility"] == "hidden"


def test_an_upload_is_its_zip_or_a_zip_of_its_files(tmp_path):
    upload = tmp_path / "submission"
    (upload / "asgn3").mkdir(parents=True)
    (upload / "asgn3" / "rnn_layers.py").write_text("x = 1\n")
    (upload / "RNN_Captioning.ipynb").write_text("{}")
    made = gradescope.uploaded_zip(upload, tmp_path / "made.zip")
    assert sorted(zipfile.ZipFile(made).namelist()) == ["RNN_Captioning.ipynb", "asgn3/rnn_layers.py"]
    shutil.rmtree(upload / "asgn3")
    (upload / "assignment3.zip").write_bytes(made.read_bytes())
    assert gradescope.uploaded_zip(upload, tmp_path / "other.zip") == upload / "assignment3.zip"


def test_a_grader_failure_still_writes_results_for_the_student(tmp_path, monkeypatch):
    import staff.grade

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(staff.grade, "Grader", broken)
    (tmp_path / "submission").mkdir()
    results = gradescope.grade_upload(tmp_path)
    assert results["score"] == 0 and "RuntimeError: disk full" in results["output"]
    assert json.loads((tmp_path / "results" / "results.json").read_text()) == results
    assert_valid_results(results)


def test_run_autograder_writes_results_even_when_python_cannot_start(bundle, tmp_path):
    root = unpack_bundle(bundle, tmp_path / "autograder")
    (root / "submission").mkdir()
    (root / "source" / "kit" / "staff" / "gradescope.py").write_text("raise SystemExit(3)\n")
    completed = subprocess.run(
        [str(root / "run_autograder")], cwd=root, env=dict(os.environ, ASGN3_AUTOGRADER_ROOT=str(root))
    )
    assert completed.returncode == 3
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "could not start (exit 3)" in results["output"]
    assert_valid_results({**results, "visibility": "visible", "stdout_visibility": "hidden"})


def test_a_bad_visibility_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown visibility 'soon'"):
        gradescope.make_bundle(tmp_path / "x.zip", visibility="soon")


@pytest.mark.slow
def test_the_reference_upload_scores_100(bundle, tmp_path):
    root = unpack_bundle(bundle, tmp_path / "autograder")
    student_upload(root / "submission")
    results = run_autograder(root)
    assert_valid_results(results)
    assert results["score"] == total_points(extra_credit=True), [
        t["name"] for t in results["tests"] if t["score"] < t["max_score"]
    ]
    assert "RNN_Captioning.ipynb" in results["output"]
    assert {test["visibility"] for test in results["tests"]} == {"after_published"}


@pytest.mark.slow
def test_an_uploaded_zip_of_the_stubs_scores_0(bundle, tmp_path):
    root = unpack_bundle(bundle, tmp_path / "autograder")
    folder = student_upload(tmp_path / "student", stubs=True)
    (root / "submission").mkdir()
    with zipfile.ZipFile(root / "submission" / "assignment3.zip", "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    results = run_autograder(root)
    assert_valid_results(results)
    assert results["score"] == 0 and len(results["tests"]) >= 20
    assert "not implemented yet" in "\n".join(test["output"] for test in results["tests"])
