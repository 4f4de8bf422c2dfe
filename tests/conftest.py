"""Fixtures shared by the layer tests (test_layers, test_fast_layers, test_layer_utils); --sweep."""

import numpy as np
import pytest

from asgn3.gradient_check import eval_numerical_gradient_array
from asgn3.notebook_checks import rel_error


def _layer_grad_errors(forward, backward, arrays, *params, seed=0, h=1e-5):
    """
    Check a forward/backward pair numerically, in float64, against centered differences.

    The pair is called as forward(*arrays, *params) -> (out, cache) and backward(dout, cache), which must
    return the gradients of the arrays in their order. Returns the relative error of each, printed.
    h is the step of the centered differences: a layer linear in its inputs (affine, convolution) is
    differentiated exactly by any step, and a larger one lowers the roundoff floor eps |f| / h that
    otherwise dominates the relative error of gradient entries close to zero.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    out, cache = forward(*arrays, *params)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    analytic = backward(dout, cache)
    analytic = analytic if isinstance(analytic, tuple) else (analytic,)
    assert len(analytic) >= len(arrays)
    errors = []
    for k, x in enumerate(arrays):
        numeric = eval_numerical_gradient_array(lambda _: forward(*arrays, *params)[0], x, dout, h=h)
        assert analytic[k].shape == x.shape
        errors.append(rel_error(numeric, analytic[k]))
    listed = ", ".join(f"{e:.2e}" for e in errors)
    print(f"{getattr(forward, '__name__', forward)}: relative errors of the inputs' gradients {listed}")
    return errors


@pytest.fixture
def layer_grad_errors():
    """The function that checks a forward/backward pair numerically and returns the relative errors."""
    return _layer_grad_errors


def pytest_addoption(parser):
    parser.addoption(
        "--sweep",
        action="store_true",
        help="also run the many-seed sweeps of the hidden checks (marked sweep; tens of minutes on 2 cores)",
    )


def pytest_collection_modifyitems(config, items):
    """Without --sweep, the sweeps are deselected (listed as such in the summary), not run."""
    if config.getoption("--sweep"):
        return
    sweeps = [item for item in items if item.get_closest_marker("sweep")]
    if sweeps:
        config.hook.pytest_deselected(items=sweeps)
        items[:] = [item for item in items if not item.get_closest_marker("sweep")]
