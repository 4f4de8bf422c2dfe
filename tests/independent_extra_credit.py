"""A second correct solution of the extra-credit layers and attributions (Q5 and Q6), written apart from
the reference and in another style (einsum and an explicit loop over the heads, other but equivalent
formulas), for the tests of the hidden checks (tests/test_hidden_checks.py), as independent_solution.py
is for Q1-Q4. Staff only.

It has the graded names of asgn3.transformer_layers and asgn3.attribution, so that the grader's jobs can
import it in their place. It implements layer normalization, multi-head attention, SmoothGrad,
Integrated Gradients and Grad-CAM itself; the decoder layer is the master's (it calls the master's
layer norm and attention, so the decoder checks sweep the reference there).
"""

import numpy as np

from asgn3.image_utils import resize_bilinear
from asgn3.transformer_layers import decoder_layer_backward, decoder_layer_forward  # noqa: F401

# -- Q5: layer normalization ------------------------------------------------------------------------------


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    centered = x - np.mean(x, axis=-1, keepdims=True)
    std = np.sqrt(np.var(x, axis=-1, keepdims=True) + eps)
    x_hat = centered / std
    return gamma * x_hat + beta, (x_hat, std, gamma)


def layernorm_backward(dout, cache):
    x_hat, std, gamma = cache
    D = x_hat.shape[-1]
    dx_hat = dout * gamma
    # the Jacobian of x_hat: (I - 1/D - x_hat x_hat^T / D) / std, applied to dx_hat
    dx = (
        dx_hat - dx_hat.sum(-1, keepdims=True) / D - x_hat * (dx_hat * x_hat).sum(-1, keepdims=True) / D
    ) / std
    rows = dout.reshape(-1, D), x_hat.reshape(-1, D)
    return dx, np.einsum("rd,rd->d", *rows), np.einsum("rd->d", rows[0])


# -- Q5: multi-head attention, one head at a time -----------------------------------------------------------


def masked_softmax(scores, mask):
    """Softmax over the keys (last axis) of scores (N, S, T), where mask (S, T) is False: weight 0."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def attention_with(softmax, query, key, value, params, num_heads, attn_mask=None):
    """Multi-head attention whose weights are softmax(scores (N, S, T), mask); see the graded one."""
    E = query.shape[-1]
    d = E // num_heads
    q = np.einsum("nse,ef->nsf", query, params["Wq"]) + params["bq"]
    k = np.einsum("nte,ef->ntf", key, params["Wk"]) + params["bk"]
    v = np.einsum("nte,ef->ntf", value, params["Wv"]) + params["bv"]
    attended = np.empty_like(q)
    weights = []
    for h in range(num_heads):
        part = slice(h * d, (h + 1) * d)
        w = softmax(np.einsum("nsd,ntd->nst", q[..., part], k[..., part]) / np.sqrt(d), attn_mask)
        attended[..., part] = np.einsum("nst,ntd->nsd", w, v[..., part])
        weights.append(w)
    out = np.einsum("nse,ef->nsf", attended, params["Wo"]) + params["bo"]
    cache = {"inputs": (query, key, value), "params": params, "qkv": (q, k, v), "attended": attended}
    cache["weights"] = np.stack(weights, axis=1)
    return out, cache


def multihead_attention_forward(query, key, value, params, num_heads, attn_mask=None):
    return attention_with(masked_softmax, query, key, value, params, num_heads, attn_mask)


def multihead_attention_backward(dout, cache):
    (query, key, value), params = cache["inputs"], cache["params"]
    q, k, v = cache["qkv"]
    weights = cache["weights"]
    num_heads, d = weights.shape[1], q.shape[-1] // weights.shape[1]
    grads = {"Wo": np.einsum("nse,nsf->ef", cache["attended"], dout), "bo": np.einsum("nse->e", dout)}
    dattended = np.einsum("nsf,ef->nse", dout, params["Wo"])
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    for h in range(num_heads):
        part, w = slice(h * d, (h + 1) * d), weights[:, h]
        dw = np.einsum("nsd,ntd->nst", dattended[..., part], v[..., part])
        dv[..., part] = np.einsum("nst,nsd->ntd", w, dattended[..., part])
        dscores = w * (dw - np.einsum("nst,nst->ns", dw, w)[..., None]) / np.sqrt(d)
        dq[..., part] = np.einsum("nst,ntd->nsd", dscores, k[..., part])
        dk[..., part] = np.einsum("nst,nsd->ntd", dscores, q[..., part])
    dinputs = []
    for name, x, dprojected in (("q", query, dq), ("k", key, dk), ("v", value, dv)):
        grads[f"W{name}"] = np.einsum("nte,ntf->ef", x, dprojected)
        grads[f"b{name}"] = np.einsum("ntf->f", dprojected)
        dinputs.append(np.einsum("ntf,ef->nte", dprojected, params[f"W{name}"]))
    return (*dinputs, grads)


# -- Q6: attributions -----------------------------------------------------------------------------------


def _score_gradient(X, y, model):
    """d score[i, y[i]] / d X[i] for every image, (N, C, H, W)."""
    scores, cache = model.forward(X, mode="test")
    picks = np.eye(scores.shape[1], dtype=scores.dtype)[np.asarray(y)]
    return model.backward(picks, cache)[0]


def smoothgrad(X, y, model, num_samples=25, noise_level=0.15, seed=None):
    X = np.asarray(X, dtype=model.dtype)
    rng = np.random.default_rng(seed)
    spread = np.ptp(X.reshape(len(X), -1), axis=1).reshape(-1, 1, 1, 1)
    maps = [
        np.abs(
            _score_gradient(
                X + (noise_level * spread * rng.standard_normal(X.shape)).astype(X.dtype), y, model
            )
        )
        for _ in range(num_samples)
    ]
    return np.mean([m.max(axis=1) for m in maps], axis=0)


def integrated_gradients(X, y, model, baseline=None, steps=50):
    X = np.asarray(X, dtype=model.dtype)
    start = np.zeros_like(X) if baseline is None else np.broadcast_to(baseline, X.shape).astype(X.dtype)
    weights = np.ones(steps + 1)
    weights[[0, -1]] = 0.5
    path = sum(
        w * _score_gradient(start + a * (X - start), y, model)
        for a, w in zip(np.linspace(0, 1, steps + 1), weights, strict=True)
    )
    return path * (X - start) / steps


def grad_cam(X, y, model, layer, upsample=True):
    X = np.asarray(X, dtype=model.dtype)
    A, _ = model.forward(X, end=layer, mode="test")
    scores, cache = model.forward(A, start=layer + 1, mode="test")
    dA = model.backward(np.eye(scores.shape[1], dtype=scores.dtype)[np.asarray(y)], cache)[0]
    cam = np.maximum(np.einsum("nk,nkhw->nhw", dA.mean(axis=(2, 3)), A), 0)
    return resize_bilinear(cam, *X.shape[2:]) if upsample else cam
