"""Fast convolution and max pooling: matrix products (im2col, shifted windows, or Winograd's transforms),
same interface as the naive layers.

The im2col/col2im kernels come from the compiled extension asgn3.im2col_cython when it is built, and
otherwise from asgn3.im2col (pure numpy, same numbers, slower). float32 inputs stay float32 end to end.
"""

import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from asgn3 import im2col as im2col_numpy
from asgn3.blas_threads import allowed_threads, blas_threads_for, machine_is_busy, one_blas_thread
from asgn3.layers import conv_output_shape, pool_output_shape

BUILD_COMMAND = "pip install -e .  (or: cd asgn3 && python setup.py build_ext --inplace)"

# What this version of the layers calls in the extension: a build from an older checkout lacks some.
EXTENSION_FUNCTIONS = (
    "im2col",
    "col2im",
    "block_images",
    "band_rows",
    "conv_forward",
    "conv_backward",
    "conv_forward_shifted",
    "conv_backward_shifted",
    "conv_forward_winograd",
    "conv_backward_winograd",
)

try:
    from asgn3 import im2col_cython

    _missing = [name for name in EXTENSION_FUNCTIONS if not hasattr(im2col_cython, name)]
    if _missing:
        raise ImportError(f"the built extension is out of date, it lacks {', '.join(_missing)}")
except ImportError as err:
    im2col_cython = None
    warnings.warn(
        f"asgn3.im2col_cython is not usable ({err}), using the slower numpy im2col; build it with: "
        f"{BUILD_COMMAND}",
        stacklevel=2,
    )

# The module-level switch: which im2col/col2im implementation the fast layers call.
USE_CYTHON = im2col_cython is not None


def _kernels():
    """Return the module that provides im2col and col2im, as chosen by USE_CYTHON."""
    if USE_CYTHON:
        if im2col_cython is None:
            raise RuntimeError(f"USE_CYTHON is set but asgn3.im2col_cython is not built: {BUILD_COMMAND}")
        return im2col_cython
    return im2col_numpy


def _float_dtype(*arrays):
    """The common dtype of the arrays, promoted to float64 unless it is float32 or float64."""
    dtype = np.result_type(*arrays)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


# A thread takes a share of the batch only when its share has at least this many multiply-adds (about
# 20 microseconds of work), so that starting it costs little next to what it does.
MIN_MULTIPLY_ADDS_PER_THREAD = 2e6
# A block product this big is left to BLAS to spread over its threads, in one share: splitting the batch
# gains nothing more there.
BLAS_SPREADS_ABOVE = 2e8

_pool = None


def _forget_pool():
    """In a forked child the pool's threads do not exist: make a new pool there when one is needed."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_forget_pool)


def _block_multiply_adds(N, w_rows_shape, out_height, out_width):
    """Multiply-adds of one of the extension's block products of w_rows (F, C*HH*WW) by a block."""
    F, rows = w_rows_shape
    images = im2col_cython.block_images(N, rows, out_height * out_width)
    columns = images * im2col_cython.band_rows(N, rows, out_height, out_width) * out_width
    return F * rows * columns


def _batch_shares(N, w_rows_shape, out_height, out_width):
    """
    Split the batch between threads: one share per thread numpy's BLAS may use, each share's products on
    one BLAS thread, with at least MIN_MULTIPLY_ADDS_PER_THREAD in each. One share on a busy machine, and
    when a block product is over BLAS_SPREADS_ABOVE (BLAS spreads each product then).

    Returns a list of slices of the batch, in order, covering it.
    """
    F, rows = w_rows_shape
    big_blocks = _block_multiply_adds(N, w_rows_shape, out_height, out_width) > BLAS_SPREADS_ABOVE
    if big_blocks or machine_is_busy():
        return [slice(0, N)]
    total = F * rows * out_height * out_width * N
    count = int(max(1, min(allowed_threads(), N, total // MIN_MULTIPLY_ADDS_PER_THREAD)))
    bounds = np.linspace(0, N, count + 1).round().astype(int)
    return [slice(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def _run_over_batch(task, N, w_rows_shape, out_height, out_width):
    """
    Run task(share) on every share of the batch (_batch_shares), with one BLAS thread for the block
    products, unless they are one share of blocks over BLAS_SPREADS_ABOVE: then the BLAS's own setting
    spreads each product. (Below that, a block's product is too small to gain from BLAS threads: at batch 1,
    EfficientNet-Lite0's stem took longer with two.)

    Returns the tasks' results, in no particular order.
    """
    shares = _batch_shares(N, w_rows_shape, out_height, out_width)
    block_multiply_adds = _block_multiply_adds(N, w_rows_shape, out_height, out_width)
    if len(shares) == 1 and block_multiply_adds > BLAS_SPREADS_ABOVE:
        threads = blas_threads_for(block_multiply_adds)
    else:
        threads = one_blas_thread()
    with threads:
        return _run_shares(task, shares)


def _run_shares(task, shares):
    """
    Run task(share) for every share at once: the first on this thread, each other on a thread of the pool
    (the extension releases the GIL). A share whose thread cannot be started (a process limit) runs here.

    Returns the tasks' results, in no particular order.
    """
    global _pool
    if len(shares) > 1 and _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="asgn3-conv"
        )
    here, futures = [shares[0]], []
    for share in shares[1:]:
        try:
            futures.append(_pool.submit(task, share))
        except RuntimeError:
            here.append(share)
    return [task(share) for share in here] + [future.result() for future in futures]


# The extension's shifted-product convolution (no im2col; see im2col_cython.pyx) computes its products on a
# grid of the padded image's size, H'+extra rows by W'+extra columns per image, and drops the extra. It
# is used when that grid has at most this much more positions than the output: measured on one core at
# batch 50, float32, its forward+backward took 0.59-0.82x the im2col way's time on 32x32 and 64x64 images
# (grid 13% over) and on 16x16 at stride 1 (27% over), but 1.0-1.15x on 16x16 at stride 2 (27% over,
# with four phases to split) and 1.1-1.7x on 8x8 and 4x4 images (56% and 125% over).
SHIFTED_MAX_EXCESS = {1: 0.3}  # by stride; any other stride:
SHIFTED_MAX_EXCESS_OTHER_STRIDES = 0.15
# Each of its products has only C rows to sum over: with fewer channels than this they run far below BLAS
# speed (3->64 5x5 at 64x64: 1.17x the im2col way's time; EfficientNet's 3->32 stem: 2x), unless there
# are also few filters (at most this many), when the im2col product is as thin (the shipped model's 3->16
# first layer: 0.59x).
SHIFTED_MIN_CHANNELS = 16
SHIFTED_FEW_FILTERS = 16


def _shifted_products_suit(x_shape, w_shape, pad, stride, out_height, out_width):
    """True when the extension's shifted-product convolution is the faster way for these shapes."""
    _, C, H, W = x_shape
    F = w_shape[0]
    grid = -(-(H + 2 * pad) // stride) * -(-(W + 2 * pad) // stride)
    excess = grid / max(1, out_height * out_width) - 1
    max_excess = SHIFTED_MAX_EXCESS.get(stride, SHIFTED_MAX_EXCESS_OTHER_STRIDES)
    return excess <= max_excess and (C >= SHIFTED_MIN_CHANNELS or F <= SHIFTED_FEW_FILTERS)


def _filters_by_tap(w):
    """w (F, C, HH, WW) as the shifted convolution takes it: (HH*WW, F, C), one (F, C) matrix per tap."""
    F, C, HH, WW = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(HH * WW, F, C)


def _filters_from_taps(w_taps, w_shape):
    """The inverse of _filters_by_tap: (HH*WW, F, C) back to (F, C, HH, WW)."""
    F, C, HH, WW = w_shape
    return np.ascontiguousarray(w_taps.reshape(HH, WW, F, C).transpose(2, 3, 0, 1))


# Winograd's F(2x2, 3x3) (the extension's third way, for 3x3 filters at stride 1 and pad 1) needs 2.25x fewer
# multiply-adds, but its transforms cost passes over 16/9 of the input and of the output, and the filters'
# transform a pass over 16/9 of the weights at every call. Measured on one core, float32, forward+backward
# through conv_forward_fast/conv_backward_fast against the faster of the other two ways: 0.82x for 64->64
# at 32x32 and 0.85x at 8x8 (batch 50: 51,200 and 3,200 output positions in the batch); but 1.04x for
# 128->128 at 4x4 (800 positions), 0.97-1.08x at batch 1 on 32x32 and 16x16 images (1,024 and 256) and
# 1.2-1.9x below, where the filters' transform costs as much as it saves. With 32 channels or 16, the
# products run below BLAS speed in every way and the transforms do not pay (32->32 at 16x16, batch 50:
# 1.15x; 16->16 at 32x32: 1.55x).
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_POSITIONS = 2048
# Winograd's transforms as matrices (Lavin and Gray 2016): the filter transform G, used here; B^T and A^T
# are written out as additions in the extension.
WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def _winograd_applies(w_shape, pad, stride):
    """True for the one geometry the Winograd way computes: 3x3 filters, stride 1, pad 1."""
    return tuple(w_shape[2:]) == (3, 3) and stride == 1 and pad == 1


def _winograd_suits(x_shape, w_shape, pad, stride):
    """True when the extension's Winograd convolution is the faster way for these shapes."""
    N, C, H, W = x_shape
    return (
        _winograd_applies(w_shape, pad, stride)
        and min(C, w_shape[0]) >= WINOGRAD_MIN_CHANNELS
        and N * H * W >= WINOGRAD_MIN_POSITIONS  # stride 1, pad 1: the output has the input's size
    )


def way_name(x_shape, w_shape, pad, stride, out_height, out_width):
    """The way conv_forward_fast and conv_backward_fast take for these shapes: "winograd", "shifted",
    "im2col" (the extension's three), or "numpy" without the extension."""
    if not USE_CYTHON:
        return "numpy"
    if _winograd_suits(x_shape, w_shape, pad, stride):
        return "winograd"
    if _shifted_products_suit(x_shape, w_shape, pad, stride, out_height, out_width):
        return "shifted"
    return "im2col"


def _winograd_filters(w):
    """w (F, C, 3, 3) as the Winograd way takes it: G w G^T of every filter, as (16, F, C), entry 4a + b of
    the 4x4 transform first. One product: (G w G^T)[a, b] = sum over i, j of kron(G, G)[4a + b, 3i + j]
    w[i, j] (a stack of F*C tiny products would cost more than the convolution on small images)."""
    F, C = w.shape[:2]
    G = WINOGRAD_G.astype(w.dtype)
    with one_blas_thread():  # see _filters_from_winograd
        return (np.kron(G, G) @ w.reshape(F * C, 9).T).reshape(16, F, C)


def _filters_from_winograd(d_transformed, w_shape):
    """The gradient of w from that of its transform (16, F, C): G^T dU G, (F, C, 3, 3), as one product."""
    G = WINOGRAD_G.astype(d_transformed.dtype)
    # On one BLAS thread: a product spread over OpenBLAS's threads leaves them spinning for a while after,
    # on the cores where the next layer's shares of the batch run (measured: two shares took as long as one).
    with one_blas_thread():
        d_rows = np.kron(G, G).T @ d_transformed.reshape(16, -1)  # (9, F*C)
    return np.ascontiguousarray(d_rows.T).reshape(w_shape)


class _Way(NamedTuple):
    """One of the extension's ways of convolving: the filters in the form its functions take, its forward
    and backward (the same arguments in every way), and how the gradient of those filters turns back into
    dw (F, C, HH, WW)."""

    filters: np.ndarray
    forward: Callable
    backward: Callable
    to_dw: Callable


def _filter_rows(w):
    """w (F, C, HH, WW) as im2col's product takes it: rows (F, C*HH*WW)."""
    return w.reshape(w.shape[0], -1)


def _filters_from_rows(w_rows, w_shape):
    """The inverse of _filter_rows."""
    return w_rows.reshape(w_shape)


# Each of the extension's ways: the filters in the form its functions take, the names of its forward and
# backward in the extension (the same arguments in every way), and how the gradient of those filters turns
# back into dw (F, C, HH, WW).
_WAYS = {
    "winograd": (
        _winograd_filters,
        "conv_forward_winograd",
        "conv_backward_winograd",
        _filters_from_winograd,
    ),
    "shifted": (_filters_by_tap, "conv_forward_shifted", "conv_backward_shifted", _filters_from_taps),
    "im2col": (_filter_rows, "conv_forward", "conv_backward", _filters_from_rows),
}


def _extension_way(x_shape, w, pad, stride, out_height, out_width):
    """
    The extension's convolution for these shapes, as way_name chooses it. The threads share the batch by
    the same estimate of the block products in every way.

    Returns a _Way.
    """
    name = way_name(x_shape, w.shape, pad, stride, out_height, out_width)
    to_filters, forward, backward, to_dw = _WAYS[name]
    return _Way(to_filters(w), getattr(im2col_cython, forward), getattr(im2col_cython, backward), to_dw)


def conv_forward_fast(x, w, b, conv_param):
    """
    Compute the forward pass of a convolutional layer with im2col and matrix products.

    With the compiled extension, a block of images at a time, in the way way_name chooses for the shapes:
    Winograd's F(2x2, 3x3) (3x3 filters at stride 1 and pad 1, many channels); a sum of shifted products,
    one per filter tap; or im2col into a buffer that stays in the cache, the product written straight into
    the output. Without the extension, one im2col of the whole batch.

    Inputs:
    - x: input data of shape (N, C, H, W)
    - w: filter weights of shape (F, C, HH, WW)
    - b: biases of shape (F,)
    - conv_param: dictionary with 'stride' and 'pad'

    Returns a tuple of:
    - out: output of shape (N, F, H', W'), H' = 1 + (H + 2 pad - HH) // stride, W' likewise;
      float32 when all inputs are float32, else float64
    - cache: (x, w, conv_param), x and w contiguous in the output's dtype
    """
    stride, pad, H_out, W_out = conv_output_shape(np.shape(x), np.shape(w), np.shape(b), conv_param)
    dtype = _float_dtype(x, w, b)
    x = np.ascontiguousarray(x, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    b = np.ascontiguousarray(b, dtype=dtype)
    N, F, HH, WW = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    w_rows = w.reshape(F, -1)
    if _kernels() is im2col_cython:
        out = np.empty((N, F, H_out, W_out), dtype=dtype)
        way = _extension_way(x.shape, w, pad, stride, H_out, W_out)
        _run_over_batch(
            lambda s: way.forward(x[s], way.filters, b, out[s], HH, WW, pad, stride),
            N,
            w_rows.shape,
            H_out,
            W_out,
        )
    else:
        product = w_rows @ im2col_numpy.im2col(x, HH, WW, pad, stride) + b[:, None]  # (F, N*H'*W')
        out = np.ascontiguousarray(product.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3))
    return out, (x, w, conv_param)


def conv_backward_fast(dout, cache):
    """
    Compute the backward pass of a convolutional layer with matrix products and col2im.

    Inputs:
    - dout: upstream derivative, of shape (N, F, H', W')
    - cache: from conv_forward_fast

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, C, H, W)
    - dw: gradient with respect to w, of shape (F, C, HH, WW)
    - db: gradient with respect to b, of shape (F,)
    """
    x, w, conv_param = cache
    stride, pad, H_out, W_out = conv_output_shape(x.shape, w.shape, w.shape[:1], conv_param)
    N, F, HH, WW = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    if np.shape(dout) != (N, F, H_out, W_out):
        raise ValueError(
            f"expected dout of shape (N, F, H', W') = {(N, F, H_out, W_out)} to match the forward's output, "
            f"got {np.shape(dout)}"
        )
    dout = np.ascontiguousarray(dout, dtype=x.dtype)
    db = dout.sum(axis=(0, 2, 3))
    w_rows = w.reshape(F, -1)
    if _kernels() is im2col_cython:
        dx = np.empty_like(x)  # overwritten by the extension
        way = _extension_way(x.shape, w, pad, stride, H_out, W_out)

        def share_backward(s):
            # each share's dw is its own sum; the shares' sums are added after
            dw_share = np.empty_like(way.filters)  # overwritten by the extension
            way.backward(dout[s], x[s], way.filters, dx[s], dw_share, HH, WW, pad, stride)
            return dw_share

        dw = sum(_run_over_batch(share_backward, N, w_rows.shape, H_out, W_out))
        return dx, way.to_dw(dw, w.shape), db
    cols = im2col_numpy.im2col(x, HH, WW, pad, stride)  # recomputed: cheaper than keeping it in the cache
    dout_rows = dout.transpose(1, 0, 2, 3).reshape(F, -1)  # (F, N*H'*W'), the layout of the forward's product
    dw = (dout_rows @ cols.T).reshape(w.shape)
    dx = im2col_numpy.col2im(w_rows.T @ dout_rows, x.shape, HH, WW, pad, stride)
    return dx, dw, db


def _pools_tile(x_shape, ph, pw, stride):
    """True when square pools, as wide as their stride, tile x exactly: then a reshape makes the windows."""
    return ph == pw == stride and x_shape[2] % ph == 0 and x_shape[3] % pw == 0


def max_pool_forward_fast(x, pool_param):
    """
    Compute the forward pass of a max pooling layer: a reshape when the pools tile the input, else im2col.

    Inputs:
    - x: input data of shape (N, C, H, W)
    - pool_param: dictionary with 'pool_height', 'pool_width' and 'stride'

    Returns a tuple of:
    - out: output of shape (N, C, H', W'), H' = 1 + (H - pool_height) // stride, W' likewise
    - cache: (x shape, flat index of each window's first maximum, pool_param)
    """
    ph, pw, stride, H_out, W_out = pool_output_shape(np.shape(x), pool_param)
    x = np.asarray(x)
    N, C, H, W = x.shape
    if _pools_tile(x.shape, ph, pw, stride):
        windows = x.reshape(N, C, H_out, ph, W_out, pw).transpose(3, 5, 0, 1, 2, 4).reshape(ph * pw, -1)
    else:
        # Pool every channel on its own: im2col of the (N*C, 1, H, W) view has one window per column.
        x_float = x.astype(_float_dtype(x), copy=False)
        windows = _kernels().im2col(x_float.reshape(N * C, 1, H, W), ph, pw, 0, stride)
    first_max = windows.argmax(axis=0)
    out = windows[first_max, np.arange(windows.shape[1])].astype(x.dtype, copy=False)
    return out.reshape(N, C, H_out, W_out), (x.shape, first_max, pool_param)


def max_pool_backward_fast(dout, cache):
    """
    Compute the backward pass of a max pooling layer: each upstream derivative goes to the first maximum
    of its window, as in max_pool_backward_naive.

    Inputs:
    - dout: upstream derivative, of shape (N, C, H', W')
    - cache: from max_pool_forward_fast

    Returns:
    - dx: gradient with respect to x, of shape (N, C, H, W)
    """
    x_shape, first_max, pool_param = cache
    ph, pw, stride, H_out, W_out = pool_output_shape(x_shape, pool_param)
    N, C, H, W = x_shape
    if dout.shape != (N, C, H_out, W_out):
        raise ValueError(f"expected dout of shape {(N, C, H_out, W_out)}, got {dout.shape}")
    dtype = _float_dtype(dout)
    dwindows = np.zeros((ph * pw, first_max.size), dtype=dtype)
    dwindows[first_max, np.arange(first_max.size)] = dout.reshape(-1)
    if _pools_tile(x_shape, ph, pw, stride):
        dx = dwindows.reshape(ph, pw, N, C, H_out, W_out).transpose(2, 3, 4, 0, 5, 1).reshape(x_shape)
        return np.ascontiguousarray(dx)
    return _kernels().col2im(dwindows, (N * C, 1, H, W), ph, pw, 0, stride).reshape(x_shape)


# The classic kit's names for the same layers (its im2col, stride-trick and reshape variants are all this
# one implementation now), so that old notebooks and guides keep working.
conv_forward_im2col = conv_forward_fast
conv_backward_im2col = conv_backward_fast
conv_forward_strides = conv_forward_fast
conv_backward_strides = conv_backward_fast
max_pool_forward_reshape = max_pool_forward_fast
max_pool_backward_reshape = max_pool_backward_fast
max_pool_forward_im2col = max_pool_forward_fast
max_pool_backward_im2col = max_pool_backward_fast
