"""The kit's layers: each is a pair `*_forward(...) -> (out, cache)` and `*_backward(dout, cache) -> grads`.

The backward returns the gradients in the order of the forward's array inputs. Convolution and max pooling
here are the naive reference versions (loops, easy to read); asgn3/fast_layers.py has the fast ones.
"""

import numpy as np

from asgn3.blas_threads import one_blas_thread

# ---------------------------------------------------------------------------------------------------------
# Argument checks shared by the naive and the fast layers
# ---------------------------------------------------------------------------------------------------------


def _require_ndim(name, array, ndim, layout):
    """Raise a ValueError unless `array` has `ndim` dimensions (`layout` names them, e.g. '(N, C, H, W)')."""
    if np.ndim(array) != ndim:
        raise ValueError(f"expected {name} of shape {layout}, got shape {np.shape(array)}")


def conv_output_shape(x_shape, w_shape, b_shape, conv_param):
    """
    Check the arguments of a convolution and compute the spatial size of its output.

    Inputs:
    - x_shape: shape of the input, (N, C, H, W)
    - w_shape: shape of the filters, (F, C, HH, WW)
    - b_shape: shape of the biases, (F,)
    - conv_param: dictionary with 'stride' (int >= 1) and 'pad' (int >= 0)

    Returns a tuple of:
    - stride, pad: the two ints from conv_param
    - H_out, W_out: H' = 1 + (H + 2 pad - HH) // stride, and the same for W'

    A ValueError names the shapes or parameters that do not fit together.
    """
    if len(x_shape) != 4:
        raise ValueError(f"expected x of shape (N, C, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"expected w of shape (F, C, HH, WW), got shape {tuple(w_shape)}")
    N, C, H, W = x_shape
    F, C_w, HH, WW = w_shape
    if C_w != C:
        raise ValueError(
            f"expected w of shape (F, C, HH, WW) with C={C} to match x {tuple(x_shape)}, "
            f"got w {tuple(w_shape)}"
        )
    if tuple(b_shape) != (F,):
        raise ValueError(
            f"expected b of shape (F,) = ({F},) to match w {tuple(w_shape)}, got {tuple(b_shape)}"
        )
    try:
        stride, pad = int(conv_param["stride"]), int(conv_param["pad"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"conv_param needs integer 'stride' and 'pad', got {conv_param!r}") from err
    if stride < 1 or pad < 0:
        raise ValueError(f"expected stride >= 1 and pad >= 0, got stride={stride}, pad={pad}")
    if H + 2 * pad < HH or W + 2 * pad < WW:
        raise ValueError(
            f"filters {HH}x{WW} do not fit in the padded input: x {tuple(x_shape)} with pad={pad}"
        )
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    return stride, pad, H_out, W_out


def pool_output_shape(x_shape, pool_param):
    """
    Check the arguments of a max pooling layer and compute the spatial size of its output.

    Inputs:
    - x_shape: shape of the input, (N, C, H, W)
    - pool_param: dictionary with 'pool_height', 'pool_width' and 'stride' (ints >= 1)

    Returns a tuple of:
    - pool_height, pool_width, stride: the three ints from pool_param
    - H_out, W_out: H' = 1 + (H - pool_height) // stride, and the same for W'
    """
    if len(x_shape) != 4:
        raise ValueError(f"expected x of shape (N, C, H, W), got shape {tuple(x_shape)}")
    try:
        ph, pw = int(pool_param["pool_height"]), int(pool_param["pool_width"])
        stride = int(pool_param["stride"])
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"pool_param needs integer 'pool_height', 'pool_width' and 'stride', got {pool_param!r}"
        ) from err
    if min(ph, pw, stride) < 1:
        raise ValueError(f"expected pool sizes and stride >= 1, got {pool_param!r}")
    H, W = x_shape[2], x_shape[3]
    if ph > H or pw > W:
        raise ValueError(f"pool {ph}x{pw} does not fit in x of shape {tuple(x_shape)}")
    return ph, pw, stride, 1 + (H - ph) // stride, 1 + (W - pw) // stride


def _check_scores(x, y):
    """Raise a ValueError unless x is (N, C) scores and y (N,) integer labels in [0, C)."""
    _require_ndim("x", x, 2, "(N, C)")
    N, C = x.shape
    y = np.asarray(y)
    if y.shape != (N,):
        raise ValueError(f"expected y of shape (N,) = ({N},) to match x {x.shape}, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected integer labels y, got dtype {y.dtype}")
    if N and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"expected labels in [0, {C}) for x {x.shape}, got values in [{y.min()}, {y.max()}]")
    return y


# ---------------------------------------------------------------------------------------------------------
# Affine and ReLU
# ---------------------------------------------------------------------------------------------------------


def affine_forward(x, w, b):
    """
    Compute the forward pass of an affine (fully connected) layer, out = x w + b.

    Inputs:
    - x: input of shape (N, d_1, ..., d_k); each example is flattened to a row of D = d_1 * ... * d_k
    - w: weights of shape (D, M)
    - b: biases of shape (M,)

    Returns a tuple of:
    - out: output of shape (N, M)
    - cache: (x, w, b)
    """
    _require_ndim("w", w, 2, "(D, M)")
    N = x.shape[0]
    D, M = w.shape
    x_rows = x.reshape(N, -1)
    if x_rows.shape[1] != D:
        raise ValueError(
            f"expected x of shape (N, d_1, ..., d_k) with d_1*...*d_k = D = {D} to match "
            f"w {w.shape}, got x {x.shape}"
        )
    if np.shape(b) != (M,):
        raise ValueError(f"expected b of shape (M,) = ({M},) to match w {w.shape}, got {np.shape(b)}")
    out = x_rows @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    """
    Compute the backward pass of an affine layer.

    Inputs:
    - dout: upstream derivative, of shape (N, M)
    - cache: (x, w, b) from affine_forward

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, d_1, ..., d_k)
    - dw: gradient with respect to w, of shape (D, M)
    - db: gradient with respect to b, of shape (M,)
    """
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x):
    """
    Compute the forward pass of a layer of rectified linear units, out = max(0, x).

    Inputs:
    - x: input of any shape

    Returns a tuple of:
    - out: output of the same shape as x
    - cache: x
    """
    return np.maximum(x, 0), x


def relu_backward(dout, cache, guided=False):
    """
    Compute the backward pass of a layer of rectified linear units.

    Inputs:
    - dout: upstream derivative, of any shape
    - cache: the input x, of the same shape as dout
    - guided: guided backpropagation (Springenberg et al. 2015): also zero the negative upstream
      derivatives, so that only evidence for the output flows back. Not a gradient: for attribution maps.

    Returns:
    - dx: gradient with respect to x (the upstream derivative where x > 0, zero elsewhere)
    """
    x = cache
    passes = x > 0
    if guided:
        passes &= dout > 0
    return dout * passes  # a boolean factor keeps dout's dtype, and is faster than np.where


# ---------------------------------------------------------------------------------------------------------
# Batch normalization: the plain and the spatial one share these two functions, which normalize every
# feature over the batch axes `axes` (N for (N, D) inputs; N, H and W for (N, C, H, W) inputs).
# ---------------------------------------------------------------------------------------------------------


def _running_statistic(bn_param, key, n_features, dtype):
    """Return bn_param[key] as a writable float array of shape (n_features,), creating zeros when absent."""
    value = bn_param.get(key)
    if value is None:
        value = np.zeros(n_features, dtype=dtype)
    if np.shape(value) != (n_features,):
        raise ValueError(f"expected bn_param['{key}'] of shape ({n_features},), got {np.shape(value)}")
    usable = isinstance(value, np.ndarray) and value.flags.writeable
    if not (usable and np.issubdtype(value.dtype, np.floating)):
        value = np.array(value, dtype=np.result_type(dtype, np.float32))
    bn_param[key] = value
    return value


def _normalize_forward(x, gamma, beta, bn_param, axes):
    """Batch-normalize x over `axes`; gamma, beta and the running statistics have one entry per feature."""
    mode = bn_param.get("mode")
    if mode not in ("train", "test"):
        raise ValueError(f"bn_param['mode'] must be 'train' or 'test', got {mode!r}")
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    feature_axis = 1
    n_features = x.shape[feature_axis]
    shape = [1] * x.ndim
    shape[feature_axis] = n_features  # broadcasts a per-feature vector against x

    running_mean = _running_statistic(bn_param, "running_mean", n_features, x.dtype)
    running_var = _running_statistic(bn_param, "running_var", n_features, x.dtype)

    if mode == "train":
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)  # the biased batch variance
        running_mean *= momentum
        running_mean += (1 - momentum) * mean
        running_var *= momentum
        running_var += (1 - momentum) * var
    else:
        mean, var = running_mean, running_var
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
    # Two passes that allocate, two in place: x_hat = (x - mean) * inv_std, out = x_hat * gamma + beta.
    x_hat = x - mean.astype(x.dtype, copy=False).reshape(shape)
    x_hat *= inv_std.reshape(shape)
    out = x_hat * gamma.reshape(shape)
    out += beta.reshape(shape)
    return out, (mode, x_hat, inv_std, gamma, axes, shape)


def _normalize_backward(dout, cache):
    """Backward pass of _normalize_forward: returns dx, dgamma, dbeta."""
    mode, x_hat, inv_std, gamma, axes, shape = cache
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    scale = (gamma * inv_std).reshape(shape)
    if mode == "test":
        # The statistics are constants here, so the layer is a per-feature affine map.
        return dout * scale, dgamma, dbeta
    # Train mode: the mean and variance depend on x as well. With m the number of values per feature and
    # dx_hat = gamma dout, dx = inv_std / m * (m dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)); the two
    # sums are gamma dbeta and gamma dgamma, already computed, so
    # dx = gamma inv_std * (dout - (dbeta + x_hat dgamma) / m).
    m = x_hat.size // x_hat.shape[1]
    dx = x_hat * (dgamma / m).reshape(shape)
    dx += (dbeta / m).reshape(shape)
    np.subtract(dout, dx, out=dx)
    dx *= scale
    return dx, dgamma, dbeta


def _check_bn_args(x, gamma, beta, layout, ndim):
    """Raise a ValueError unless x has the layout and gamma, beta one entry per feature (axis 1)."""
    _require_ndim("x", x, ndim, layout)
    n_features = x.shape[1]
    for name, value in (("gamma", gamma), ("beta", beta)):
        if np.shape(value) != (n_features,):
            raise ValueError(
                f"expected {name} of shape ({n_features},) to match x {x.shape}, got {np.shape(value)}"
            )


def batchnorm_forward(x, gamma, beta, bn_param):
    """
    Compute the forward pass of batch normalization.

    In train mode the batch mean and (biased) variance normalize the data, and the running averages are
    updated in place: running = momentum * running + (1 - momentum) * batch statistic. In test mode the
    running averages normalize the data.

    Inputs:
    - x: data of shape (N, D)
    - gamma: scale parameter of shape (D,)
    - beta: shift parameter of shape (D,)
    - bn_param: dictionary with keys:
      - mode: 'train' or 'test' (required)
      - eps: constant for numeric stability (default 1e-5)
      - momentum: constant for the running mean and variance (default 0.9)
      - running_mean: array of shape (D,), created as zeros when absent
      - running_var: array of shape (D,), created as zeros when absent

    Returns a tuple of:
    - out: output of shape (N, D)
    - cache: values needed in the backward pass (mode, normalized x, 1/std, gamma, axes, broadcast shape)
    """
    _check_bn_args(x, gamma, beta, "(N, D)", 2)
    return _normalize_forward(x, gamma, beta, bn_param, axes=(0,))


def batchnorm_backward(dout, cache):
    """
    Compute the backward pass of batch normalization (train or test mode, as in the forward pass).

    Inputs:
    - dout: upstream derivative, of shape (N, D)
    - cache: from batchnorm_forward

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, D)
    - dgamma: gradient with respect to gamma, of shape (D,)
    - dbeta: gradient with respect to beta, of shape (D,)
    """
    return _normalize_backward(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """
    Compute the forward pass of spatial batch normalization: each channel is normalized over N, H and W.

    Inputs:
    - x: data of shape (N, C, H, W)
    - gamma: scale parameter of shape (C,)
    - beta: shift parameter of shape (C,)
    - bn_param: dictionary as for batchnorm_forward, with running_mean and running_var of shape (C,)

    Returns a tuple of:
    - out: output of shape (N, C, H, W)
    - cache: values needed in the backward pass
    """
    _check_bn_args(x, gamma, beta, "(N, C, H, W)", 4)
    return _normalize_forward(x, gamma, beta, bn_param, axes=(0, 2, 3))


def spatial_batchnorm_backward(dout, cache):
    """
    Compute the backward pass of spatial batch normalization.

    Inputs:
    - dout: upstream derivative, of shape (N, C, H, W)
    - cache: from spatial_batchnorm_forward

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, C, H, W)
    - dgamma: gradient with respect to gamma, of shape (C,)
    - dbeta: gradient with respect to beta, of shape (C,)
    """
    return _normalize_backward(dout, cache)


# ---------------------------------------------------------------------------------------------------------
# Naive convolution and max pooling: loops that follow the definitions
# ---------------------------------------------------------------------------------------------------------


def conv_forward_naive(x, w, b, conv_param):
    """
    Compute the forward pass of a convolutional layer, by loops that follow the definition.

    Each of the N inputs, zero-padded by `pad` on every side of its height and width, is correlated with
    each of the F filters, which slide by `stride` steps.

    Inputs:
    - x: input data of shape (N, C, H, W)
    - w: filter weights of shape (F, C, HH, WW)
    - b: biases of shape (F,)
    - conv_param: dictionary with 'stride' and 'pad'

    Returns a tuple of:
    - out: output of shape (N, F, H', W'), H' = 1 + (H + 2 pad - HH) // stride, W' likewise
    - cache: (x, w, b, conv_param)
    """
    stride, pad, H_out, W_out = conv_output_shape(np.shape(x), np.shape(w), np.shape(b), conv_param)
    N, F = x.shape[0], w.shape[0]
    HH, WW = w.shape[2], w.shape[3]
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, H_out, W_out), dtype=np.result_type(x, w, b))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    """
    Compute the backward pass of a convolutional layer, by loops.

    Inputs:
    - dout: upstream derivative, of shape (N, F, H', W')
    - cache: (x, w, b, conv_param) from conv_forward_naive

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, C, H, W)
    - dw: gradient with respect to w, of shape (F, C, HH, WW)
    - db: gradient with respect to b, of shape (F,)
    """
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, F, H_out, W_out = dout.shape
    HH, WW = w.shape[2], w.shape[3]
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = np.zeros_like(x_pad, dtype=np.result_type(x, dout))
    dw = np.zeros_like(w, dtype=np.result_type(w, dout))
    db = dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * stride, i * stride + HH)
                    cols = slice(j * stride, j * stride + WW)
                    dw[f] += x_pad[n, :, rows, cols] * dout[n, f, i, j]
                    dx_pad[n, :, rows, cols] += w[f] * dout[n, f, i, j]
    dx = dx_pad[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
    """
    Compute the forward pass of a max pooling layer, by a loop over the output positions.

    Inputs:
    - x: input data of shape (N, C, H, W)
    - pool_param: dictionary with 'pool_height', 'pool_width' and 'stride'

    Returns a tuple of:
    - out: output of shape (N, C, H', W'), H' = 1 + (H - pool_height) // stride, W' likewise
    - cache: (x, pool_param)
    """
    ph, pw, stride, H_out, W_out = pool_output_shape(np.shape(x), pool_param)
    N, C = x.shape[:2]
    out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    """
    Compute the backward pass of a max pooling layer: each upstream derivative goes to the position of
    its window's maximum (the first one, in row-major order, when several values tie).

    Inputs:
    - dout: upstream derivative, of shape (N, C, H', W')
    - cache: (x, pool_param) from max_pool_forward_naive

    Returns:
    - dx: gradient with respect to x, of shape (N, C, H, W)
    """
    x, pool_param = cache
    ph, pw, stride, H_out, W_out = pool_output_shape(x.shape, pool_param)
    N, C = x.shape[:2]
    dx = np.zeros_like(x, dtype=np.result_type(x, dout))
    n_idx, c_idx = np.ogrid[:N, :C]
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            first_max = window.reshape(N, C, ph * pw).argmax(axis=2)
            rows, cols = np.divmod(first_max, pw)
            dx[n_idx, c_idx, i * stride + rows, j * stride + cols] += dout[:, :, i, j]
    return dx


# ---------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------


def svm_loss(x, y):
    """
    Compute the loss and gradient of the multiclass SVM (hinge loss with margin 1), averaged over N.

    Inputs:
    - x: scores of shape (N, C); x[i, j] is the score of class j for the i-th input
    - y: labels of shape (N,); y[i] is the label of x[i], 0 <= y[i] < C

    Returns a tuple of:
    - loss: scalar
    - dx: gradient of the loss with respect to x, of shape (N, C)
    """
    y = _check_scores(x, y)
    N = x.shape[0]
    rows = np.arange(N)
    correct = x[rows, y][:, None]
    margins = np.maximum(0, x - correct + 1.0)
    margins[rows, y] = 0
    loss = margins.sum() / N
    dx = (margins > 0).astype(x.dtype)
    dx[rows, y] = -dx.sum(axis=1)
    dx /= N
    return loss, dx


def softmax_loss(x, y):
    """
    Compute the loss and gradient of softmax classification (cross-entropy), averaged over N.

    Inputs:
    - x: scores of shape (N, C); x[i, j] is the score of class j for the i-th input
    - y: labels of shape (N,); y[i] is the label of x[i], 0 <= y[i] < C

    Returns a tuple of:
    - loss: scalar
    - dx: gradient of the loss with respect to x, of shape (N, C)
    """
    y = _check_scores(x, y)
    N = x.shape[0]
    rows = np.arange(N)
    shifted = x - x.max(axis=1, keepdims=True)  # the softmax is unchanged; exp cannot overflow
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, y].sum() / N
    dx = np.exp(log_probs)
    dx[rows, y] -= 1
    dx /= N
    return loss, dx


# ---------------------------------------------------------------------------------------------------------
# The layers of mobile networks (EfficientNet-Lite, MobileNet): depthwise and pointwise convolutions with
# TensorFlow's "SAME" padding, and ReLU6. Vectorised: a loop over the k*k filter taps, never over pixels.
# ---------------------------------------------------------------------------------------------------------


def same_padding(size, kernel, stride):
    """
    TensorFlow's "SAME" padding of one spatial axis: the output has ceil(size / stride) entries.

    Returns (before, after), the zeros added before the first and after the last entry; when the total
    is odd (it can be on stride 2) the extra zero goes after (bottom/right).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def padding_of(x_shape, kernel, stride, pad):
    """
    The zeros a convolution adds around images of shape x_shape (N, C, H, W).

    Inputs:
    - kernel, stride: the convolution's filter side and stride
    - pad: 'same' (TensorFlow's SAME, maybe asymmetric) or an int >= 0 (the same on every side)

    Returns ((top, bottom), (left, right)).
    """
    if isinstance(pad, str):
        if pad.lower() != "same":
            raise ValueError(f"conv_param 'pad' must be an int >= 0 or 'same', got {pad!r}")
        return same_padding(x_shape[2], kernel, stride), same_padding(x_shape[3], kernel, stride)
    if int(pad) < 0:
        raise ValueError(f"conv_param 'pad' must be an int >= 0 or 'same', got {pad!r}")
    return (int(pad), int(pad)), (int(pad), int(pad))


def pad_input(x, kernel, stride, pad):
    """
    Zero-pad images for a convolution: pad 'same' (TensorFlow's SAME, maybe asymmetric) or an int (symmetric).

    Inputs:
    - x: input of shape (N, C, H, W)
    - kernel, stride, pad: as in padding_of

    Returns a tuple of:
    - x_padded: (N, C, H + top + bottom, W + left + right)
    - pads: ((top, bottom), (left, right))
    """
    _require_ndim("x", x, 4, "(N, C, H, W)")
    pads = padding_of(x.shape, kernel, stride, pad)
    if pads == ((0, 0), (0, 0)):
        return x, pads
    return np.pad(x, ((0, 0), (0, 0), *pads)), pads


def unpad(dx_padded, pads):
    """The gradient of pad_input: the part of dx_padded (N, C, H', W') that lies on the original image."""
    (top, bottom), (left, right) = pads
    H, W = dx_padded.shape[2] - top - bottom, dx_padded.shape[3] - left - right
    return dx_padded[:, :, top : top + H, left : left + W]


# The depthwise and pointwise convolutions compute on channels-last memory (N, H, W, C), where a channel's
# weight broadcasts along contiguous memory and a 1x1 convolution is one matrix product (N*H*W, C) @ (C, F).
# They take and return (N, C, H, W) arrays like every layer: what they return is a transposed view of that
# memory, and the next such layer reads it without a copy.


def _channels_last(x):
    """(N, C, H, W) -> (N, H, W, C), C-contiguous (no copy when x is already a view of such memory)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _tap(x_padded, i, j, stride, H_out, W_out):
    """The strided view (N, H_out, W_out, C) of channels-last x_padded that filter tap (i, j) multiplies."""
    return x_padded[:, i : i + stride * (H_out - 1) + 1 : stride, j : j + stride * (W_out - 1) + 1 : stride]


def depthwise_conv_forward(x, w, b, conv_param):
    """
    Compute the forward pass of a depthwise convolution: each channel is convolved with its own filter.

    out[n, c] = sum over the k x k taps (i, j) of w[c, 0, i, j] * x_padded[n, c, s*h + i, s*w + j] + b[c].

    Inputs:
    - x: input of shape (N, C, H, W)
    - w: filters of shape (C, 1, k, k), one per channel
    - b: biases of shape (C,)
    - conv_param: dictionary with 'stride' (int >= 1) and 'pad': an int (zeros on every side) or 'same'
      (TensorFlow's SAME: the output is ceil(H / stride) x ceil(W / stride), extra zero bottom/right)

    Returns a tuple of:
    - out: output of shape (N, C, H', W') (a view of channels-last memory)
    - cache: (x_padded, w, pads, stride), x_padded channels-last (N, H + top + bottom, W + left + right, C)
    """
    _require_ndim("x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    if np.ndim(w) != 4 or np.shape(w)[:2] != (C, 1) or w.shape[2] != w.shape[3]:
        raise ValueError(
            f"expected w of shape (C, 1, k, k) with C={C} to match x {x.shape}, got {np.shape(w)}"
        )
    if np.shape(b) != (C,):
        raise ValueError(f"expected b of shape (C,) = ({C},) to match x {x.shape}, got {np.shape(b)}")
    stride, k = int(conv_param.get("stride", 1)), w.shape[2]
    if stride < 1:
        raise ValueError(f"expected stride >= 1, got {stride}")
    (top, bottom), (left, right) = pads = padding_of(x.shape, k, stride, conv_param.get("pad", 0))
    H_out, W_out = (H + top + bottom - k) // stride + 1, (W + left + right - k) // stride + 1
    if H_out < 1 or W_out < 1:
        raise ValueError(f"a {k}x{k} filter does not fit in x {x.shape} padded by {pads}")
    dtype = np.result_type(x, w, b)
    x_padded = np.zeros((N, H + top + bottom, W + left + right, C), dtype)
    x_padded[:, top : top + H, left : left + W] = x.transpose(0, 2, 3, 1)
    out = np.empty((N, H_out, W_out, C), dtype)
    out[...] = b
    product = np.empty_like(out)
    for i in range(k):
        for j in range(k):
            out += np.multiply(_tap(x_padded, i, j, stride, H_out, W_out), w[:, 0, i, j], out=product)
    return out.transpose(0, 3, 1, 2), (x_padded, w, pads, stride)


def depthwise_conv_backward(dout, cache, param_grads=True):
    """
    Compute the backward pass of a depthwise convolution.

    Inputs:
    - dout: upstream derivatives, of shape (N, C, H', W')
    - cache: (x_padded, w, pads, stride) as returned by depthwise_conv_forward
    - param_grads: False skips dw and db (returned as None), for gradients with respect to the input only

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, C, H, W)
    - dw: gradient with respect to w, of shape (C, 1, k, k)
    - db: gradient with respect to b, of shape (C,)
    """
    x_padded, w, pads, stride = cache
    dout = _channels_last(dout)
    N, H_out, W_out, C = dout.shape
    k = w.shape[2]
    dx_padded = np.zeros(x_padded.shape, np.result_type(dout, w))
    dw = np.empty(w.shape, np.result_type(dout, x_padded)) if param_grads else None
    product = np.empty(dout.shape, dx_padded.dtype)
    for i in range(k):
        for j in range(k):
            # every tap adds a scaled copy of the input to the output: its gradients are a product and a sum
            _tap(dx_padded, i, j, stride, H_out, W_out)[...] += np.multiply(dout, w[:, 0, i, j], out=product)
            if param_grads:
                dw[:, 0, i, j] = np.einsum("nhwc,nhwc->c", dout, _tap(x_padded, i, j, stride, H_out, W_out))
    db = dout.sum(axis=(0, 1, 2)) if param_grads else None
    (top, bottom), (left, right) = pads
    H, W = x_padded.shape[1] - top - bottom, x_padded.shape[2] - left - right
    return dx_padded[:, top : top + H, left : left + W].transpose(0, 3, 1, 2), dw, db


def pointwise_conv_forward(x, w, b):
    """
    Compute the forward pass of a 1x1 convolution, a matrix product over the channels at every pixel.

    Inputs:
    - x: input of shape (N, C, H, W)
    - w: filters of shape (F, C, 1, 1)
    - b: biases of shape (F,)

    Returns a tuple of:
    - out: output of shape (N, F, H, W) (a view of channels-last memory),
      out[n, :, h, w] = w[:, :, 0, 0] @ x[n, :, h, w] + b
    - cache: (x_rows, x shape, w), x_rows the channels-last input as a matrix (N*H*W, C)
    """
    _require_ndim("x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    if np.ndim(w) != 4 or w.shape[1:] != (C, 1, 1):
        raise ValueError(
            f"expected w of shape (F, C, 1, 1) with C={C} to match x {x.shape}, got {np.shape(w)}"
        )
    F = w.shape[0]
    if np.shape(b) != (F,):
        raise ValueError(f"expected b of shape (F,) = ({F},) to match w {w.shape}, got {np.shape(b)}")
    x_rows = _channels_last(x).reshape(N * H * W, C)
    # One thread: these products are tall and thin (N*H*W rows, tens of channels), bound by memory, and
    # a second thread made EfficientNet-Lite0's forward+backward at batch 1 2.2x slower (measured).
    with one_blas_thread():
        out = x_rows @ w.reshape(F, C).T
    out += b
    return out.reshape(N, H, W, F).transpose(0, 3, 1, 2), (x_rows, x.shape, w)


def pointwise_conv_backward(dout, cache, param_grads=True):
    """
    Compute the backward pass of a 1x1 convolution.

    Inputs:
    - dout: upstream derivatives, of shape (N, F, H, W)
    - cache: (x_rows, x shape, w) as returned by pointwise_conv_forward
    - param_grads: False skips dw and db (returned as None), for gradients with respect to the input only

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, C, H, W)
    - dw: gradient with respect to w, of shape (F, C, 1, 1)
    - db: gradient with respect to b, of shape (F,)
    """
    x_rows, (N, C, H, W), w = cache
    F = w.shape[0]
    dout_rows = _channels_last(dout).reshape(N * H * W, F)
    with one_blas_thread():  # as in the forward
        dx = (dout_rows @ w.reshape(F, C)).reshape(N, H, W, C).transpose(0, 3, 1, 2)
        if not param_grads:
            return dx, None, None
        return dx, (dout_rows.T @ x_rows).reshape(w.shape), dout_rows.sum(axis=0)


def relu6_forward(x):
    """
    Compute the forward pass of ReLU6, out = min(max(0, x), 6).

    Inputs:
    - x: input of any shape

    Returns a tuple of:
    - out: output of the same shape as x
    - cache: x
    """
    return np.clip(x, 0, 6), x


def relu6_backward(dout, cache, guided=False):
    """
    Compute the backward pass of ReLU6.

    Inputs:
    - dout: upstream derivative, of any shape
    - cache: the input x, of the same shape as dout
    - guided: guided backpropagation: also zero the entries where dout is negative

    Returns:
    - dx: gradient with respect to x (the upstream derivative where 0 < x < 6, zero elsewhere)
    """
    x = cache
    passes = (x > 0) & (x < 6)
    if guided:
        passes &= dout > 0
    return dout * passes
