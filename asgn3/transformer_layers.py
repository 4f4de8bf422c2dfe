"""Layers of a Transformer decoder: layer normalization, positional encoding, multi-head attention and
one post-norm decoder layer, each with its backward pass written out by hand.

Every layer is a pair: `*_forward` returns `(out, cache)` and `*_backward(dout, cache)` returns the
gradients in the order of the forward's array inputs. Shapes: N batch, S query positions (words), T key
positions, P memory positions (image grid cells), E embedding dim, h heads of d = E // h dims each,
F feed-forward dim.

Attention runs all heads at once: q, k, v of shape (N, S, E) are viewed as (N, h, S, d) and multiplied
with batched matrix products (`@` on 4-D arrays); nothing loops over the batch or the heads. A float32
input stays float32 throughout (every scalar constant is cast to the input's dtype).
"""

import numpy as np

ATTENTION_KEYS = ("Wq", "Wk", "Wv", "Wo", "bq", "bk", "bv", "bo")
LAYERNORM_NAMES = ("ln1", "ln2", "ln3")


def positional_encoding(T, E):
    """
    The sinusoidal positional encoding of Vaswani et al. (2017).

    PE[t, 2i] = sin(t / 10000^(2i/E)) and PE[t, 2i+1] = cos(t / 10000^(2i/E)): each pair of columns is a
    sine and a cosine of one frequency, the frequencies falling geometrically from 1 to 1/10000.

    Inputs:
    - T: number of positions (non-negative int)
    - E: encoding dimension, an even positive int

    Returns:
    - PE: float64 array of shape (T, E)
    """
    if not isinstance(E, int | np.integer) or E <= 0 or E % 2:
        raise ValueError(
            f"the positional encoding pairs a sine with a cosine, so E must be a positive even integer; "
            f"got E={E!r}: use an even wordvec_dim"
        )
    if not isinstance(T, int | np.integer) or T < 0:
        raise ValueError(f"T must be a non-negative integer (the number of positions), got {T!r}")
    positions = np.arange(T)[:, None]
    frequencies = 10000.0 ** (-np.arange(0, E, 2) / E)
    PE = np.empty((T, E))
    PE[:, 0::2] = np.sin(positions * frequencies)
    PE[:, 1::2] = np.cos(positions * frequencies)
    return PE


def causal_mask(S):
    """The (S, S) bool self-attention mask in which position s may attend to positions 0..s (True)."""
    return np.tril(np.ones((S, S), dtype=bool))


def _split_heads(x, num_heads):
    """(N, S, E) -> (N, h, S, d): head j takes the columns j*d:(j+1)*d."""
    N, S, E = x.shape
    return x.reshape(N, S, num_heads, E // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(x):
    """(N, h, S, d) -> (N, S, h*d): the inverse of _split_heads."""
    N, num_heads, S, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(N, S, num_heads * d)


def _project(x, W, b):
    """x (..., E_in) @ W (E_in, E_out) + b, as one matrix product over all leading positions."""
    out = x.reshape(-1, x.shape[-1]) @ W
    out += b  # in place: a second large temporary costs as much time as half the product
    return out.reshape(*x.shape[:-1], W.shape[1])


def _project_backward(dout, x, W):
    """Gradients (dx, dW, db) of _project(x, W, b) given dout (..., E_out)."""
    dout_2d = dout.reshape(-1, dout.shape[-1])
    x_2d = x.reshape(-1, x.shape[-1])
    dx = (dout_2d @ W.T).reshape(x.shape)
    return dx, x_2d.T @ dout_2d, dout_2d.sum(axis=0)


def layernorm_forward(x, gamma, beta, ln_param):
    """
    Layer normalization: normalize each vector along the last axis to zero mean and unit variance, then
    scale by gamma and shift by beta. Unlike batch normalization it does not mix the rows of a batch,
    so training and test time are the same.

    Inputs:
    - x: data of shape (..., D), any leading shape
    - gamma: scale of shape (D,)
    - beta: shift of shape (D,)
    - ln_param: dict with the optional key 'eps' (added to the variance, default 1e-5)

    Returns a tuple of:
    - out: of shape (..., D)
    - cache: what the backward pass needs
    """
    if gamma.shape != (x.shape[-1],) or beta.shape != (x.shape[-1],):
        raise ValueError(
            f"expected gamma and beta of shape (D,) = ({x.shape[-1]},) to match x {x.shape}, "
            f"got gamma {gamma.shape}, beta {beta.shape}"
        )
    eps = ln_param.get("eps", 1e-5)
    out, cache = None, None
    ###########################################################################
    # TODO: Implement the forward pass of layer normalization. For each       #
    # vector x[..., :] compute its mean and its biased variance (divide by D) #
    # over the last axis, normalize: x_hat = (x - mean) / sqrt(var + eps),    #
    # and return out = gamma * x_hat + beta. Keep the mean and variance with  #
    # keepdims=True so that they broadcast against x. Cast eps to x.dtype so  #
    # that float32 stays float32. Store in cache what the backward needs.     #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x_hat = x - x.mean(axis=-1, keepdims=True)
    inv_std = 1 / np.sqrt(np.square(x_hat).mean(axis=-1, keepdims=True) + x.dtype.type(eps))
    x_hat *= inv_std  # in place: these arrays are large, and every new one costs time
    out = x_hat * gamma
    out += beta
    cache = (x_hat, inv_std, gamma)
    # *****END OF YOUR CODE*****
    return out, cache


def layernorm_backward(dout, cache):
    """
    Backward pass for layer normalization.

    Inputs:
    - dout: upstream gradient of shape (..., D)
    - cache: from layernorm_forward

    Returns a tuple of:
    - dx: gradient of the input, of shape (..., D)
    - dgamma: gradient of the scale, of shape (D,)
    - dbeta: gradient of the shift, of shape (D,)
    """
    dx, dgamma, dbeta = None, None, None
    ###########################################################################
    # TODO: Implement the backward pass of layer normalization. dgamma and    #
    # dbeta sum over every axis but the last. For dx, work out the gradient   #
    # through x_hat = (x - mean) / std on paper first: the mean and the std   #
    # depend on every entry of the row. The result fits on one line, in     #
    # terms of dx_hat = dout * gamma, x_hat, 1 / std and two means over the   #
    # last axis.                                                              #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x_hat, inv_std, gamma = cache
    D = x_hat.shape[-1]
    dgamma = (dout * x_hat).reshape(-1, D).sum(axis=0)
    dbeta = dout.reshape(-1, D).sum(axis=0)
    dx_hat = dout * gamma
    dx = dx_hat - dx_hat.mean(axis=-1, keepdims=True)
    dx -= x_hat * (dx_hat * x_hat).mean(axis=-1, keepdims=True)
    dx *= inv_std
    # *****END OF YOUR CODE*****
    return dx, dgamma, dbeta


def _check_attention_inputs(query, key, value, params, num_heads, attn_mask):
    """Raise a ValueError naming the shapes when the inputs of multihead_attention_forward do not fit."""
    if query.ndim != 3 or key.ndim != 3 or key.shape != value.shape or key.shape[0] != query.shape[0]:
        raise ValueError(
            f"expected query (N, S, E) and key, value (N, T, E) with the same N and E, got query "
            f"{query.shape}, key {key.shape}, value {value.shape}"
        )
    E = query.shape[2]
    missing = [name for name in ATTENTION_KEYS if name not in params]
    if missing:
        raise ValueError(f"attention params lack {', '.join(missing)}; they need all of {ATTENTION_KEYS}")
    shapes = {name: params[name].shape for name in ATTENTION_KEYS}
    wanted = {name: (E, E) if name.startswith("W") else (E,) for name in ATTENTION_KEYS}
    if key.shape[2] != E or shapes != wanted:
        raise ValueError(
            f"expected Wq, Wk, Wv, Wo of shape (E, E) and bq, bk, bv, bo of shape (E,) with E={E} "
            f"(the last axis of query {query.shape}, key {key.shape}), got {shapes}"
        )
    if not isinstance(num_heads, int | np.integer) or num_heads < 1 or E % num_heads:
        raise ValueError(f"num_heads must be a positive integer dividing E={E}, got {num_heads!r}")
    if attn_mask is not None:
        S, T = query.shape[1], key.shape[1]
        if attn_mask.shape != (S, T) or attn_mask.dtype != bool:
            raise ValueError(
                f"expected attn_mask a bool array of shape (S, T) = {(S, T)} (True = may attend), got "
                f"{attn_mask.dtype} {attn_mask.shape}"
            )
        if not attn_mask.any(axis=1).all():
            raise ValueError("attn_mask has a row with no True entry: every query must attend somewhere")


def multihead_attention_forward(query, key, value, params, num_heads, attn_mask=None):
    """
    Multi-head scaled dot-product attention.

    Each of the h heads projects the inputs to d = E / h dimensions, compares every query with every
    key, and returns a weighted average of the values: weights_j = softmax(q_j k_j^T / sqrt(d)) over the
    T keys. The h results are concatenated and projected back to E dimensions by Wo, bo.

    Inputs:
    - query: array of shape (N, S, E)
    - key, value: arrays of shape (N, T, E) (for self-attention, the query array itself)
    - params: dict with Wq, Wk, Wv, Wo of shape (E, E) and bq, bk, bv, bo of shape (E,)
    - num_heads: the number of heads h; it must divide E
    - attn_mask: None, or a bool array of shape (S, T); False at [s, t] means query s may not attend to
      key t (its score becomes minus infinity before the softmax)

    Returns a tuple of:
    - out: array of shape (N, S, E)
    - cache: what the backward pass needs; cache["weights"] (N, h, S, T) are the attention weights
    """
    _check_attention_inputs(query, key, value, params, num_heads, attn_mask)
    p = params
    out, cache = None, None
    ###########################################################################
    # TODO: Implement multi-head attention, all heads at once, without loops. #
    # (1) Project: q = query Wq + bq, k = key Wk + bk, v = value Wv + bv      #
    #     (_project does one matrix product over all positions), then split  #
    #     them into heads with _split_heads: (N, S, E) -> (N, h, S, d).      #
    # (2) Scores (N, h, S, T) = q k^T / sqrt(d), a batched product (`@` with  #
    #     k.swapaxes(-1, -2)); cast 1 / sqrt(d) to the input's dtype.         #
    # (3) Where attn_mask is False, set the score to -inf (np.where           #
    #     broadcasts the (S, T) mask), then a numerically stable softmax over #
    #     the last axis (subtract each row's maximum) gives the weights.      #
    # (4) Weighted values weights @ v (N, h, S, d), merged back to (N, S, E)  #
    #     with _merge_heads, and out = merged Wo + bo.                        #
    # Keep the weights in cache["weights"] (the model reads them) and put in  #
    # the cache (a dict) everything else the backward pass needs.             #
    ###########################################################################
    # *****START OF YOUR CODE*****
    q = _split_heads(_project(query, p["Wq"], p["bq"]), num_heads)
    k = _split_heads(_project(key, p["Wk"], p["bk"]), num_heads)
    v = _split_heads(_project(value, p["Wv"], p["bv"]), num_heads)
    scale = query.dtype.type(1 / np.sqrt(q.shape[-1]))
    scores = q @ k.swapaxes(-1, -2)
    scores *= scale
    if attn_mask is not None:
        scores[..., ~attn_mask] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores, out=scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    merged = _merge_heads(weights @ v)
    out = _project(merged, p["Wo"], p["bo"])
    cache = {
        "query": query,
        "key": key,
        "value": value,
        "params": p,
        "q": q,
        "k": k,
        "v": v,
        "scale": scale,
        "weights": weights,
        "merged": merged,
    }
    # *****END OF YOUR CODE*****
    return out, cache


def multihead_attention_backward(dout, cache):
    """
    Backward pass for multi-head attention.

    Inputs:
    - dout: upstream gradient of shape (N, S, E)
    - cache: from multihead_attention_forward

    Returns a tuple of:
    - dquery: gradient of shape (N, S, E)
    - dkey, dvalue: gradients of shape (N, T, E); for self-attention (one array passed as query, key
      and value) its gradient is dquery + dkey + dvalue
    - dparams: dict of gradients with the keys of params (Wq, ..., bo)
    """
    dquery, dkey, dvalue, dparams = None, None, None, None
    ###########################################################################
    # TODO: Implement the backward pass of multi-head attention, in the       #
    # reverse order of the forward, batched over N and the heads:             #
    # (1) through out = merged Wo + bo (_project_backward), then split the    #
    #     gradient of merged into heads;                                      #
    # (2) through weights @ v: the gradients of the weights and of v;         #
    # (3) through the softmax: for each row, dscores = weights * (dweights -  #
    #     sum over T of dweights * weights); masked entries have weight 0 and #
    #     so get zero gradient by themselves;                                 #
    # (4) through the scaling and q k^T: dq and dk (N, h, S or T, d);         #
    # (5) merge the heads and go back through the three input projections.    #
    ###########################################################################
    # *****START OF YOUR CODE*****
    c = cache
    p = c["params"]
    dparams = {}
    dmerged, dparams["Wo"], dparams["bo"] = _project_backward(dout, c["merged"], p["Wo"])
    num_heads = c["q"].shape[1]
    dattended = _split_heads(dmerged, num_heads)
    weights = c["weights"]
    dweights = dattended @ c["v"].swapaxes(-1, -2)
    dv = weights.swapaxes(-1, -2) @ dattended
    dscores = weights * (dweights - (dweights * weights).sum(axis=-1, keepdims=True))
    dscores *= c["scale"]
    dq = dscores @ c["k"]
    dk = dscores.swapaxes(-1, -2) @ c["q"]
    dquery, dparams["Wq"], dparams["bq"] = _project_backward(_merge_heads(dq), c["query"], p["Wq"])
    dkey, dparams["Wk"], dparams["bk"] = _project_backward(_merge_heads(dk), c["key"], p["Wk"])
    dvalue, dparams["Wv"], dparams["bv"] = _project_backward(_merge_heads(dv), c["value"], p["Wv"])
    # *****END OF YOUR CODE*****
    return dquery, dkey, dvalue, dparams


def _check_decoder_inputs(x, memory, params):
    """Raise a ValueError naming the shapes when the inputs of decoder_layer_forward do not fit."""
    if x.ndim != 3 or memory.ndim != 3 or memory.shape[0] != x.shape[0] or memory.shape[2] != x.shape[2]:
        raise ValueError(
            f"expected x (N, S, E) and memory (N, P, E) with the same N and E, got x {x.shape}, "
            f"memory {memory.shape}"
        )
    E = x.shape[2]
    W1, W2 = params["W1"], params["W2"]
    F = W1.shape[1]
    if W1.shape != (E, F) or params["b1"].shape != (F,) or W2.shape != (F, E) or params["b2"].shape != (E,):
        raise ValueError(
            f"expected W1 (E, F), b1 (F,), W2 (F, E), b2 (E,) with E={E} (x {x.shape}), got W1 {W1.shape}, "
            f"b1 {params['b1'].shape}, W2 {W2.shape}, b2 {params['b2'].shape}"
        )


def decoder_layer_forward(x, memory, params, num_heads, self_attn_mask=None):
    """
    One post-norm Transformer decoder layer (Vaswani et al. 2017; torch's nn.TransformerDecoderLayer with
    norm_first=False and no dropout):

        x = LN1(x + SelfAttn(x, x, x, self_attn_mask))    the words look at earlier words
        x = LN2(x + CrossAttn(x, memory, memory))          the words look at the image
        out = LN3(x + FFN(x)),  FFN(x) = relu(x W1 + b1) W2 + b2

    Inputs:
    - x: word vectors of shape (N, S, E)
    - memory: image vectors of shape (N, P, E)
    - params: dict with 'self_attn' and 'cross_attn' (attention params, see
      multihead_attention_forward), 'W1' (E, F), 'b1' (F,), 'W2' (F, E), 'b2' (E,), and
      'ln1_gamma', 'ln1_beta', 'ln2_gamma', 'ln2_beta', 'ln3_gamma', 'ln3_beta' (E,)
    - num_heads: heads of both attentions
    - self_attn_mask: None or a bool (S, S) mask of the self-attention (causal_mask(S) for a decoder)

    Returns a tuple of:
    - out: array of shape (N, S, E)
    - cache: what the backward pass needs; cache["cross_attn"]["weights"] (N, h, S, P) are the
      cross-attention weights
    """
    _check_decoder_inputs(x, memory, params)
    p = params
    out, cache = None, None
    ###########################################################################
    # TODO: Implement the decoder layer's forward pass from the three lines   #
    # of the docstring, with multihead_attention_forward, layernorm_forward   #
    # (use {} as ln_param) and _project for the two affine maps of the        #
    # feed-forward network. Keep every sub-layer's cache in a dict; the       #
    # cross-attention's under cache["cross_attn"] (the model reads its        #
    # weights).                                                               #
    ###########################################################################
    # *****START OF YOUR CODE*****
    cache = {}
    attended, cache["self_attn"] = multihead_attention_forward(
        x, x, x, p["self_attn"], num_heads, self_attn_mask
    )
    attended += x  # the residual connection, added in place
    x, cache["ln1"] = layernorm_forward(attended, p["ln1_gamma"], p["ln1_beta"], {})
    attended, cache["cross_attn"] = multihead_attention_forward(x, memory, memory, p["cross_attn"], num_heads)
    attended += x
    x, cache["ln2"] = layernorm_forward(attended, p["ln2_gamma"], p["ln2_beta"], {})
    hidden = np.maximum(_project(x, p["W1"], p["b1"]), 0)
    ffn = _project(hidden, p["W2"], p["b2"])
    ffn += x
    out, cache["ln3"] = layernorm_forward(ffn, p["ln3_gamma"], p["ln3_beta"], {})
    cache["ffn"] = (x, hidden, p["W1"], p["W2"])
    # *****END OF YOUR CODE*****
    return out, cache


def decoder_layer_backward(dout, cache):
    """
    Backward pass for one decoder layer.

    Inputs:
    - dout: upstream gradient of shape (N, S, E)
    - cache: from decoder_layer_forward

    Returns a tuple of:
    - dx: gradient of the word vectors, of shape (N, S, E)
    - dmemory: gradient of the image vectors, of shape (N, P, E)
    - dparams: dict of gradients nested like params
    """
    dx, dmemory, dparams = None, None, None
    ###########################################################################
    # TODO: Implement the decoder layer's backward pass: the three lines of   #
    # the forward in reverse. A residual connection x + f(x) passes its       #
    # gradient to x twice: directly and through f. In the self-attention x is #
    # query, key and value at once: its gradient is the sum of the three.     #
    ###########################################################################
    # *****START OF YOUR CODE*****
    dparams = {}
    dsum, dparams["ln3_gamma"], dparams["ln3_beta"] = layernorm_backward(dout, cache["ln3"])
    x, hidden, W1, W2 = cache["ffn"]
    dhidden, dparams["W2"], dparams["b2"] = _project_backward(dsum, hidden, W2)
    dhidden *= hidden > 0  # relu: no gradient where the unit was off
    dx, dparams["W1"], dparams["b1"] = _project_backward(dhidden, x, W1)
    dx += dsum
    dsum, dparams["ln2_gamma"], dparams["ln2_beta"] = layernorm_backward(dx, cache["ln2"])
    dx, dmemory_key, dmemory_value, dparams["cross_attn"] = multihead_attention_backward(
        dsum, cache["cross_attn"]
    )
    dmemory = dmemory_key + dmemory_value
    dx += dsum
    dsum, dparams["ln1_gamma"], dparams["ln1_beta"] = layernorm_backward(dx, cache["ln1"])
    dquery, dkey, dvalue, dparams["self_attn"] = multihead_attention_backward(dsum, cache["self_attn"])
    dx = dsum + dquery + dkey + dvalue
    # *****END OF YOUR CODE*****
    return dx, dmemory, dparams
