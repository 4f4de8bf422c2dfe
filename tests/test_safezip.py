"""staff/safezip.py: zips that cannot be extracted are refused with a message that says what to do, and a
zip without asgn3/ at its root is searched for the obvious fix (or described, when there is none)."""

import zipfile

import pytest

from staff.safezip import SubmissionError, check_zip, extract_zip, locate_package

STUDENT_FILES = ["asgn3/classifiers/rnn.py", "asgn3/image_gradients.py", "asgn3/rnn_layers.py"]


def make_zip(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def locate(tmp_path, entries):
    """Extract a zip of entries and locate its package: (package relative to tmp_path or None, note)."""
    extract_zip(make_zip(tmp_path / "s.zip", entries), tmp_path / "out")
    package, note = locate_package(tmp_path / "out", STUDENT_FILES, tmp_path / "scratch")
    print(note)
    return (package.relative_to(tmp_path).as_posix() if package else None), note


@pytest.mark.parametrize(
    "entries, message",
    [
        ([("asgn3/" + "x" * 300 + "/a.py", b"")], "longer than a filesystem allows"),
        ([("asgn3/" + "/".join(["d" * 200] * 8) + "/a.py", b"")], "longer than a filesystem allows"),
        (
            [("asgn3/rnn_layers.py", b"x"), ("asgn3/rnn_layers.py/inner.py", b"y")],
            "needs a folder of that name",
        ),
        ([("asgn3", b"a file"), ("asgn3/rnn_layers.py", b"y")], "needs a folder of that name"),
    ],
    ids=["long folder name", "long path", "file then folder", "file named asgn3"],
)
def test_zips_that_cannot_be_extracted_are_refused_clearly(tmp_path, entries, message):
    zip_path = make_zip(tmp_path / "s.zip", entries)
    with pytest.raises(SubmissionError, match=message):
        check_zip(zip_path)
    with pytest.raises(SubmissionError, match=message):
        extract_zip(zip_path, tmp_path / "out")


def test_a_zip_with_a_damaged_directory_is_refused(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", [("asgn3/rnn_layers.py", b"x = 1\n" * 100)])
    data = bytearray(zip_path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 10 : central + 12] = (99).to_bytes(2, "little")  # an unknown compression method
    zip_path.write_bytes(bytes(data))
    with pytest.raises(SubmissionError, match="rnn_layers.py"):
        extract_zip(zip_path, tmp_path / "out")


def test_asgn3_at_the_root_needs_no_note(tmp_path):
    assert locate(tmp_path, [("asgn3/rnn_layers.py", b"x = 1"), ("RNN_Captioning.ipynb", b"{}")]) == (
        "out/asgn3",
        "",
    )


def test_a_nested_folder_is_graded_and_named(tmp_path):
    package, note = locate(tmp_path, [("assignment3/asgn3/rnn_layers.py", b"x = 1")])
    assert package == "out/assignment3/asgn3"
    assert "asgn3 found at assignment3/asgn3/, not at the zip's root: graded it" in note


def test_two_asgn3_folders_at_the_same_depth_are_not_guessed_between(tmp_path):
    package, note = locate(tmp_path, [("a/asgn3/rnn_layers.py", b"x = 1"), ("b/asgn3/rnn_layers.py", b"y")])
    assert package is None
    assert "several asgn3 folders (a/asgn3, b/asgn3)" in note and "collectSubmission.sh" in note


def test_loose_student_files_are_graded_where_they_belong(tmp_path):
    entries = [("rnn_layers.py", b"x = 1"), ("work/rnn.py", b"y = 2"), ("notes.txt", b"")]
    package, note = locate(tmp_path, entries)
    assert package == "scratch/asgn3"
    assert (tmp_path / "scratch/asgn3/classifiers/rnn.py").read_text() == "y = 2"
    assert (tmp_path / "scratch/asgn3/rnn_layers.py").read_text() == "x = 1"
    assert "graded work/rnn.py as asgn3/classifiers/rnn.py, rnn_layers.py as asgn3/rnn_layers.py" in note


def test_a_loose_file_found_twice_is_not_guessed_between(tmp_path):
    package, note = locate(tmp_path, [("a/rnn_layers.py", b"x"), ("b/rnn_layers.py", b"y")])
    assert package is None
    assert "none of the files you write" in note


def test_a_zip_inside_the_zip_is_opened_once(tmp_path):
    inner = make_zip(tmp_path / "inner.zip", [("asgn3/rnn_layers.py", b"x = 1")])
    package, note = locate(tmp_path, [("assignment3.zip", inner.read_bytes())])
    assert package == "scratch/inner/asgn3"
    assert "another zip, assignment3.zip, and no asgn3 folder: graded the asgn3 in assignment3.zip" in note


def test_a_zip_in_a_zip_in_a_zip_is_not_opened(tmp_path):
    innermost = make_zip(tmp_path / "c.zip", [("asgn3/rnn_layers.py", b"x = 1")])
    inner = make_zip(tmp_path / "b.zip", [("c.zip", innermost.read_bytes())])
    package, note = locate(tmp_path, [("b.zip", inner.read_bytes())])
    assert package is None
    assert "in b.zip: the zip holds 1 files (c.zip)" in note


def test_a_hostile_zip_inside_the_zip_is_refused_with_the_reason(tmp_path):
    inner = make_zip(tmp_path / "inner.zip", [("../evil.py", b"x = 1")])
    package, note = locate(tmp_path, [("assignment3.zip", inner.read_bytes())])
    assert package is None
    assert "assignment3.zip cannot be used" in note and "climbs out of the folder" in note


def test_an_empty_zip_says_so(tmp_path):
    package, note = locate(tmp_path, [])
    assert package is None and "the zip is empty" in note


def test_a_zip_of_something_else_says_what_it_holds(tmp_path):
    package, note = locate(tmp_path, [("report.pdf", b"%PDF"), ("code/main.py", b"print(1)")])
    assert package is None
    assert "holds 2 files (code/main.py, report.pdf) but no asgn3 folder" in note
    assert "none of the files you write (image_gradients.py, rnn.py, rnn_layers.py)" in note
