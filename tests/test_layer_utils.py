"""Tests of asgn3/layer_utils.py: numeric gradient checks (float64) of every sandwich layer, and that each
sandwich equals its layers run one after the other."""

import numpy as np
import pytest

from asgn3 import fast_layers, layer_utils, layers

GRAD_TOL = 1e-7


def bn_param(dim, rng, mode="train"):
    return {"mode": mode, "running_mean": rng.standard_normal(dim), "running_var": rng.uniform(0.5, 2, dim)}


def assert_bn_sandwich_gradients(errors, forward, backward, inputs, *params, mode):
    """
    In train mode the bias b is removed again by the batch mean, so its exact gradient is zero and a
    relative error of two roundoff-sized numbers means nothing: there db must be zero instead.
    """
    assert len(errors) == 5
    checked = [e for k, e in enumerate(errors) if not (mode == "train" and k == 2)]
    assert max(checked) < GRAD_TOL
    if mode == "train":
        out, cache = forward(*inputs, *params)
        db = backward(np.random.default_rng(9).standard_normal(out.shape), cache)[2]
        assert np.abs(db).max() < 1e-10


def test_affine_relu_gradients(layer_grad_errors):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 3, 2)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    errors = layer_grad_errors(layer_utils.affine_relu_forward, layer_utils.affine_relu_backward, [x, w, b])
    assert max(errors) < GRAD_TOL


@pytest.mark.parametrize("mode", ["train", "test"])
def test_affine_bn_relu_gradients(layer_grad_errors, mode):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((6, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    params = (bn_param(5, rng, mode),)
    forward, backward = layer_utils.affine_bn_relu_forward, layer_utils.affine_bn_relu_backward
    errors = layer_grad_errors(forward, backward, [x, w, b, gamma, beta], *params)
    assert_bn_sandwich_gradients(errors, forward, backward, [x, w, b, gamma, beta], *params, mode=mode)


def test_conv_relu_gradients(layer_grad_errors):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((3, 3, 3, 3)), rng.standard_normal(3)
    errors = layer_grad_errors(
        layer_utils.conv_relu_forward, layer_utils.conv_relu_backward, [x, w, b], {"stride": 1, "pad": 1}
    )
    assert max(errors) < GRAD_TOL


@pytest.mark.parametrize("mode", ["train", "test"])
def test_conv_bn_relu_gradients(layer_grad_errors, mode):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    params = ({"stride": 2, "pad": 1}, bn_param(4, rng, mode))
    forward, backward = layer_utils.conv_bn_relu_forward, layer_utils.conv_bn_relu_backward
    errors = layer_grad_errors(forward, backward, [x, w, b, gamma, beta], *params)
    assert_bn_sandwich_gradients(errors, forward, backward, [x, w, b, gamma, beta], *params, mode=mode)


def test_conv_relu_pool_gradients(layer_grad_errors):
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((3, 3, 3, 3)), rng.standard_normal(3)
    errors = layer_grad_errors(
        layer_utils.conv_relu_pool_forward,
        layer_utils.conv_relu_pool_backward,
        [x, w, b],
        {"stride": 1, "pad": 1},
        {"pool_height": 2, "pool_width": 2, "stride": 2},
    )
    assert max(errors) < GRAD_TOL


def test_conv_bn_relu_equals_its_layers_in_float32():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    w, b = rng.standard_normal((4, 2, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    gamma, beta = np.ones(4, np.float32), np.zeros(4, np.float32)
    conv_param, param_a, param_b = {"stride": 1, "pad": 1}, {"mode": "train"}, {"mode": "train"}
    out, cache = layer_utils.conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, param_a)
    a, _ = fast_layers.conv_forward_fast(x, w, b, conv_param)
    a_bn, _ = layers.spatial_batchnorm_forward(a, gamma, beta, param_b)
    np.testing.assert_array_equal(out, np.maximum(a_bn, 0))
    np.testing.assert_array_equal(param_a["running_mean"], param_b["running_mean"])
    grads = layer_utils.conv_bn_relu_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
