"""The student release: stubs instead of reference code, staff material left out, a kit that imports and
whose notebooks stop at the first unimplemented function with a clear message."""

import json
import subprocess
import sys
import zipfile

import pytest

from asgn3.assignment import graded_modules, handed_in_notebooks
from asgn3.data_paths import KIT_DIR
from staff.markers import find_regions, stub_notebook, stub_source
from staff.release import kit_files, load_manifest, main, manifest_problems, release

START = "    # *****START OF YOUR CODE*****"
END = "    # *****END OF YOUR CODE*****"


# -- stubbing a source ----------------------------------------------------------------------------------


def test_a_region_becomes_pass_and_keeps_the_todo_and_markers():
    source = "\n".join(
        [
            "def f(x):",
            "    out, cache = None, None",
            "    # TODO: compute out",
            START,
            "    out = 2 * x",
            "    cache = x",
            END,
            "    return out, cache",
            "",
        ]
    )
    stub = stub_source(source)
    assert stub == "\n".join(
        [
            "def f(x):",
            "    out, cache = None, None",
            "    # TODO: compute out",
            START,
            "    pass",
            END,
            "    return out, cache",
            "",
        ]
    )
    namespace = {}
    exec(stub, namespace)
    assert namespace["f"](3) == (None, None)


def test_outputs_not_set_before_the_region_are_set_to_none():
    source = "\n".join(
        [
            "def f(x, y):",
            START,
            "    total = x + y",
            "    x = 2 * total",
            "    helper = 1",
            END,
            "    return total, x",
            "",
        ]
    )
    stub = stub_source(source)
    assert "    total = None" in stub  # read after END, assigned only inside: preset
    assert "    x = None" not in stub  # an argument: it already exists
    assert "helper" not in stub  # never read after END
    namespace = {}
    exec(stub, namespace)
    assert namespace["f"](1, 2) == (None, 1)


def test_regions_in_methods_loops_and_notebook_cells():
    source = "\n".join(
        [
            "class Model:",
            "    def sample(self, n):",
            "        words = [0] * n",
            "        for t in range(n):",
            "            # *****START OF YOUR CODE*****",
            "            word = t * 2",
            "            words[t] = word",
            "            # *****END OF YOUR CODE*****",
            "        return words",
            "",
        ]
    )
    stub = stub_source(source)
    assert "            pass\n" in stub and "word = t * 2" not in stub
    namespace = {}
    exec(stub, namespace)
    assert namespace["Model"]().sample(3) == [0, 0, 0]
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "source": [
                    "%matplotlib inline\n",
                    "# *****START OF YOUR CODE*****\n",
                    "answer = 42\n",
                    "# *****END OF YOUR CODE*****\n",
                    "print(answer)",
                ],
                "outputs": [{"output_type": "stream", "text": "42"}],
                "execution_count": 3,
            },
            {"cell_type": "markdown", "source": "# *****START OF YOUR CODE***** in markdown stays"},
        ]
    }
    assert stub_notebook(notebook) == 1
    cell = notebook["cells"][0]
    assert cell["source"] == (
        "%matplotlib inline\n# *****START OF YOUR CODE*****\npass\nanswer = None\n"
        "# *****END OF YOUR CODE*****\nprint(answer)"
    )
    assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize(
    "lines, message",
    [
        ([START, "    x = 1"], "without an END marker"),
        (["    x = 1", END], "END marker without a START"),
        ([START, START, END], "START marker inside the region"),
    ],
)
def test_broken_markers_are_named(lines, message):
    with pytest.raises(ValueError, match=message):
        stub_source("\n".join(["def f():", *lines, "    return 1", ""]), "broken.py")


# -- the release of this checkout -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "asgn3-student"
    summary = release(out, verbose=False)
    return out, summary


def test_staff_material_stays_out_and_the_kit_is_complete(released):
    out, summary = released
    files = set(summary["files"])
    assert not any(name.startswith(("staff/", "tests/hostile/")) for name in files)
    assert not (out / "staff").exists()
    for staff_test in ["tests/test_release.py", "tests/test_grade.py", "tests/test_collect_submission.py"]:
        assert not (out / staff_test).exists()
    assert "tests/test_rnn_layers.py" not in files  # a test of the reference code
    tracked = set(kit_files())
    staff_scripts = {"bench/grade.py", "bench/batch.py", "requirements-staff.txt"}  # they need staff/ or Dask
    assert not staff_scripts & files
    expected = {name for name in tracked if not name.startswith(("staff/", "tests/"))} - staff_scripts
    assert expected <= files  # data scripts, shipped model, photos, notebooks, kit.sh, README, ...
    for name in [
        "kit.sh",
        "README.md",
        "requirements.txt",
        "pyproject.toml",
        "setup.py",
        "collectSubmission.sh",
        *handed_in_notebooks(),
        *(module.replace(".", "/") + ".py" for module in graded_modules()),
    ]:
        assert (out / name).is_file(), name
    assert summary["regions"] >= 20
    with zipfile.ZipFile(summary["zip"]) as archive:
        assert sorted(archive.namelist()) == sorted(f"{out.name}/{name}" for name in files)


def reference_code_lines(released_files):
    """Every non-trivial line of a marked region of the master (independently of staff/release.py).

    Non-trivial: not blank, not a comment, not `pass`, and not also present outside the regions of a
    file that the student kit shows anyway.
    """
    inside, outside = set(), set()
    for name in kit_files():
        if name.startswith("staff/") or not name.endswith((".py", ".ipynb")):
            continue
        path = KIT_DIR / name
        if name.endswith(".ipynb"):
            texts = [
                "".join(cell["source"])
                for cell in json.loads(path.read_text())["cells"]
                if cell["cell_type"] == "code"
            ]
        else:
            texts = [path.read_text()]
        for text in texts:
            lines = text.splitlines()
            regions = find_regions(text)
            within = {n for r in regions for n in range(r.start + 1, r.end)}
            inside |= {lines[n].strip() for n in within}
            if name in released_files:
                outside |= {line.strip() for n, line in enumerate(lines) if n not in within}
    return {line for line in inside - outside if line and not line.startswith("#") and line != "pass"}


def test_no_line_of_reference_code_survives(released):
    out, summary = released
    secret = reference_code_lines(set(summary["files"]))
    assert len(secret) > 100  # the master really has reference code to hide
    leaks = []
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".ipynb", ".md", ".txt", ".sh", ".toml", ".pyx"):
            text = path.read_text(errors="replace")
            if path.suffix == ".ipynb":
                text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
            leaks += [(path.name, line.strip()) for line in text.splitlines() if line.strip() in secret]
    assert leaks == []


def test_every_released_region_is_a_stub(released):
    out, summary = released
    count = 0
    for name in summary["files"]:
        if name.endswith(".py"):
            text = (out / name).read_text()
            for region in find_regions(text, name):
                body = [line.strip() for line in text.splitlines()[region.start + 1 : region.end]]
                assert body[0] == "pass" and all(line.endswith(" = None") for line in body[1:]), (name, body)
                count += 1
    assert count == summary["regions"] - sum(
        len(find_regions("".join(c["source"])))
        for nb in out.glob("*.ipynb")
        for c in json.loads(nb.read_text())["cells"]
        if c["cell_type"] == "code"
    )


def test_released_notebooks_have_no_outputs(released):
    out, _ = released
    for notebook in out.glob("*.ipynb"):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None


IMPORT_PROBE = """
import importlib, pkgutil, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path.insert(0, sys.argv[1])
import asgn3
assert asgn3.__file__.startswith(sys.argv[1]), asgn3.__file__
names = [m.name for m in pkgutil.walk_packages(asgn3.__path__, "asgn3.") if m.name != "asgn3.setup"]
for name in names:
    importlib.import_module(name)
import numpy as np
from asgn3.rnn_layers import rnn_step_forward
from asgn3.image_gradients import compute_saliency_maps
one = np.ones
print(len(names), rnn_step_forward(one((2, 3)), one((2, 4)), one((3, 4)), one((4, 4)), one(4)))
"""


def test_the_released_kit_imports_and_its_stubs_return_none(released):
    out, _ = released
    result = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_PROBE, str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    count, values = result.stdout.split(" ", 1)
    assert int(count) >= 10
    assert values.strip() == "(None, None)"


@pytest.mark.slow  # a notebook kernel: over 10 s
@pytest.mark.parametrize("notebook", ["RNN_Captioning.ipynb", "ImageGradients.ipynb"])
def test_a_released_notebook_stops_at_the_first_stub_saying_not_implemented(released, notebook, tmp_path):
    """Run as a student would after `bash kit.sh setup` (the built default data linked in)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out, _ = released
    for needed in [
        "datasets/default/coco_captioning",
        "datasets/default/tiny-imagenet-100-A",
        "datasets/pretrained/default_pretrained_model.h5",
    ]:
        assert (KIT_DIR / needed).exists(), f"{needed} is missing: run `bash kit.sh setup` first"
    default = out / "datasets" / "default"
    if not default.exists():
        default.symlink_to(KIT_DIR / "datasets" / "default")
    nb = nbformat.read(out / notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(out)}}
    )
    with pytest.raises(CellExecutionError) as error:
        client.execute()
    message = str(error.value)
    assert "NotImplementedError" in message
    assert "returned None: fill in the code between the START/END markers in asgn3/" in message
    executed = [c for c in nb.cells if c.cell_type == "code" and c.execution_count]
    assert len(executed) >= 3  # the set-up and data cells ran before the first stub


def test_the_command_line_refuses_an_existing_folder(tmp_path, capsys):
    (tmp_path / "kit").mkdir()
    assert main([str(tmp_path / "kit")]) == 1
    assert "already exists" in capsys.readouterr().err


def test_the_manifest_and_the_marked_regions_agree():
    assert manifest_problems(KIT_DIR, load_manifest(), ["asgn3.rnn_layers"]) == []


def test_a_disagreement_with_the_manifest_is_named(tmp_path):
    """A graded function without a region, and a region that no question grades, are both errors."""
    kit = tmp_path / "kit"
    (kit / "asgn3").mkdir(parents=True)
    manifest = (KIT_DIR / "asgn3" / "assignment.py").read_text()
    (kit / "asgn3" / "assignment.py").write_text(manifest)
    for module in graded_modules():
        rel = module.replace(".", "/") + ".py"
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        (kit / rel).write_text((KIT_DIR / rel).read_text())
    for notebook in handed_in_notebooks():
        (kit / notebook).write_text("{}")
    rnn = kit / "asgn3" / "rnn_layers.py"
    rnn.write_text(rnn.read_text().replace("def sigmoid(", "def renamed_sigmoid("))
    problems = manifest_problems(kit, load_manifest(kit), ["asgn3.rnn_layers", "asgn3.extra"])
    assert any(
        "grades asgn3.rnn_layers:sigmoid, but asgn3/rnn_layers.py has no marked region" in p for p in problems
    )
    assert any("a marked region in renamed_sigmoid, which no question grades" in p for p in problems)
    assert any("asgn3.extra has marked regions but no question grades it" in p for p in problems)
    (kit / "ImageGradients.ipynb").unlink()
    assert any(
        "ImageGradients.ipynb, which is not in" in p for p in manifest_problems(kit, load_manifest(kit))
    )
