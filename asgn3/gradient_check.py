"""Numeric gradients by centered differences, to check the analytic backward passes.

Every function perturbs its input x in place, one entry at a time, and restores it before returning:
notebook lambdas that close over the same array see the perturbation, and rely on that.
"""

from random import randrange

import numpy as np


def _check_float_array(x):
    """Raise a ValueError unless x is a float ndarray that can be perturbed in place."""
    if not (isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)):
        found = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(
            f"expected x to be a float numpy array (it is perturbed in place), got {found}; "
            "pass x.astype(np.float64)"
        )


def _values_around(f, x, ix, h):
    """Return (f(x + h e_ix), f(x - h e_ix)), perturbing x[ix] in place and restoring it; copies of arrays."""
    old_value = x[ix]
    try:
        x[ix] = old_value + h
        f_plus = np.array(f(x), copy=True)  # copied: f may return a buffer it reuses
        x[ix] = old_value - h
        f_minus = np.array(f(x), copy=True)
    finally:
        x[ix] = old_value
    return f_plus, f_minus


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """
    Compute the numeric gradient of a scalar function at x by centered differences.

    Inputs:
    - f: function that takes one argument (the array x) and returns a scalar
    - x: float array of any shape, perturbed in place entry by entry and restored
    - verbose: print each index and its gradient entry
    - h: step of the centered difference (f(x + h) - f(x - h)) / 2h

    Returns:
    - grad: array of the shape of x, the numeric gradient of f at x
    """
    _check_float_array(x)
    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        f_plus, f_minus = _values_around(f, x, ix, h)
        grad[ix] = (f_plus - f_minus) / (2 * h)
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """
    Compute the numeric gradient of sum(f(x) * df) at x: f's backward pass for the upstream derivative df.

    Inputs:
    - f: function that takes the array x and returns an array of the shape of df
    - x: float array of any shape, perturbed in place entry by entry and restored
    - df: upstream derivative, of the shape of f(x)
    - h: step of the centered difference

    Returns:
    - grad: array of the shape of x
    """
    _check_float_array(x)
    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        f_plus, f_minus = _values_around(f, x, ix, h)
        if f_plus.shape != np.shape(df):
            raise ValueError(f"expected f(x) of the shape of df {np.shape(df)}, got {f_plus.shape}")
        grad[ix] = np.sum((f_plus - f_minus) * df) / (2 * h)
    return grad


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5):
    """
    Compare the analytic gradient with the numeric one at num_checks random entries, printing each.

    Inputs:
    - f: function that takes the array x and returns a scalar
    - x: float array of any shape, perturbed in place and restored
    - analytic_grad: the analytic gradient, of the shape of x
    - num_checks: number of random entries to check
    - h: step of the centered difference

    Returns:
    - errors: list of the num_checks relative errors, also printed
    """
    _check_float_array(x)
    if np.shape(analytic_grad) != x.shape:
        raise ValueError(f"expected analytic_grad of the shape of x {x.shape}, got {np.shape(analytic_grad)}")
    errors = []
    for _ in range(num_checks):
        ix = tuple(randrange(size) for size in x.shape)
        f_plus, f_minus = _values_around(f, x, ix, h)
        grad_numerical = float(f_plus - f_minus) / (2 * h)
        grad_analytic = analytic_grad[ix]
        error = abs(grad_numerical - grad_analytic) / max(1e-12, abs(grad_numerical) + abs(grad_analytic))
        print(f"numerical: {grad_numerical:f} analytic: {grad_analytic:f}, relative error: {error:e}")
        errors.append(error)
    return errors
