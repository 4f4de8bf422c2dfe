"""Tests of asgn3/transformer_layers.py: numeric gradient checks (float64) of every backward pass, forward
passes against straightforward references written here (layer normalization from its formula, attention
head by head in a loop), the attention mask (zero weight, no leak from the future), float32 staying
float32, and the ValueErrors for odd E and mismatched shapes."""

import numpy as np
import pytest

from asgn3 import transformer_layers as tl
from asgn3.gradient_check import eval_numerical_gradient_array
from asgn3.notebook_checks import rel_error

GRAD_TOL = 1e-7
N, S, T, E, HEADS, F = 2, 4, 5, 8, 2, 12


def attention_params(rng, E=E):
    """Random attention params in float64 at a scale where the softmax is neither flat nor one-hot."""
    return {
        name: rng.standard_normal((E, E)) / np.sqrt(E)
        if name.startswith("W")
        else 0.3 * rng.standard_normal(E)
        for name in tl.ATTENTION_KEYS
    }


def decoder_params(rng, E=E, F=F):
    """Random decoder-layer params in float64, nested like decoder_layer_forward wants them."""
    params = {"self_attn": attention_params(rng, E), "cross_attn": attention_params(rng, E)}
    params.update(W1=rng.standard_normal((E, F)) / np.sqrt(E), b1=0.3 * rng.standard_normal(F))
    params.update(W2=rng.standard_normal((F, E)) / np.sqrt(F), b2=0.3 * rng.standard_normal(E))
    for name in tl.LAYERNORM_NAMES:
        params[f"{name}_gamma"] = 1 + 0.3 * rng.standard_normal(E)
        params[f"{name}_beta"] = 0.3 * rng.standard_normal(E)
    return params


def as_dtype(params, dtype):
    """A copy of (nested) params cast to dtype."""
    return {k: as_dtype(v, dtype) if isinstance(v, dict) else v.astype(dtype) for k, v in params.items()}


def reference_layernorm(x, gamma, beta, eps=1e-5):
    """Layer normalization row by row from its definition (biased variance)."""
    rows = x.reshape(-1, x.shape[-1])
    out = [(row - row.mean()) / np.sqrt(row.var() + eps) * gamma + beta for row in rows]
    return np.array(out).reshape(x.shape)


def reference_attention(query, key, value, p, num_heads, mask=None):
    """Multi-head attention with an explicit loop over heads and batch rows (the SPEC's formula)."""
    d = query.shape[2] // num_heads
    q, k, v = query @ p["Wq"] + p["bq"], key @ p["Wk"] + p["bk"], value @ p["Wv"] + p["bv"]
    heads = []
    for h in range(num_heads):
        cols = slice(h * d, (h + 1) * d)
        per_row = []
        for n in range(query.shape[0]):
            scores = q[n, :, cols] @ k[n, :, cols].T / np.sqrt(d)
            if mask is not None:
                scores = np.where(mask, scores, -np.inf)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            per_row.append(weights @ v[n, :, cols])
        heads.append(np.array(per_row))
    return np.concatenate(heads, axis=2) @ p["Wo"] + p["bo"]


def reference_decoder_layer(x, memory, p, num_heads, mask=None):
    """The post-norm decoder layer from its three lines, on the references above."""
    x = reference_layernorm(
        x + reference_attention(x, x, x, p["self_attn"], num_heads, mask), p["ln1_gamma"], p["ln1_beta"]
    )
    x = reference_layernorm(
        x + reference_attention(x, memory, memory, p["cross_attn"], num_heads), p["ln2_gamma"], p["ln2_beta"]
    )
    ffn = np.maximum(x @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
    return reference_layernorm(x + ffn, p["ln3_gamma"], p["ln3_beta"])


def numeric_gradient(forward, x, dout, h=1e-3):
    """
    The numeric gradient of sum(forward() * dout) with respect to x, which forward reads in place.

    Richardson extrapolation of two centered differences, (4 D(h/2) - D(h)) / 3, has an error of order h^4
    instead of h^2: the step can be large, which keeps the roundoff (eps |f| / h) low enough for a relative
    error below 1e-7 on the small entries of a deep layer's gradient, where a plain difference at h=1e-5
    reaches 2e-7. (A ReLU that switches within h of the point would spoil it; these seeds have none.)
    """
    coarse = eval_numerical_gradient_array(lambda _: forward(), x, dout, h=h)
    fine = eval_numerical_gradient_array(lambda _: forward(), x, dout, h=h / 2)
    return (4 * fine - coarse) / 3


def assert_gradient(name, numeric, analytic, zero=False):
    """Relative error below GRAD_TOL, printed; zero=True: a gradient that is zero in exact arithmetic (the
    key bias: it adds one constant to a row of scores, which the softmax ignores) is checked absolutely."""
    assert analytic.shape == numeric.shape, f"{name}: shape {analytic.shape}, expected {numeric.shape}"
    if zero:
        print(f"{name}: largest entry {np.abs(analytic).max():.1e} (numeric {np.abs(numeric).max():.1e})")
        assert np.abs(analytic).max() < 1e-12 and np.abs(numeric).max() < 1e-8
        return
    error = rel_error(numeric, analytic)
    print(f"{name}: relative error {error:.2e}")
    assert error < GRAD_TOL, f"{name}: relative error {error:.2e} is not below {GRAD_TOL}"


# --------------------------------------------------------------------------------------------------------
# Layer normalization and the positional encoding
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, E), (N, S, E), (2, 3, 2, E)])
def test_layernorm_forward_matches_its_definition_for_any_leading_shape(shape):
    rng = np.random.default_rng(0)
    x = 3 * rng.standard_normal(shape) + 1
    gamma, beta = rng.standard_normal(E), rng.standard_normal(E)
    out, _ = tl.layernorm_forward(x, gamma, beta, {})
    assert rel_error(out, reference_layernorm(x, gamma, beta)) < 1e-12
    out, _ = tl.layernorm_forward(x, gamma, beta, {"eps": 0.5})
    assert rel_error(out, reference_layernorm(x, gamma, beta, eps=0.5)) < 1e-12


def test_layernorm_backward_matches_numeric_gradients():
    rng = np.random.default_rng(1)
    x = 2 * rng.standard_normal((N, S, E)) + 0.5
    gamma, beta = 1 + rng.standard_normal(E), rng.standard_normal(E)
    out, cache = tl.layernorm_forward(x, gamma, beta, {})
    dout = rng.standard_normal(out.shape)
    dx, dgamma, dbeta = tl.layernorm_backward(dout, cache)

    def forward():
        return tl.layernorm_forward(x, gamma, beta, {})[0]

    assert_gradient("layernorm dx", numeric_gradient(forward, x, dout), dx)
    assert_gradient("layernorm dgamma", numeric_gradient(forward, gamma, dout), dgamma)
    assert_gradient("layernorm dbeta", numeric_gradient(forward, beta, dout), dbeta)


def test_layernorm_rejects_mismatched_gamma():
    with pytest.raises(ValueError, match=r"gamma and beta of shape \(D,\) = \(8,\).*gamma \(6,\)"):
        tl.layernorm_forward(np.zeros((2, 8)), np.ones(6), np.zeros(8), {})


def test_positional_encoding_follows_the_formula():
    PE = tl.positional_encoding(50, 16)
    assert PE.shape == (50, 16)
    for t, i in [(0, 0), (1, 0), (7, 3), (49, 7)]:
        angle = t / 10000 ** (2 * i / 16)
        assert PE[t, 2 * i] == pytest.approx(np.sin(angle), abs=1e-15)
        assert PE[t, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-15)
    assert tl.positional_encoding(0, 4).shape == (0, 4)


@pytest.mark.parametrize("bad_E", [7, 0, -2, 4.0])
def test_positional_encoding_needs_a_positive_even_E(bad_E):
    with pytest.raises(ValueError, match=f"E must be a positive even integer; got E={bad_E}"):
        tl.positional_encoding(5, bad_E)


def test_causal_mask_lets_each_position_see_itself_and_the_past():
    mask = tl.causal_mask(4)
    assert mask.dtype == bool
    assert np.array_equal(mask, [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])


# --------------------------------------------------------------------------------------------------------
# Multi-head attention
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_attention_forward_equals_a_loop_over_heads(num_heads):
    rng = np.random.default_rng(2)
    query, memory = rng.standard_normal((N, S, E)), rng.standard_normal((N, T, E))
    p = attention_params(rng)
    out, cache = tl.multihead_attention_forward(query, memory, memory, p, num_heads)
    assert rel_error(out, reference_attention(query, memory, memory, p, num_heads)) < 1e-12
    assert cache["weights"].shape == (N, num_heads, S, T)
    assert np.allclose(cache["weights"].sum(axis=-1), 1)

    mask = tl.causal_mask(S)
    out, _ = tl.multihead_attention_forward(query, query, query, p, num_heads, mask)
    assert rel_error(out, reference_attention(query, query, query, p, num_heads, mask)) < 1e-12


def test_masked_positions_get_exactly_zero_weight_and_the_future_cannot_leak():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, S, E))
    p = attention_params(rng)
    mask = tl.causal_mask(S)
    out, cache = tl.multihead_attention_forward(x, x, x, p, HEADS, mask)
    assert np.all(cache["weights"][:, :, ~mask] == 0.0)
    assert np.all(cache["weights"][:, :, mask] > 0.0)

    changed = x.copy()
    changed[:, -1] += 10 * rng.standard_normal((N, E))  # change only the last position
    changed_out, _ = tl.multihead_attention_forward(changed, changed, changed, p, HEADS, mask)
    assert np.array_equal(changed_out[:, :-1], out[:, :-1])
    assert not np.allclose(changed_out[:, -1], out[:, -1])


@pytest.mark.parametrize("self_attention", [False, True])
def test_attention_backward_matches_numeric_gradients(self_attention):
    rng = np.random.default_rng(4)
    query = rng.standard_normal((N, S, E))
    key = query if self_attention else rng.standard_normal((N, T, E))
    value = query if self_attention else rng.standard_normal((N, T, E))
    mask = tl.causal_mask(S) if self_attention else None
    p = attention_params(rng)

    def forward():
        return tl.multihead_attention_forward(query, key, value, p, HEADS, mask)[0]

    out, cache = tl.multihead_attention_forward(query, key, value, p, HEADS, mask)
    dout = rng.standard_normal(out.shape)
    dquery, dkey, dvalue, dparams = tl.multihead_attention_backward(dout, cache)
    assert sorted(dparams) == sorted(tl.ATTENTION_KEYS)
    if self_attention:  # one array is query, key and value: its gradient is the sum of the three
        assert_gradient("self-attention dx", numeric_gradient(forward, query, dout), dquery + dkey + dvalue)
    else:
        for name, array, grad in (("dquery", query, dquery), ("dkey", key, dkey), ("dvalue", value, dvalue)):
            assert_gradient(f"attention {name}", numeric_gradient(forward, array, dout), grad)
    for name in tl.ATTENTION_KEYS:
        numeric = numeric_gradient(forward, p[name], dout)
        assert_gradient(f"attention d{name}", numeric, dparams[name], zero=name == "bk")


def test_attention_keeps_float32_and_agrees_with_float64():
    rng = np.random.default_rng(5)
    query, memory = rng.standard_normal((N, S, E)), rng.standard_normal((N, T, E))
    p = attention_params(rng)
    out64, cache64 = tl.multihead_attention_forward(query, memory, memory, p, HEADS)
    p32 = as_dtype(p, np.float32)
    out32, cache32 = tl.multihead_attention_forward(
        query.astype(np.float32), memory.astype(np.float32), memory.astype(np.float32), p32, HEADS
    )
    dout = rng.standard_normal(out64.shape)
    grads32 = tl.multihead_attention_backward(dout.astype(np.float32), cache32)
    grads64 = tl.multihead_attention_backward(dout, cache64)
    assert out32.dtype == np.float32 and cache32["weights"].dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads32[:3]) and all(
        g.dtype == np.float32 for g in grads32[3].values()
    )
    assert np.abs(out32 - out64).max() < 1e-4
    assert np.abs(grads32[0] - grads64[0]).max() < 1e-4


def test_attention_rejects_mismatched_shapes_with_the_shapes_in_the_message():
    rng = np.random.default_rng(6)
    p = attention_params(rng)
    x = rng.standard_normal((N, S, E))
    with pytest.raises(ValueError, match=r"query \(2, 4, 8\), key \(2, 5, 6\)"):
        tl.multihead_attention_forward(x, np.zeros((N, T, 6)), np.zeros((N, T, 6)), p, HEADS)
    with pytest.raises(ValueError, match=r"key \(2, 5, 8\), value \(2, 3, 8\)"):
        tl.multihead_attention_forward(x, np.zeros((N, T, E)), np.zeros((N, 3, E)), p, HEADS)
    with pytest.raises(ValueError, match=r"with E=8.*'Wq': \(8, 6\)"):
        tl.multihead_attention_forward(x, x, x, {**p, "Wq": np.zeros((E, 6))}, HEADS)
    with pytest.raises(ValueError, match="num_heads must be a positive integer dividing E=8, got 3"):
        tl.multihead_attention_forward(x, x, x, p, 3)
    with pytest.raises(ValueError, match=r"attn_mask a bool array of shape \(S, T\) = \(4, 4\).*\(3, 3\)"):
        tl.multihead_attention_forward(x, x, x, p, HEADS, tl.causal_mask(3))
    with pytest.raises(ValueError, match="a row with no True entry"):
        tl.multihead_attention_forward(x, x, x, p, HEADS, np.zeros((S, S), dtype=bool))
    with pytest.raises(ValueError, match="lack Wo"):
        tl.multihead_attention_forward(x, x, x, {k: v for k, v in p.items() if k != "Wo"}, HEADS)


# --------------------------------------------------------------------------------------------------------
# The decoder layer
# --------------------------------------------------------------------------------------------------------


def test_decoder_layer_forward_equals_the_reference_and_exposes_the_cross_attention():
    rng = np.random.default_rng(7)
    x, memory = rng.standard_normal((N, S, E)), rng.standard_normal((N, T, E))
    p = decoder_params(rng)
    mask = tl.causal_mask(S)
    out, cache = tl.decoder_layer_forward(x, memory, p, HEADS, mask)
    assert rel_error(out, reference_decoder_layer(x, memory, p, HEADS, mask)) < 1e-11
    assert cache["cross_attn"]["weights"].shape == (N, HEADS, S, T)


def test_decoder_layer_does_not_let_a_later_word_change_earlier_outputs():
    rng = np.random.default_rng(8)
    x, memory = rng.standard_normal((N, S, E)), rng.standard_normal((N, T, E))
    p = decoder_params(rng)
    mask = tl.causal_mask(S)
    out, _ = tl.decoder_layer_forward(x, memory, p, HEADS, mask)
    changed = x.copy()
    changed[:, 2:] = rng.standard_normal((N, S - 2, E))
    changed_out, _ = tl.decoder_layer_forward(changed, memory, p, HEADS, mask)
    assert np.array_equal(changed_out[:, :2], out[:, :2])
    assert not np.allclose(changed_out[:, 2:], out[:, 2:])


def test_decoder_layer_backward_matches_numeric_gradients():
    rng = np.random.default_rng(9)
    x, memory = rng.standard_normal((N, S, E)), rng.standard_normal((N, T, E))
    p = decoder_params(rng)
    mask = tl.causal_mask(S)

    def forward():
        return tl.decoder_layer_forward(x, memory, p, HEADS, mask)[0]

    out, cache = tl.decoder_layer_forward(x, memory, p, HEADS, mask)
    dout = rng.standard_normal(out.shape)
    dx, dmemory, dparams = tl.decoder_layer_backward(dout, cache)
    assert_gradient("decoder dx", numeric_gradient(forward, x, dout), dx)
    assert_gradient("decoder dmemory", numeric_gradient(forward, memory, dout), dmemory)
    for name, value in p.items():
        if isinstance(value, dict):
            for key in tl.ATTENTION_KEYS:
                numeric = numeric_gradient(forward, value[key], dout)
                assert_gradient(f"decoder d{name}.{key}", numeric, dparams[name][key], zero=key == "bk")
        else:
            assert_gradient(f"decoder d{name}", numeric_gradient(forward, value, dout), dparams[name])


def test_decoder_layer_keeps_float32():
    rng = np.random.default_rng(10)
    p = as_dtype(decoder_params(rng), np.float32)
    x = rng.standard_normal((N, S, E)).astype(np.float32)
    memory = rng.standard_normal((N, T, E)).astype(np.float32)
    out, cache = tl.decoder_layer_forward(x, memory, p, HEADS, tl.causal_mask(S))
    dx, dmemory, dparams = tl.decoder_layer_backward(np.ones_like(out), cache)
    assert out.dtype == dx.dtype == dmemory.dtype == np.float32
    assert (
        dparams["W1"].dtype == dparams["ln2_gamma"].dtype == dparams["cross_attn"]["Wv"].dtype == np.float32
    )


def test_decoder_layer_rejects_mismatched_shapes():
    rng = np.random.default_rng(11)
    p = decoder_params(rng)
    x = rng.standard_normal((N, S, E))
    with pytest.raises(ValueError, match=r"x \(2, 4, 8\), memory \(2, 5, 6\)"):
        tl.decoder_layer_forward(x, np.zeros((N, T, 6)), p, HEADS)
    with pytest.raises(ValueError, match=r"x \(2, 4, 8\), memory \(3, 5, 8\)"):
        tl.decoder_layer_forward(x, np.zeros((3, T, E)), p, HEADS)
    with pytest.raises(ValueError, match=r"W1 \(E, F\).*W1 \(6, 12\)"):
        tl.decoder_layer_forward(x, np.zeros((N, T, E)), {**p, "W1": np.zeros((6, F))}, HEADS)
