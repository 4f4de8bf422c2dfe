"""collectSubmission.sh: what goes into assignment3.zip, what stays out, and when it refuses."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from asgn3.assignment import handed_in_notebooks
from asgn3.data_paths import KIT_DIR
from staff.safezip import check_zip
from staff.submission import find_package

SCRIPT = KIT_DIR / "collectSubmission.sh"
NOTEBOOKS = list(handed_in_notebooks())
MANIFEST = "asgn3/assignment.py"  # the script reads the list of notebooks from it
CODE = [
    "asgn3/__init__.py",
    MANIFEST,
    "asgn3/rnn_layers.py",
    "asgn3/classifiers/__init__.py",
    "asgn3/classifiers/rnn.py",
    "asgn3/im2col_cython.pyx",
]
JUNK = [
    "asgn3/im2col_cython.c",
    "asgn3/im2col_cython.cpython-311-x86_64-linux-gnu.so",
    "asgn3/build/lib/x.py",
    "asgn3/__pycache__/rnn_layers.cpython-311.pyc",
    "asgn3/.ipynb_checkpoints/x-checkpoint.py",
    "asgn3/checkpoints/model.h5",
    "datasets/coco_captioning/coco2014_captions.h5",
    "datasets/get_x.sh",
    ".venv/bin/python",
    ".git/HEAD",
    "checkpoints/epoch1.pkl",
    "output/x.ipynb",
    "notes.txt",
]


def notebook(executed):
    """A minimal nbformat-4 notebook with one code cell, executed or not."""
    cell = {
        "cell_type": "code",
        "metadata": {},
        "source": "print(1)",
        "outputs": [],
        "execution_count": 1 if executed else None,
    }
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)


@pytest.fixture
def kit(tmp_path):
    """A student folder: the script, four executed notebooks, asgn3 code, and everything to leave out."""
    shutil.copy(SCRIPT, tmp_path / SCRIPT.name)
    for name in NOTEBOOKS:
        (tmp_path / name).write_text(notebook(executed=True))
    for name in CODE + JUNK:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n")
    shutil.copy(KIT_DIR / MANIFEST, tmp_path / MANIFEST)
    return tmp_path


def collect(folder, path=None):
    """Run the script as a student would, from another folder; returns the CompletedProcess."""
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["bash", str(folder / SCRIPT.name)], cwd="/", env=env, capture_output=True, text=True, timeout=60
    )


def names_in(zip_path):
    with zipfile.ZipFile(zip_path) as archive:
        return sorted(archive.namelist())


def test_zips_notebooks_and_code_and_nothing_else(kit):
    result = collect(kit)
    assert result.returncode == 0, result.stderr
    assert "assignment3.zip" in result.stdout
    assert names_in(kit / "assignment3.zip") == sorted(NOTEBOOKS + CODE)


def test_the_zip_is_what_the_grader_accepts(kit, tmp_path_factory):
    collect(kit)
    entries = check_zip(kit / "assignment3.zip")
    assert len(entries) == len(NOTEBOOKS + CODE)
    out = tmp_path_factory.mktemp("extracted")
    with zipfile.ZipFile(kit / "assignment3.zip") as archive:
        archive.extractall(out)
    assert find_package(out) == out / "asgn3"


@pytest.mark.parametrize("missing", NOTEBOOKS)
def test_refuses_a_missing_notebook(kit, missing):
    (kit / missing).unlink()
    result = collect(kit)
    assert result.returncode != 0
    assert f"{missing} is missing" in result.stderr
    assert not (kit / "assignment3.zip").exists()


def test_refuses_a_notebook_never_executed_and_names_it(kit):
    (kit / "ImageGradients.ipynb").write_text(notebook(executed=False))
    result = collect(kit)
    assert result.returncode != 0
    assert "ImageGradients.ipynb was never executed" in result.stderr
    assert "RNN_Captioning.ipynb" not in result.stderr


def test_reports_every_problem_at_once_and_removes_a_stale_zip(kit):
    (kit / "assignment3.zip").write_text("an old submission")
    (kit / "RNN_Captioning.ipynb").unlink()
    (kit / "LSTM_Captioning.ipynb").write_text(notebook(executed=False))
    result = collect(kit)
    assert result.returncode != 0
    assert "RNN_Captioning.ipynb is missing" in result.stderr
    assert "LSTM_Captioning.ipynb was never executed" in result.stderr
    assert "old assignment3.zip was removed" in result.stderr
    assert not (kit / "assignment3.zip").exists()


def tools_without_zip(bin_dir, python=True):
    """A folder of links to the usual tools, without `zip` (and without Python unless asked)."""
    for tool in ["bash", "sh", "dirname", "find", "sort", "grep", "rm", "wc", "tr", "cat"]:
        found = shutil.which(tool)
        assert found, f"{tool} is needed for this test"
        (bin_dir / tool).symlink_to(found)
    if python:
        (bin_dir / "python3").symlink_to(sys.executable)
    assert shutil.which("zip", path=str(bin_dir)) is None
    return str(bin_dir)


def test_works_without_the_zip_program(kit, tmp_path_factory):
    """A PATH with the usual tools but no `zip`: the script falls back to Python's zipfile."""
    result = collect(kit, path=tools_without_zip(tmp_path_factory.mktemp("bin")))
    assert result.returncode == 0, result.stderr
    assert names_in(kit / "assignment3.zip") == sorted(NOTEBOOKS + CODE)


def test_says_that_python_is_needed_when_there_is_none(kit, tmp_path_factory):
    result = collect(kit, path=tools_without_zip(tmp_path_factory.mktemp("bin"), python=False))
    assert result.returncode != 0
    assert (
        "Python is needed to read the list of notebooks" in result.stderr and "kit.sh setup" in result.stderr
    )
    assert not (kit / "assignment3.zip").exists()


def test_the_notebooks_are_the_manifests(kit):
    """A notebook added to the manifest is one the script asks for: no list of its own to update."""
    manifest = kit / MANIFEST
    manifest.write_text(
        manifest.read_text().replace(
            'Notebook("ImageGeneration"),', 'Notebook("ImageGeneration"),\n    Notebook("Extra"),'
        )
    )
    result = collect(kit)
    assert result.returncode != 0
    assert "Extra.ipynb is missing" in result.stderr


def test_replaces_an_old_zip(kit):
    (kit / "assignment3.zip").write_text("old")
    assert collect(kit).returncode == 0
    assert names_in(kit / "assignment3.zip") == sorted(NOTEBOOKS + CODE)


def test_uses_only_bash_3_2_features():
    """macOS ships bash 3.2: no associative arrays, mapfile, case conversion, |&, &>> or coproc."""
    text = SCRIPT.read_text()
    for construct in ["declare -A", "mapfile", "readarray", ",,}", "^^}", "|&", "&>>", "coproc", "local -n"]:
        assert construct not in text, construct
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
