"""Tests of asgn3/layers.py: numeric gradient checks (float64), forward passes against independent
references, batchnorm's running statistics, and the ValueErrors for mismatched shapes."""

import re

import numpy as np
import pytest
from scipy.signal import correlate2d

from asgn3 import layers
from asgn3.gradient_check import eval_numerical_gradient
from asgn3.notebook_checks import rel_error

GRAD_TOL = 1e-7
# Affine and convolution layers are linear in each input, so centered differences are exact for any step;
# 1e-3 instead of 1e-5 keeps the roundoff (eps |f| / h) far below the tolerance for entries close to zero.
LINEAR_STEP = 1e-3


def away_from_zero(rng, shape, margin=0.05):
    """Random normal values with |value| >= margin, so that ReLU kinks are far from the finite differences."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * (margin + np.abs(x)), x)


def distinct_values(rng, shape):
    """Random values at least 0.01 apart from each other: max pooling has no near-ties."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + 0.003 * rng.random(shape)


# --------------------------------------------------------------------------------------------------------
# Numeric gradient checks of every backward pass
# --------------------------------------------------------------------------------------------------------


def test_affine_gradients(layer_grad_errors):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 2, 3, 2)), rng.standard_normal((12, 5)), rng.standard_normal(5)
    errors = layer_grad_errors(layers.affine_forward, layers.affine_backward, [x, w, b], h=LINEAR_STEP)
    assert max(errors) < GRAD_TOL


def test_relu_gradient(layer_grad_errors):
    x = away_from_zero(np.random.default_rng(1), (5, 3, 4))
    assert max(layer_grad_errors(layers.relu_forward, layers.relu_backward, [x])) < GRAD_TOL


@pytest.mark.parametrize("mode", ["train", "test"])
def test_batchnorm_gradients(layer_grad_errors, mode):
    rng = np.random.default_rng(2)
    N, D = 6, 5
    x = 3 * rng.standard_normal((N, D)) + 2
    gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
    bn_param = {"mode": mode, "running_mean": rng.standard_normal(D), "running_var": rng.uniform(0.5, 2, D)}
    errors = layer_grad_errors(
        layers.batchnorm_forward, layers.batchnorm_backward, [x, gamma, beta], bn_param
    )
    assert max(errors) < GRAD_TOL


@pytest.mark.parametrize("mode", ["train", "test"])
def test_spatial_batchnorm_gradients(layer_grad_errors, mode):
    rng = np.random.default_rng(3)
    N, C, H, W = 2, 3, 4, 3
    x = 2 * rng.standard_normal((N, C, H, W)) - 1
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    bn_param = {"mode": mode, "running_mean": rng.standard_normal(C), "running_var": rng.uniform(0.5, 2, C)}
    errors = layer_grad_errors(
        layers.spatial_batchnorm_forward, layers.spatial_batchnorm_backward, [x, gamma, beta], bn_param
    )
    assert max(errors) < GRAD_TOL


@pytest.mark.parametrize("stride, pad", [(1, 0), (1, 1), (2, 1), (2, 2), (3, 0)])
def test_conv_naive_gradients(layer_grad_errors, stride, pad):
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((3, 3, 3, 2)), rng.standard_normal(3)
    conv_param = {"stride": stride, "pad": pad}
    errors = layer_grad_errors(
        layers.conv_forward_naive, layers.conv_backward_naive, [x, w, b], conv_param, h=LINEAR_STEP
    )
    assert max(errors) < GRAD_TOL


@pytest.mark.parametrize("pool", [(2, 2, 2), (3, 2, 1), (3, 3, 2)])
def test_max_pool_naive_gradient(layer_grad_errors, pool):
    x = distinct_values(np.random.default_rng(5), (2, 3, 7, 8))
    pool_param = dict(zip(("pool_height", "pool_width", "stride"), pool, strict=True))
    errors = layer_grad_errors(layers.max_pool_forward_naive, layers.max_pool_backward_naive, [x], pool_param)
    assert max(errors) < GRAD_TOL


@pytest.mark.parametrize("loss_fn", [layers.softmax_loss, layers.svm_loss])
def test_loss_gradients(loss_fn):
    rng = np.random.default_rng(6)
    N, C = 8, 5
    x, y = rng.standard_normal((N, C)), rng.integers(0, C, N)
    _, dx = loss_fn(x, y)
    dx_num = eval_numerical_gradient(lambda x: loss_fn(x, y)[0], x, verbose=False)
    error = rel_error(dx_num, dx)
    print(f"{loss_fn.__name__} dx: relative error {error:.2e}")
    assert error < GRAD_TOL


# --------------------------------------------------------------------------------------------------------
# Forward passes against independent references
# --------------------------------------------------------------------------------------------------------


def test_affine_forward_flattens_each_example():
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((3, 2, 2)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    out, _ = layers.affine_forward(x, w, b)
    expected = np.array(
        [[sum(x[n].ravel()[d] * w[d, m] for d in range(4)) + b[m] for m in range(5)] for n in range(3)]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (2, 2), (3, 1)])
def test_conv_naive_matches_scipy_correlation(stride, pad):
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 4)), rng.standard_normal(4)
    out, _ = layers.conv_forward_naive(x, w, b, {"stride": stride, "pad": pad})
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    expected = np.array(
        [
            [
                sum(correlate2d(x_pad[n, c], w[f, c], mode="valid") for c in range(3))[::stride, ::stride]
                + b[f]
                for f in range(4)
            ]
            for n in range(2)
        ]
    )
    H_out, W_out = 1 + (9 + 2 * pad - 3) // stride, 1 + (8 + 2 * pad - 4) // stride
    assert out.shape == expected.shape == (2, 4, H_out, W_out)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_max_pool_naive_matches_reshape_max():
    x = np.random.default_rng(9).standard_normal((2, 3, 6, 8))
    out, _ = layers.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    np.testing.assert_array_equal(out, x.reshape(2, 3, 3, 2, 4, 2).max(axis=(3, 5)))


def test_max_pool_backward_sends_ties_to_the_first_maximum():
    x = np.ones((1, 1, 2, 2))
    _, cache = layers.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    dx = layers.max_pool_backward_naive(np.full((1, 1, 1, 1), 5.0), cache)
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_losses_at_small_scores():
    """Near-zero scores: softmax loss is about log(C), the SVM loss about C - 1."""
    rng = np.random.default_rng(10)
    N, C = 50, 10
    x, y = 1e-3 * rng.standard_normal((N, C)), rng.integers(0, C, N)
    assert abs(layers.softmax_loss(x, y)[0] - np.log(C)) < 1e-2
    assert abs(layers.svm_loss(x, y)[0] - (C - 1)) < 1e-2


def test_softmax_loss_is_stable_for_large_scores():
    x = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    loss, dx = layers.softmax_loss(x, np.array([0, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    assert loss < 1e-6


def test_relu_forward_zeroes_negatives():
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    out, _ = layers.relu_forward(x)
    np.testing.assert_array_equal(out, np.where(x > 0, x, 0))


# --------------------------------------------------------------------------------------------------------
# Batch normalization: statistics, modes, running averages, and the spatial version
# --------------------------------------------------------------------------------------------------------


def test_batchnorm_train_normalizes_then_scales_and_shifts():
    rng = np.random.default_rng(11)
    x = 4 * rng.standard_normal((200, 3)) + 7
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.0, -1.0, 5.0])
    out, _ = layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-10)
    np.testing.assert_allclose(
        out.std(axis=0), gamma * np.sqrt(x.var(axis=0) / (x.var(axis=0) + 1e-5)), rtol=1e-10
    )


def test_batchnorm_running_averages_are_created_and_updated_in_place():
    rng = np.random.default_rng(12)
    D = 4
    gamma, beta = np.ones(D), np.zeros(D)
    bn_param = {"mode": "train"}
    x1 = rng.standard_normal((30, D)) + 3
    layers.batchnorm_forward(x1, gamma, beta, bn_param)
    running_mean, running_var = bn_param["running_mean"], bn_param["running_var"]
    np.testing.assert_allclose(running_mean, 0.1 * x1.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.1 * x1.var(axis=0), rtol=1e-12)  # biased variance
    x2 = rng.standard_normal((30, D))
    layers.batchnorm_forward(x2, gamma, beta, bn_param)
    assert bn_param["running_mean"] is running_mean  # updated in place
    np.testing.assert_allclose(running_mean, 0.9 * 0.1 * x1.mean(axis=0) + 0.1 * x2.mean(axis=0), rtol=1e-12)


def test_batchnorm_test_mode_uses_running_statistics_and_respects_momentum_eps():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((5, 3))
    mean, var = np.array([1.0, -1.0, 0.5]), np.array([4.0, 0.25, 1.0])
    gamma, beta = np.array([2.0, 1.0, 0.5]), np.array([0.1, 0.2, 0.3])
    bn_param = {"mode": "test", "running_mean": mean.copy(), "running_var": var.copy(), "eps": 1e-3}
    out, _ = layers.batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3) * gamma + beta, rtol=1e-12)
    np.testing.assert_array_equal(bn_param["running_mean"], mean)  # test mode leaves them alone
    train_param = {"mode": "train", "momentum": 0.5, "running_mean": mean.copy(), "running_var": var.copy()}
    layers.batchnorm_forward(x, gamma, beta, train_param)
    np.testing.assert_allclose(train_param["running_mean"], 0.5 * mean + 0.5 * x.mean(axis=0), rtol=1e-12)


def test_batchnorm_keeps_float32():
    x = np.random.default_rng(14).standard_normal((8, 3)).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    out, cache = layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    grads = layers.batchnorm_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


def test_spatial_batchnorm_equals_batchnorm_over_pixels():
    rng = np.random.default_rng(15)
    N, C, H, W = 3, 4, 5, 2
    x = rng.standard_normal((N, C, H, W))
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    dout = rng.standard_normal((N, C, H, W))
    spatial_param, flat_param = {"mode": "train"}, {"mode": "train"}
    out, cache = layers.spatial_batchnorm_forward(x, gamma, beta, spatial_param)
    dx, dgamma, dbeta = layers.spatial_batchnorm_backward(dout, cache)

    def to_rows(a):
        return a.transpose(0, 2, 3, 1).reshape(-1, C)

    out_flat, cache_flat = layers.batchnorm_forward(to_rows(x), gamma, beta, flat_param)
    dx_flat, dgamma_flat, dbeta_flat = layers.batchnorm_backward(to_rows(dout), cache_flat)
    np.testing.assert_allclose(to_rows(out), out_flat, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_rows(dx), dx_flat, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgamma, dgamma_flat, rtol=1e-12)
    np.testing.assert_allclose(dbeta, dbeta_flat, rtol=1e-12)
    np.testing.assert_allclose(spatial_param["running_var"], flat_param["running_var"], rtol=1e-12)


def test_batchnorm_needs_a_mode():
    with pytest.raises(ValueError, match="mode"):
        layers.batchnorm_forward(np.zeros((2, 3)), np.ones(3), np.zeros(3), {})


# --------------------------------------------------------------------------------------------------------
# Every forward given mismatched shapes raises a ValueError that names the shapes
# --------------------------------------------------------------------------------------------------------

BN = {"mode": "train"}
CONV = {"stride": 1, "pad": 1}
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}


def arrays(*shapes):
    return [np.zeros(shape) for shape in shapes]


MISMATCHES = [
    ("affine x vs w", layers.affine_forward, (*arrays((2, 3, 4), (10, 5), (5,)),), ["(2, 3, 4)", "(10, 5)"]),
    ("affine b", layers.affine_forward, (*arrays((2, 10), (10, 5), (4,)),), ["(4,)", "(10, 5)"]),
    ("batchnorm gamma", layers.batchnorm_forward, (*arrays((4, 3), (2,), (3,)), BN), ["(2,)", "(4, 3)"]),
    ("batchnorm x 4-d", layers.batchnorm_forward, (*arrays((2, 3, 4, 4), (3,), (3,)), BN), ["(2, 3, 4, 4)"]),
    (
        "spatial batchnorm beta",
        layers.spatial_batchnorm_forward,
        (*arrays((2, 3, 4, 4), (3,), (4,)), BN),
        ["(4,)", "(2, 3, 4, 4)"],
    ),
    (
        "spatial batchnorm x 2-d",
        layers.spatial_batchnorm_forward,
        (*arrays((2, 3), (3,), (3,)), BN),
        ["(2, 3)"],
    ),
    (
        "conv channels",
        layers.conv_forward_naive,
        (*arrays((2, 3, 5, 5), (4, 2, 3, 3), (4,)), CONV),
        ["(2, 3, 5, 5)", "(4, 2, 3, 3)"],
    ),
    (
        "conv bias",
        layers.conv_forward_naive,
        (*arrays((2, 3, 5, 5), (4, 3, 3, 3), (3,)), CONV),
        ["(3,)", "(4, 3, 3, 3)"],
    ),
    ("conv x 3-d", layers.conv_forward_naive, (*arrays((3, 5, 5), (4, 3, 3, 3), (4,)), CONV), ["(3, 5, 5)"]),
    ("conv w 3-d", layers.conv_forward_naive, (*arrays((2, 3, 5, 5), (3, 3, 3), (4,)), CONV), ["(3, 3, 3)"]),
    (
        "conv filter too big",
        layers.conv_forward_naive,
        (*arrays((2, 3, 5, 5), (4, 3, 9, 9), (4,)), CONV),
        ["(2, 3, 5, 5)"],
    ),
    ("pool x 3-d", layers.max_pool_forward_naive, (*arrays((3, 4, 4)), POOL), ["(3, 4, 4)"]),
    ("pool too big", layers.max_pool_forward_naive, (*arrays((2, 3, 1, 4)), POOL), ["(2, 3, 1, 4)"]),
    ("softmax labels", layers.softmax_loss, (np.zeros((4, 3)), np.zeros(5, int)), ["(5,)", "(4, 3)"]),
    ("svm labels", layers.svm_loss, (np.zeros((4, 3)), np.zeros((4, 1), int)), ["(4, 1)", "(4, 3)"]),
    ("softmax label range", layers.softmax_loss, (np.zeros((2, 3)), np.array([0, 3])), ["[0, 3)", "(2, 3)"]),
]


@pytest.mark.parametrize("case, forward, args, shapes", MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_forward_with_mismatched_shapes_names_them(case, forward, args, shapes):
    with pytest.raises(ValueError) as raised:
        forward(*args)
    message = str(raised.value)
    print(f"{case}: {message}")
    for shape in shapes:
        assert re.search(re.escape(shape), message), f"{shape} not named in: {message}"


def test_relu_backward_guided_mode_also_zeroes_negative_upstream_gradients():
    x = np.array([[-1.0, 2.0, 3.0, 0.5]])
    dout = np.array([[5.0, -4.0, 6.0, 0.0]])
    np.testing.assert_array_equal(layers.relu_backward(dout, x), [[0, -4, 6, 0]])
    np.testing.assert_array_equal(layers.relu_backward(dout, x, guided=True), [[0, 0, 6, 0]])
    np.testing.assert_array_equal(dout, [[5.0, -4.0, 6.0, 0.0]])  # untouched
