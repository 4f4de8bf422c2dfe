"""The manifest (asgn3/assignment.py) is the one list of the assignment: a question added there (a
graded function between markers, its row, its hidden check) is released, graded and run with no other
file touched; the README's table of questions is the manifest's."""

import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from asgn3.assignment import NOTEBOOKS, QUESTIONS, handed_in_notebooks, main, markdown_table, total_points
from asgn3.data_paths import KIT_DIR
from staff.release import kit_files

TOY_MODULE = '''"""A toy graded function (the test of adding a question through the manifest)."""


def toy_double(x):
    """Twice x, of any shape."""
    out = None
    ###########################################################################
    # TODO: return twice x.                                                   #
    ###########################################################################
    # *****START OF YOUR CODE*****
    out = x + x  # the toy reference
    # *****END OF YOUR CODE*****
    return out
'''
TOY_CHECKS = '''"""Q7 toy (5 points, extra credit)."""

from staff.judging import normal, values_check


def checks(rng):
    return [values_check("Q7", 5, "asgn3.toy", "toy_double", {"x": normal(rng, 3, 4)}, ["x"], ["out"])]
'''
TOY_ROW = 'Question("Q7", "toy", 5, "Toy", ("asgn3.toy:toy_double",), extra_credit=True),\n'
TOY_CELL = (
    "import numpy as np\nfrom asgn3.toy import toy_double\nprint('toy_double:', toy_double(np.ones(2)))"
)


def test_the_command_line_lists_notebooks_and_questions(capsys):
    assert main(["notebooks"]) == 0
    assert capsys.readouterr().out.split() == list(handed_in_notebooks())
    assert main(["questions"]) == 0
    assert capsys.readouterr().out.count("\n") == len(QUESTIONS)
    assert main(["nothing"]) == 2
    assert total_points() == 100


def test_the_readme_table_of_questions_is_the_manifests():
    assert markdown_table() in (KIT_DIR / "README.md").read_text(), (
        "the README's table of questions differs from the manifest: paste `python -m asgn3.assignment table`"
    )


def copy_kit(target):
    """The tracked files of the kit and its compiled extension, into target (not a git checkout)."""
    for name in kit_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(KIT_DIR / name, target / name)
    for built in (KIT_DIR / "asgn3").glob("*.so"):
        shutil.copyfile(built, target / "asgn3" / built.name)
    return target


def add_toy_question(kit):
    """The three steps of a new question: a graded function between markers, a row, its hidden check."""
    (kit / "asgn3" / "toy.py").write_text(TOY_MODULE)
    manifest = kit / "asgn3" / "assignment.py"
    text = manifest.read_text()
    text = text.replace(
        '    Notebook("ImageGeneration"),\n', '    Notebook("ImageGeneration"),\n    Notebook("Toy"),\n'
    )
    end = text.index("\n)\n", text.index("QUESTIONS = ("))
    manifest.write_text(text[:end] + "\n    " + TOY_ROW.rstrip("\n") + text[end:])
    (kit / "staff" / "questions" / "q7.py").write_text(TOY_CHECKS)
    cell = {"cell_type": "code", "metadata": {}, "source": TOY_CELL, "outputs": [], "execution_count": None}
    notebook = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (kit / "Toy.ipynb").write_text(json.dumps(notebook))
    return kit


def run(kit, *args):
    """python args..., in the kit's folder (so that its own asgn3 and staff are imported)."""
    result = subprocess.run([sys.executable, *args], cwd=kit, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def zip_submission(folder, zip_path):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted((folder / "asgn3").rglob("*.py")):
            archive.write(path, path.relative_to(folder).as_posix())
    return zip_path


@pytest.mark.slow
def test_a_question_added_to_the_manifest_is_released_graded_and_run(tmp_path):
    kit = add_toy_question(copy_kit(tmp_path / "kit"))
    # released as a stub, its notebook with the others
    run(kit, "-m", "staff.release", str(tmp_path / "student"))
    released = (tmp_path / "student" / "asgn3" / "toy.py").read_text()
    assert "out = x + x" not in released and "pass" in released
    assert (tmp_path / "student" / "Toy.ipynb").is_file()
    # graded: the reference full points, the stub none
    for name, folder, expected in [("reference", kit, 5), ("stub", tmp_path / "student", 0)]:
        zip_path = zip_submission(folder, tmp_path / f"{name}.zip")
        run(kit, "-m", "staff.grade", str(zip_path), "--only", "Q7", "--seed", "3", "--json", f"{name}.json")
        result = json.loads((kit / f"{name}.json").read_text())
        assert [(t["name"], t["score"]) for t in result["tests"]] == [("Q7 toy: toy_double values", expected)]
    # run by the notebook runner, which lists it with the others
    listed = run(kit, "tools/run_notebooks.py", "--list").split()
    expected = [notebook.filename for notebook in NOTEBOOKS]
    expected.insert(expected.index("ImageGeneration.ipynb") + 1, "Toy.ipynb")  # where the row went
    assert listed == expected
    printed = run(kit, "tools/run_notebooks.py", "--out", str(tmp_path / "out"), "Toy")
    assert "Toy.ipynb: ok" in printed
    executed = json.loads((tmp_path / "out" / "Toy.ipynb").read_text())
    assert "toy_double: [2. 2.]" in json.dumps(executed)
