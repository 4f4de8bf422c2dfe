"""Tests of asgn3/optim.py: each rule's step, its state in config, dtypes, and that every rule minimizes
a quadratic."""

import numpy as np
import pytest

from asgn3 import optim

RULES = [optim.sgd, optim.sgd_momentum, optim.rmsprop, optim.adam]


def test_sgd_steps_against_the_gradient_and_leaves_w_alone():
    w, dw = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.5, -1.0])
    w_before = w.copy()
    next_w, config = optim.sgd(w, dw, {"learning_rate": 0.1})
    np.testing.assert_allclose(next_w, w_before - 0.1 * dw, rtol=1e-15)
    np.testing.assert_array_equal(w, w_before)
    assert config["learning_rate"] == 0.1


def test_sgd_momentum_accumulates_velocity():
    w, dw = np.zeros(3), np.array([1.0, -1.0, 2.0])
    config = {"learning_rate": 0.1, "momentum": 0.5}
    w1, config = optim.sgd_momentum(w, dw, config)
    w2, config = optim.sgd_momentum(w1, dw, config)
    # v1 = -lr dw, v2 = momentum v1 - lr dw = -1.5 lr dw: the second step is 1.5 times the first.
    np.testing.assert_allclose(w1, -0.1 * dw, rtol=1e-15)
    np.testing.assert_allclose(w2 - w1, 1.5 * (w1 - w), rtol=1e-12)
    np.testing.assert_allclose(config["velocity"], w2 - w1, rtol=1e-15)


def test_rmsprop_step_is_scaled_by_the_gradient_size():
    """On the first step cache = (1 - decay) dw**2, so |step| = lr / sqrt(1 - decay) whatever |dw| is."""
    w, dw = np.zeros(4), np.array([1e-3, -1.0, 10.0, -1e3])
    next_w, config = optim.rmsprop(w, dw, {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 0.0})
    np.testing.assert_allclose(np.abs(next_w), 1e-2 / np.sqrt(0.01), rtol=1e-12)
    np.testing.assert_array_equal(np.sign(next_w), -np.sign(dw))
    np.testing.assert_allclose(config["cache"], 0.01 * dw**2, rtol=1e-12)


def test_adam_bias_correction_makes_the_first_step_learning_rate_sized():
    w, dw = np.ones(4), np.array([1e-4, -0.3, 2.0, -50.0])
    next_w, config = optim.adam(w, dw, {"learning_rate": 1e-3, "epsilon": 0.0})
    np.testing.assert_allclose(np.abs(next_w - w), 1e-3, rtol=1e-9)
    assert config["t"] == 1
    np.testing.assert_allclose(config["m"], 0.1 * dw, rtol=1e-12)
    np.testing.assert_allclose(config["v"], 0.001 * dw**2, rtol=1e-12)
    _, config = optim.adam(next_w, dw, config)
    assert config["t"] == 2


def test_adam_defaults():
    _, config = optim.adam(np.zeros(2), np.ones(2))
    hyperparameters = (config["learning_rate"], config["beta1"], config["beta2"], config["epsilon"])
    assert hyperparameters == (1e-3, 0.9, 0.999, 1e-8)


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_minimizes_a_quadratic(rule):
    """f(w) = 0.5 |A (w - target)|^2 with an ill-conditioned A; 3000 steps get close to the target (rmsprop
    keeps oscillating with steps of about the learning rate, hence the tolerance)."""
    rng = np.random.default_rng(0)
    A = np.diag([1.0, 3.0, 0.5])
    target = rng.standard_normal(3)
    w = np.zeros(3)
    config = {"learning_rate": 1e-2}
    for _ in range(3000):
        dw = A.T @ A @ (w - target)
        w, config = rule(w, dw, config)
    distance = np.abs(w - target).max()
    print(f"{rule.__name__}: distance to the minimum {distance:.2e}")
    assert distance < 2e-2


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_keeps_float32_and_the_shape(rule):
    w = np.ones((2, 3), np.float32)
    next_w, config = rule(w, np.full((2, 3), 0.5, np.float32))
    next_w, _ = rule(next_w, np.full((2, 3), 0.5, np.float32), config)
    assert next_w.dtype == np.float32 and next_w.shape == (2, 3)


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_rejects_a_gradient_of_another_shape(rule):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        rule(np.zeros((2, 3)), np.zeros((3, 2)))
