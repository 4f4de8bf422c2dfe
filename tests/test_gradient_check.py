"""Tests of asgn3/gradient_check.py: numeric gradients of functions with known gradients, the in-place
perturbation that is restored, and the errors for inputs that cannot be perturbed."""

import numpy as np
import pytest

from asgn3.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, grad_check_sparse
from asgn3.notebook_checks import rel_error


def test_eval_numerical_gradient_of_a_cubic():
    x = np.random.default_rng(0).standard_normal((3, 4))
    grad = eval_numerical_gradient(lambda x: np.sum(x**3 + 2 * x), x, verbose=False)
    error = rel_error(grad, 3 * x**2 + 2)
    print(f"relative error {error:.2e}")
    assert error < 1e-8


def test_eval_numerical_gradient_restores_x_and_perturbs_it_in_place():
    x = np.random.default_rng(1).standard_normal(5)
    original = x.copy()
    seen = []

    def f_closing_over_x(_):
        seen.append(x.copy())  # the closure sees the perturbation: x is changed in place
        return float(np.sum(np.sin(x)))

    grad = eval_numerical_gradient(f_closing_over_x, x, verbose=False)
    np.testing.assert_array_equal(x, original)
    assert any(not np.array_equal(s, original) for s in seen)
    assert rel_error(grad, np.cos(original)) < 1e-8


def test_eval_numerical_gradient_verbose_prints_each_entry(capsys):
    eval_numerical_gradient(lambda x: float(np.sum(x)), np.zeros((2, 2)), verbose=True)
    assert len(capsys.readouterr().out.strip().splitlines()) == 4


def test_eval_numerical_gradient_array_is_the_backward_of_a_matrix_product():
    rng = np.random.default_rng(2)
    A, x = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    df = rng.standard_normal((4, 2))
    original = x.copy()
    grad = eval_numerical_gradient_array(lambda x: A @ x, x, df)
    assert rel_error(grad, A.T @ df) < 1e-8
    np.testing.assert_array_equal(x, original)


def test_eval_numerical_gradient_array_copes_with_a_reused_output_buffer():
    buffer = np.empty(3)

    def f(x):
        np.multiply(x, x, out=buffer)  # returns the same array on every call
        return buffer

    x = np.array([1.0, -2.0, 0.5])
    df = np.ones(3)
    assert rel_error(eval_numerical_gradient_array(f, x, df), 2 * x) < 1e-8


def test_grad_check_sparse_tells_right_from_wrong(capsys):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6))
    f = lambda x: float(np.sum(np.exp(x)))  # noqa: E731
    good = grad_check_sparse(f, x, np.exp(x), num_checks=5)
    bad = grad_check_sparse(f, x, 2 * np.exp(x), num_checks=5)
    assert len(good) == 5 and max(good) < 1e-7
    assert min(bad) > 0.3  # |e - 2e| / (e + 2e) = 1/3
    assert "relative error" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [np.arange(4), [1.0, 2.0]])
def test_inputs_that_cannot_be_perturbed_in_place_are_refused(bad):
    with pytest.raises(ValueError, match="float numpy array"):
        eval_numerical_gradient(lambda x: 0.0, bad, verbose=False)


def test_grad_check_sparse_needs_matching_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        grad_check_sparse(lambda x: 0.0, np.zeros(3), np.zeros(2))
