"""First-order update rules: each is `rule(w, dw, config=None) -> (next_w, config)`.

w and dw are arrays of the same shape; config is a dict of hyperparameters and of the rule's state (moving
averages...), filled with the defaults on the first call and updated on every call. The solver keeps one
config per parameter and passes it back each step. w is not modified: the rule returns a new array of the
same dtype.
"""

import numpy as np


def _start(w, dw, config, **defaults):
    """Check that dw matches w, and return the config with every missing default filled in."""
    if np.shape(dw) != np.shape(w):
        raise ValueError(f"expected dw of the shape of w {np.shape(w)}, got {np.shape(dw)}")
    config = {} if config is None else config
    for key, value in defaults.items():
        config.setdefault(key, value)
    return config


def sgd(w, dw, config=None):
    """
    Vanilla stochastic gradient descent: next_w = w - learning_rate * dw.

    config:
    - learning_rate: scalar (default 1e-2)

    Returns a tuple of:
    - next_w: the updated parameters, of the shape of w
    - config: the config, defaults filled in
    """
    config = _start(w, dw, config, learning_rate=1e-2)
    next_w = w - config["learning_rate"] * dw
    return next_w, config


def sgd_momentum(w, dw, config=None):
    """
    Stochastic gradient descent with momentum: v = momentum * v - learning_rate * dw; next_w = w + v.

    config:
    - learning_rate: scalar (default 1e-2)
    - momentum: scalar in [0, 1) (default 0.9); 0 gives plain sgd
    - velocity: array of the shape of w, the moving average of the steps (created as zeros)

    Returns a tuple of:
    - next_w: the updated parameters, of the shape of w
    - config: the config, with the new velocity
    """
    config = _start(w, dw, config, learning_rate=1e-2, momentum=0.9)
    v = config.get("velocity")
    if v is None:
        v = np.zeros_like(w)
    v = config["momentum"] * v - config["learning_rate"] * dw
    config["velocity"] = v
    return w + v, config


def rmsprop(w, dw, config=None):
    """
    RMSProp: scale each step by a moving average of the squared gradients.

    cache = decay_rate * cache + (1 - decay_rate) * dw**2
    next_w = w - learning_rate * dw / (sqrt(cache) + epsilon)

    config:
    - learning_rate: scalar (default 1e-2)
    - decay_rate: scalar in [0, 1) (default 0.99)
    - epsilon: small scalar that avoids dividing by zero (default 1e-8)
    - cache: array of the shape of w, the moving average of dw**2 (created as zeros)

    Returns a tuple of:
    - next_w: the updated parameters, of the shape of w
    - config: the config, with the new cache
    """
    config = _start(w, dw, config, learning_rate=1e-2, decay_rate=0.99, epsilon=1e-8)
    cache = config.get("cache")
    if cache is None:
        cache = np.zeros_like(w)
    decay = config["decay_rate"]
    cache = decay * cache + (1 - decay) * dw**2
    config["cache"] = cache
    next_w = w - config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"])
    return next_w, config


def adam(w, dw, config=None):
    """
    Adam: moving averages of the gradient and of its square, with bias correction.

    t += 1; m = beta1 m + (1 - beta1) dw; v = beta2 v + (1 - beta2) dw**2;
    next_w = w - learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon)

    config:
    - learning_rate: scalar (default 1e-3)
    - beta1: decay of the first moment (default 0.9)
    - beta2: decay of the second moment (default 0.999)
    - epsilon: small scalar that avoids dividing by zero (default 1e-8)
    - m, v: arrays of the shape of w, the moving averages (created as zeros)
    - t: the number of steps taken so far (default 0)

    Returns a tuple of:
    - next_w: the updated parameters, of the shape of w
    - config: the config, with the new m, v and t
    """
    config = _start(w, dw, config, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, t=0)
    m = config.get("m")
    v = config.get("v")
    m = np.zeros_like(w) if m is None else m
    v = np.zeros_like(w) if v is None else v
    beta1, beta2 = config["beta1"], config["beta2"]
    t = config["t"] + 1
    m = beta1 * m + (1 - beta1) * dw
    v = beta2 * v + (1 - beta2) * dw**2
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    next_w = w - config["learning_rate"] * m_hat / (np.sqrt(v_hat) + config["epsilon"])
    config.update(m=m, v=v, t=t)
    return next_w, config
