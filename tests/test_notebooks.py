"""Tests of the notebooks, their headless runner (tools/run_notebooks.py) and start_ipython_osx.sh.

Each notebook is executed from a clean kernel, with the kernel started outside the kit (so nothing depends
on the working directory); the test fails on any error, and checks that every relative error the notebook
printed is under its stated bound, that the sanity values are where they should be, and that the network
was fooled. These executions are the slow part of the suite (several minutes together). ImageNet_Gradients
needs the ImageNet weights (kit.sh setup fetches them): without them it must run and skip its parts.
"""

import importlib.util
import os
import subprocess
import sys

import nbformat
import pytest

from asgn3.data_paths import EFFICIENTNET_LITE0_WEIGHTS, KIT_DIR
from asgn3.notebook_checks import parse_checks


def _load_runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", KIT_DIR / "tools" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()

# The checks each notebook must print: each of these names, or name prefixes, must start at least one
# printed check (and every printed check must pass).
EXPECTED_CHECKS = {
    "RNN_Captioning": [
        "rnn_step_forward next_h",
        "rnn_step_backward dx",
        "rnn_step_backward dWh",
        "rnn_forward h",
        "rnn_backward dx",
        "rnn_backward dh0",
        "word_embedding_forward out",
        "word_embedding_backward dW",
        "temporal_affine_backward dx",
        "temporal_softmax_loss N=100 T=1",
        "temporal_softmax_loss N=100 T=10",
        "temporal_softmax_loss N=5000 T=10 p=0.1",
        "temporal_softmax_loss dx",
        "CaptioningRNN rnn loss",
        "CaptioningRNN rnn dW_embed",
        "CaptioningRNN rnn dWh",
        "overfit rnn final loss",
    ],
    "LSTM_Captioning": [
        "lstm_step_forward next_h",
        "lstm_step_forward next_c",
        "lstm_step_backward dx",
        "lstm_step_backward dprev_c",
        "lstm_forward h",
        "lstm_backward dx",
        "lstm_backward dWh",
        "CaptioningRNN lstm loss",
        "CaptioningRNN lstm dW_embed",
        "CaptioningRNN lstm dWx",
        "overfit lstm final loss",
    ],
    "ImageGradients": [
        "pretrained CNN train accuracy",
        "pretrained CNN val accuracy",
        "fooling image",
    ],
    "ImageGeneration": [
        "class visualization ",
        "feature inversion layer 3",
        "feature inversion layer 6",
        "DeepDream layer",
    ],
    "Transformer_Captioning": [
        "layernorm_forward out",
        "layernorm_backward dx",
        "layernorm_backward dgamma",
        "positional_encoding PE",
        "multihead_attention_forward out",
        "attention mask: weight of masked positions",
        "attention mask: change of the earlier outputs",
        "multihead_attention_backward dquery",
        "multihead_attention_backward dkey",
        "multihead_attention_backward dWq",
        "decoder_layer_forward out",
        "decoder_layer_backward dx",
        "decoder_layer_backward dmemory",
        "decoder_layer_backward dcross_attn.Wq",
        "CaptioningTransformer loss",
        "CaptioningTransformer dW_embed",
        "CaptioningTransformer dlayer0_self_attn_Wq",
        "overfit transformer final loss",
    ],
    "Attribution": [
        "smoothgrad without noise = saliency",
        "integrated_gradients completeness",
        "grad_cam against numeric gradients",
        "randomization check saliency",
        "randomization check edge detector",
        "deletion SmoothGrad vs random",
        "insertion SmoothGrad vs random",
    ],
    "ImageNet_Gradients": [
        "ImageNet coffee is espresso",
        "fooling image",
        "ImageNet fooling image",
        "ImageNet class visualization ",
        "ImageNet feature inversion layer",
        "ImageNet DeepDream layer",
    ]
    if EFFICIENTNET_LITE0_WEIGHTS.is_file()
    else [],
}


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    nb = nbformat.read(KIT_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells, f"{name} has no code cells"
    for cell in code_cells:
        assert cell.outputs == [] and cell.execution_count is None, (
            f"{name}: committed with outputs in cell {cell.source[:60]!r}: clear them before committing"
        )


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_notebook_runs_and_its_checks_pass(name, tmp_path):
    nb, seconds, error = runner.execute_notebook(KIT_DIR / f"{name}.ipynb", cwd=tmp_path)
    print(f"{name}: executed in {seconds:.0f} s")
    assert error is None, f"{name} raised an error:\n{error}"

    checks = parse_checks(runner.printed_text(nb))
    for check in checks:
        print(f"  {check.name}: {check.quantity} {check.value:g} ({check.relation} {check.bound:g})")
    failed = [check for check in checks if not check.passed]
    assert not failed, f"{name}: checks failed: {failed}"
    missing = [
        prefix
        for prefix in EXPECTED_CHECKS[name]
        if not any(check.name.startswith(prefix) for check in checks)
    ]
    assert not missing, f"{name}: these checks were not printed: {sorted(missing)}"

    figures = runner.export_figures(nb, tmp_path / "figures")
    if EXPECTED_CHECKS[name]:
        assert len(figures) >= 3, f"{name}: expected several figures, got {len(figures)}"


def test_imagenet_notebook_skips_its_parts_without_the_weights(tmp_path):
    absent = tmp_path / "absent.npz"
    nb, _, error = runner.execute_notebook(
        KIT_DIR / "ImageNet_Gradients.ipynb", params={"WEIGHTS_FILE": str(absent)}, cwd=tmp_path
    )
    assert error is None, f"ImageNet_Gradients raised an error without the weights:\n{error}"
    printed = runner.printed_text(nb)
    assert f"the EfficientNet-Lite0 weights ({absent}) are absent" in printed
    assert printed.count("skipped, the ImageNet weights are absent") == 6  # every part says so
    assert parse_checks(printed) == []


def _tiny_notebook(path, sources, parameters=None):
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in sources)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_parse_param_reads_python_literals_else_strings():
    assert runner.parse_param("TRAIN_FULL=True") == ("TRAIN_FULL", True)
    assert runner.parse_param("NUM_EPOCHS = 3") == ("NUM_EPOCHS", 3)
    assert runner.parse_param("NAME=cat") == ("NAME", "cat")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        runner.parse_param("TRAIN_FULL")


def test_runner_injects_parameters_runs_exports_figures_and_reports(tmp_path, capsys):
    source = _tiny_notebook(
        tmp_path / "tiny.ipynb",
        [
            "from asgn3.notebook_checks import report\nreport('tiny check', 1e-9 if FAST else 1.0, 1e-8)",
            "import matplotlib.pyplot as plt\n%matplotlib inline\nplt.plot([1, 2, 3]); plt.show()",
        ],
        parameters="FAST = False",
    )

    with pytest.raises(ValueError, match="unknown parameter.*SLOW"):
        runner.run([str(source)], tmp_path / "out", params={"SLOW": True})

    assert runner.run([str(source)], tmp_path / "out", params={"FAST": True}, figures=True)
    printed = capsys.readouterr().out
    assert "tiny.ipynb: ok" in printed and "1 checks, 0 failed" in printed
    executed = nbformat.read(tmp_path / "out" / "tiny.ipynb", as_version=4)
    assert "injected-parameters" in executed.cells[1].metadata["tags"]
    assert (tmp_path / "out" / "figures" / "tiny" / "cell03_0.png").read_bytes()[:4] == b"\x89PNG"
    assert nbformat.read(source, as_version=4).cells[0].outputs == []  # the source is untouched

    assert not runner.run([str(source)], tmp_path / "out")  # FAST = False: the check fails
    assert "failed check: tiny check" in capsys.readouterr().out


def test_runner_keeps_the_partial_copy_of_a_notebook_that_raises(tmp_path, capsys):
    source = _tiny_notebook(tmp_path / "broken.ipynb", ["print('before')", "1 / 0", "print('after')"])
    assert not runner.run([str(source)], tmp_path / "out")
    assert "broken.ipynb: raised an error" in capsys.readouterr().out
    executed = nbformat.read(tmp_path / "out" / "broken.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "before\n"
    assert executed.cells[1].outputs[0]["ename"] == "ZeroDivisionError"
    assert executed.cells[2].outputs == []


def test_runner_command_line_refuses_an_unknown_notebook(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(KIT_DIR / "tools" / "run_notebooks.py"),
            "--out",
            str(tmp_path),
            "No_Such_Notebook",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "No_Such_Notebook" in result.stderr and "RNN_Captioning" in result.stderr


def _fake_kit(tmp_path, with_venv):
    """A copy of start_ipython_osx.sh next to a fake kit.sh and (optionally) a fake .venv/bin/jupyter."""
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "start_ipython_osx.sh").write_text((KIT_DIR / "start_ipython_osx.sh").read_text())
    fake_jupyter = '#!/usr/bin/env bash\necho "jupyter $* in $PWD"\n'
    (kit / "kit.sh").write_text(
        'echo "kit.sh $*"\nmkdir -p .venv/bin\n'
        f"cat > .venv/bin/jupyter <<'EOF'\n{fake_jupyter}EOF\nchmod +x .venv/bin/jupyter\n"
    )
    if with_venv:
        (kit / ".venv" / "bin").mkdir(parents=True)
        (kit / ".venv" / "bin" / "jupyter").write_text(fake_jupyter)
        (kit / ".venv" / "bin" / "jupyter").chmod(0o755)
    return kit


@pytest.mark.parametrize("with_venv", [True, False])
def test_start_ipython_osx_starts_jupyter_from_the_kit_venv(tmp_path, with_venv):
    kit = _fake_kit(tmp_path, with_venv)
    env = {**os.environ, "JUPYTER_APP": "notebook"}
    result = subprocess.run(
        ["bash", str(kit / "start_ipython_osx.sh"), "--no-browser"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[-1] == f"jupyter notebook --no-browser in {kit}"
    assert ("kit.sh setup" in lines) == (not with_venv)
