"""Tests of asgn3/notebook_checks.py: rel_error, the one-line reports and their parser."""

import numpy as np
import pytest

from asgn3.notebook_checks import (
    parse_checks,
    rel_error,
    report,
    report_about,
    report_at_least,
    report_below,
    report_fooled,
    require,
)


def test_rel_error_is_the_largest_relative_difference():
    x = np.array([1.0, 2.0, 0.0])
    y = np.array([1.0, 2.2, 0.0])
    # 0.2 / 4.2 at the second entry; the zeros give 0 / 1e-8 = 0.
    assert rel_error(x, y) == pytest.approx(0.2 / 4.2)
    assert rel_error(x, x) == 0.0


def test_rel_error_names_the_stub_that_returned_none():
    def rnn_step_forward():
        return None

    rnn_step_forward.__module__ = "asgn3.rnn_layers"
    with pytest.raises(
        NotImplementedError,
        match=r"rnn_step_forward returned None: fill in the code between "
        r"the START/END markers in asgn3/rnn_layers\.py",
    ):
        rel_error(np.zeros(3), rnn_step_forward(), rnn_step_forward)
    with pytest.raises(NotImplementedError, match="START/END markers in asgn3/"):
        rel_error(None, np.zeros(3))


def test_require_passes_values_and_refuses_none():
    value = np.ones(2)
    assert require(value, "compute_saliency_maps") is value
    with pytest.raises(NotImplementedError, match="compute_saliency_maps returned None"):
        require(None, "compute_saliency_maps")


def test_a_none_value_in_a_report_means_a_stub():
    with pytest.raises(NotImplementedError, match="the loss is None.*START/END markers"):
        report_about("temporal_softmax_loss N=100 T=1", "loss", None, 2.3, 0.1)


def test_rel_error_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"same shape; got \(2, 3\) and \(3, 2\)"):
        rel_error(np.zeros((2, 3)), np.zeros((3, 2)))


def test_reports_print_one_line_that_parses_back(capsys):
    assert report("rnn_step_forward next_h", 2.07e-9, 1e-8)
    assert not report("rnn_backward dx", 3e-3, 1e-7)
    assert report_about("temporal_softmax_loss N=100 T=1", "loss", 2.3026, 2.3, 0.2)
    assert not report_about("temporal_softmax_loss N=100 T=10", "loss", 30.0, 23.0, 2.0)
    assert report_at_least("pretrained CNN val accuracy", "accuracy", 0.91, 0.5)
    assert report_below("overfit RNN final loss", "loss", 0.05, 0.1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "rnn_step_forward next_h: relative error 2.07e-09 (should be below 1e-08) OK"
    assert lines[1] == "rnn_backward dx: relative error 0.003 (should be below 1e-07) FAIL"
    assert lines[2] == "temporal_softmax_loss N=100 T=1: loss 2.3 (should be about 2.3 within 0.2) OK"

    checks = parse_checks("\n".join(["some other output: 12", *lines, "Iteration 1 / 10: loss 3.2"]))
    assert [c.name for c in checks] == [
        "rnn_step_forward next_h",
        "rnn_backward dx",
        "temporal_softmax_loss N=100 T=1",
        "temporal_softmax_loss N=100 T=10",
        "pretrained CNN val accuracy",
        "overfit RNN final loss",
    ]
    assert [c.passed for c in checks] == [True, False, True, False, True, True]
    assert checks[0].value == pytest.approx(2.07e-9) and checks[0].bound == 1e-8
    assert checks[2].relation == "about" and checks[2].tol == 0.2


def test_parser_recomputes_the_verdict_from_the_numbers():
    lying = "rnn_backward dx: relative error 0.5 (should be below 1e-07) OK"
    (check,) = parse_checks(lying)
    assert not check.passed
    (nan_check,) = parse_checks("x: relative error nan (should be below 1e-07) OK")
    assert not nan_check.passed


def test_report_fooled_prints_and_asserts(capsys):
    report_fooled(3, 3, [["dress"], ["coat"], ["sandal"], ["dress", "frock"]])
    with pytest.raises(AssertionError, match="not fooled"):
        report_fooled(1, 3)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "fooling image: predicted class 3 (dress), target class 3 (dress) FOOLED",
        "fooling image: predicted class 1, target class 3 NOT FOOLED",
    ]
    fooled, not_fooled = parse_checks("\n".join(lines))
    assert fooled.passed and fooled.relation == "fooled"
    assert not not_fooled.passed
