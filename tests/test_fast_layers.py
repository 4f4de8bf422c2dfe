"""Tests of asgn3/fast_layers.py, asgn3/im2col.py and the compiled asgn3.im2col_cython.

Fast convolution and pooling must equal the naive layers (float64 within 1e-9, float32 within the
rounding bound of float32 sums), the numpy fallback must equal the Cython path, and importing without the
extension must work with one warning line naming the build command.
"""

import multiprocessing
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from asgn3 import fast_layers, layers
from asgn3 import im2col as im2col_numpy

EXACT_TOL = 1e-9

# (N, C, H, W, F, HH, WW, stride, pad): stride 1/2/3, pad 0/1/2, odd and even sizes, N=1, C=1, non-square
# filters, and sizes where (H + 2 pad - HH) is not a multiple of the stride (the output is floored).
CONV_SHAPES = [
    (2, 3, 8, 8, 4, 3, 3, 1, 1),
    (2, 3, 9, 7, 4, 3, 3, 2, 1),
    (1, 2, 7, 7, 3, 5, 5, 2, 2),
    (3, 1, 6, 5, 2, 3, 2, 1, 0),
    (1, 1, 5, 5, 1, 1, 1, 1, 0),
    (2, 4, 11, 9, 3, 3, 3, 2, 2),
    (2, 2, 10, 10, 5, 4, 4, 3, 1),
    (1, 3, 4, 6, 2, 5, 3, 1, 2),
    (2, 2, 7, 6, 3, 5, 3, 1, 1),  # stride 1, W' = W but H' < H
    (2, 2, 4, 1, 3, 3, 3, 1, 1),  # one column: every tap off the centre reads only padding
    (3, 2, 5, 7, 5, 3, 3, 1, 1),  # odd sizes: Winograd's last 2x2 tiles stick out of the image
    (1, 1, 1, 1, 1, 3, 3, 1, 1),  # one pixel
]
CONV_IDS = ["N{}C{}H{}W{}F{}k{}x{}s{}p{}".format(*shape) for shape in CONV_SHAPES]

# (N, C, H, W, pool_height, pool_width, stride): tiling pools (the reshape path) and the rest (im2col).
POOL_SHAPES = [
    (2, 3, 8, 8, 2, 2, 2),
    (1, 1, 6, 9, 3, 3, 3),
    (2, 3, 7, 9, 2, 2, 2),
    (2, 2, 7, 8, 3, 2, 2),
    (1, 3, 5, 5, 3, 3, 1),
    (3, 1, 9, 6, 2, 3, 2),
]


def conv_problem(shape, dtype=np.float64, seed=0):
    """Random x, w, b, conv_param and upstream derivative for one CONV_SHAPES entry."""
    N, C, H, W, F, HH, WW, stride, pad = shape
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, HH, WW)), rng.standard_normal(F)
    conv_param = {"stride": stride, "pad": pad}
    stride, pad, H_out, W_out = layers.conv_output_shape(x.shape, w.shape, b.shape, conv_param)
    dout = rng.standard_normal((N, F, H_out, W_out))
    return [a.astype(dtype) for a in (x, w, b, dout)] + [conv_param]


def pool_problem(shape, dtype=np.float64, seed=0):
    """Random x (with ties: values on a coarse grid), pool_param and upstream derivative."""
    N, C, H, W, ph, pw, stride = shape
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, (N, C, H, W)).astype(dtype)  # many ties: both paths must pick the first max
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    dout = rng.standard_normal((N, C, 1 + (H - ph) // stride, 1 + (W - pw) // stride)).astype(dtype)
    return x, pool_param, dout


@pytest.fixture
def numpy_fallback(monkeypatch):
    """Switch the fast layers to the pure-numpy im2col/col2im for one test."""
    monkeypatch.setattr(fast_layers, "USE_CYTHON", False)


@pytest.fixture(params=["im2col", "shifted", "winograd"])
def conv_way(request, monkeypatch):
    """Run one test with each of the extension's three ways of convolving, whatever the shapes would choose:
    im2col and one product, one shifted product per filter tap, or Winograd's F(2x2, 3x3) (only 3x3 filters
    at stride 1 and pad 1; other shapes take im2col under this name)."""
    monkeypatch.setattr(
        fast_layers,
        "_winograd_suits",
        lambda x_shape, w_shape, pad, stride: (
            request.param == "winograd" and fast_layers._winograd_applies(w_shape, pad, stride)
        ),
    )
    monkeypatch.setattr(fast_layers, "_shifted_products_suit", lambda *shapes: request.param == "shifted")
    return request.param


def test_extension_is_built_and_used():
    assert fast_layers.im2col_cython is not None, f"build the extension: {fast_layers.BUILD_COMMAND}"
    assert fast_layers.USE_CYTHON


# --------------------------------------------------------------------------------------------------------
# Fast == naive
# --------------------------------------------------------------------------------------------------------


def assert_fast_equals_naive(x, w, b, dout, conv_param):
    """conv_forward_fast and conv_backward_fast give the naive layer's output, dx, dw and db."""
    out_naive, cache_naive = layers.conv_forward_naive(x, w, b, conv_param)
    out_fast, cache_fast = fast_layers.conv_forward_fast(x, w, b, conv_param)
    np.testing.assert_allclose(out_fast, out_naive, rtol=EXACT_TOL, atol=EXACT_TOL)
    grads_naive = layers.conv_backward_naive(dout, cache_naive)
    grads_fast = fast_layers.conv_backward_fast(dout, cache_fast)
    for name, fast, naive in zip(("dx", "dw", "db"), grads_fast, grads_naive, strict=True):
        assert fast.shape == naive.shape, name
        np.testing.assert_allclose(fast, naive, rtol=EXACT_TOL, atol=EXACT_TOL, err_msg=name)


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=CONV_IDS)
def test_conv_fast_equals_naive_float64(shape, conv_way):
    x, w, b, dout, conv_param = conv_problem(shape)
    assert_fast_equals_naive(x, w, b, dout, conv_param)


@pytest.mark.parametrize("block_images", [1, 2, 5])
def test_conv_fast_equals_naive_in_blocks_of_images(monkeypatch, block_images):
    # The extension runs a block of images at a time: blocks of one image, blocks that leave a partial
    # one at the end (5 = 2 + 2 + 1) and one block for all must give the naive layer's numbers.
    shape = (5, 3, 9, 7, 4, 3, 3, 2, 1)
    x, w, b, dout, conv_param = conv_problem(shape)
    positions = dout.shape[2] * dout.shape[3]
    monkeypatch.setattr(fast_layers.im2col_cython, "BLOCK_COLUMNS", block_images * positions)
    assert fast_layers.im2col_cython.block_images(5, 3 * 3 * 3, positions) == block_images
    assert_fast_equals_naive(x, w, b, dout, conv_param)


@pytest.mark.parametrize("block_images", [1, 2, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_shifted_products_equal_naive_in_blocks_of_images(monkeypatch, block_images, stride):
    # The shifted products take a block of images at a time, the images one after the other in each row of
    # the phase buffer: a valid output pixel must read only its own image, whatever the block.
    monkeypatch.setattr(fast_layers, "_shifted_products_suit", lambda *shapes: True)
    x, w, b, dout, conv_param = conv_problem((5, 3, 9, 7, 4, 3, 3, stride, 1))
    plane = -(-11 // stride) * -(-9 // stride)  # the phase grid of a 9x7 image padded by 1
    monkeypatch.setattr(fast_layers.im2col_cython, "SHIFTED_BLOCK_COLUMNS", block_images * plane)
    assert fast_layers.im2col_cython.shifted_block_images(5, 3, stride, 11, 9) == block_images
    assert_fast_equals_naive(x, w, b, dout, conv_param)


def test_extension_shifted_backward_overwrites_whatever_dx_and_dw_held():
    # conv_backward_fast hands the extension uninitialised dx and dw_taps: both must be overwritten.
    x, w, b, dout, conv_param = conv_problem((3, 2, 9, 7, 4, 3, 3, 2, 1))
    _, cache = layers.conv_forward_naive(x, w, b, conv_param)
    dx_naive, dw_naive, _ = layers.conv_backward_naive(dout, cache)
    w_taps = fast_layers._filters_by_tap(w)
    dx, dw_taps = np.full_like(x, np.nan), np.full_like(w_taps, np.nan)
    fast_layers.im2col_cython.conv_backward_shifted(dout, x, w_taps, dx, dw_taps, 3, 3, 1, 2)
    np.testing.assert_allclose(dx, dx_naive, rtol=EXACT_TOL, atol=EXACT_TOL)
    np.testing.assert_allclose(dw_taps, fast_layers._filters_by_tap(dw_naive), rtol=EXACT_TOL, atol=EXACT_TOL)


@pytest.mark.parametrize("block_images", [1, 2, 5])
def test_conv_winograd_equals_naive_in_blocks_of_images(monkeypatch, block_images):
    # Winograd's way takes a block of images at a time, their tiles numbered one image after the other:
    # blocks of one image, blocks that leave a partial one at the end (5 = 2 + 2 + 1) and one for all.
    monkeypatch.setattr(fast_layers, "_winograd_suits", lambda *shapes: True)
    x, w, b, dout, conv_param = conv_problem((5, 3, 9, 7, 4, 3, 3, 1, 1))
    tiles_per_image = 5 * 4  # 9x7: 5 tiles high, 4 wide
    monkeypatch.setattr(fast_layers.im2col_cython, "WINOGRAD_BLOCK_TILES", block_images * tiles_per_image)
    assert fast_layers.im2col_cython.winograd_block_images(5, tiles_per_image) == block_images
    assert_fast_equals_naive(x, w, b, dout, conv_param)


def test_extension_winograd_backward_overwrites_whatever_dx_and_dw_held():
    # conv_backward_fast hands the extension uninitialised dx and dw: both must be overwritten.
    x, w, b, dout, conv_param = conv_problem((3, 2, 9, 7, 4, 3, 3, 1, 1))
    _, cache = layers.conv_forward_naive(x, w, b, conv_param)
    dx_naive, dw_naive, _ = layers.conv_backward_naive(dout, cache)
    dx, d_transformed = np.full_like(x, np.nan), np.full((16, 4, 2), np.nan)
    fast_layers.im2col_cython.conv_backward_winograd(
        dout, x, fast_layers._winograd_filters(w), dx, d_transformed, 3, 3, 1, 1
    )
    np.testing.assert_allclose(dx, dx_naive, rtol=EXACT_TOL, atol=EXACT_TOL)
    dw = fast_layers._filters_from_winograd(d_transformed, w.shape)
    np.testing.assert_allclose(dw, dw_naive, rtol=EXACT_TOL, atol=EXACT_TOL)


@pytest.mark.parametrize("geometry", [(3, 3, 1, 2), (3, 3, 0, 1), (5, 5, 2, 1)])
def test_extension_winograd_rejects_other_geometries(geometry):
    x, w, b, dout, _ = conv_problem((1, 2, 6, 6, 3, 3, 3, 1, 1))
    out = np.empty_like(dout)
    w_winograd = fast_layers._winograd_filters(w)
    with pytest.raises(ValueError, match="3x3 filters at stride 1 and pad 1"):
        fast_layers.im2col_cython.conv_forward_winograd(x, w_winograd, b, out, *geometry)


def test_conv_winograd_gradients_numerically(layer_grad_errors, monkeypatch):
    monkeypatch.setattr(fast_layers, "_winograd_suits", lambda *shapes: True)
    x, w, b, _, conv_param = conv_problem((3, 2, 5, 7, 5, 3, 3, 1, 1), seed=3)  # odd sizes: tiles stick out
    errors = layer_grad_errors(
        fast_layers.conv_forward_fast, fast_layers.conv_backward_fast, [x, w, b], conv_param, h=1e-3
    )  # linear in each input: any step is exact
    assert max(errors) < 1e-7


@pytest.mark.parametrize(
    ("N", "C", "F", "field", "stride", "pad", "size", "way"),
    [
        (50, 64, 64, 3, 1, 1, 32, "winograd"),  # the classic CNN's 64->64 layer
        (50, 64, 64, 3, 1, 1, 8, "winograd"),  # the shipped model's 64->64 layer, 3,200 positions
        (50, 128, 128, 3, 1, 1, 4, "im2col"),  # its 128->128 layer: 800 positions, too few
        (1, 64, 64, 3, 1, 1, 32, "shifted"),  # batch 1: 1,024 positions
        (50, 32, 32, 3, 1, 1, 16, "shifted"),  # few channels: Winograd's transforms do not pay
        (50, 64, 32, 3, 1, 1, 32, "shifted"),
        (50, 128, 256, 3, 2, 1, 16, "im2col"),  # stride 2
        (50, 64, 64, 3, 1, 0, 32, "shifted"),  # no padding
        (50, 64, 64, 5, 1, 2, 32, "shifted"),  # 5x5 filters
    ],
)
def test_conv_takes_winograd_where_measured_faster(N, C, F, field, stride, pad, size, way):
    out_size = (size + 2 * pad - field) // stride + 1
    chosen = fast_layers.way_name((N, C, size, size), (F, C, field, field), pad, stride, out_size, out_size)
    assert chosen == way


@pytest.mark.parametrize(
    ("C", "F", "field", "stride", "pad", "size", "shifted"),
    [
        (64, 64, 3, 1, 1, 32, True),  # the classic CNN's 64->64 layer: grid 13% over the output
        (3, 16, 5, 2, 2, 64, True),  # the shipped model's first layer: few channels, but few filters too
        (32, 32, 3, 1, 1, 16, True),  # stride 1, grid 27% over
        (128, 256, 3, 2, 1, 16, False),  # stride 2, grid 27% over
        (64, 64, 3, 1, 1, 8, False),  # grid 56% over
        (3, 64, 5, 2, 2, 64, False),  # the classic first layer: 3 channels, 64 filters
        (3, 32, 3, 2, 0, 225, False),  # EfficientNet-Lite0's stem
    ],
)
def test_conv_takes_the_way_measured_faster_for_its_shapes(C, F, field, stride, pad, size, shifted):
    out_size = (size + 2 * pad - field) // stride + 1
    chosen = fast_layers._shifted_products_suit(
        (50, C, size, size), (F, C, field, field), pad, stride, out_size, out_size
    )
    assert chosen == shifted


@pytest.mark.parametrize(
    ("field", "stride", "pad", "band"), [(3, 1, 1, 1), (3, 1, 1, 4), (3, 1, 1, 9), (3, 2, 1, 2), (5, 1, 2, 1)]
)
def test_conv_fast_equals_naive_in_bands_of_output_rows(monkeypatch, field, stride, pad, band):
    # One image too big for BAND_ENTRIES is taken in bands of output rows (the product written straight
    # into the output, dout read in place): single rows, bands that leave a partial one at the end
    # (9 = 4 + 4 + 1 output rows; with stride 2, 5 = 2 + 2 + 1) and one band for the whole image; with a
    # 5x5 field, one-row bands that lie wholly in the padding for the outer filter rows.
    shape = (3, 2, 9, 7, 4, field, field, stride, pad)
    x, w, b, dout, conv_param = conv_problem(shape)
    rows, H_out, W_out = 2 * field * field, dout.shape[2], dout.shape[3]
    monkeypatch.setattr(fast_layers.im2col_cython, "BLOCK_COLUMNS", 1)
    monkeypatch.setattr(fast_layers.im2col_cython, "BAND_ENTRIES", rows * W_out * band)
    assert fast_layers.im2col_cython.block_images(3, rows, H_out * W_out) == 1
    assert fast_layers.im2col_cython.band_rows(3, rows, H_out, W_out) == band
    assert_fast_equals_naive(x, w, b, dout, conv_param)


@pytest.mark.parametrize("threads", [2, 3])
def test_conv_fast_equals_naive_with_the_batch_shared_between_threads(monkeypatch, threads, conv_way):
    # With BLAS allowed several threads and small products, the batch is split into one share per thread
    # (5 images: 2 + 3, or 2 + 1 + 2), each share's dw summed on its own; the numbers stay the naive ones.
    monkeypatch.setattr(fast_layers, "allowed_threads", lambda: threads)
    monkeypatch.setattr(fast_layers, "machine_is_busy", lambda: False)
    monkeypatch.setattr(fast_layers, "MIN_MULTIPLY_ADDS_PER_THREAD", 1)
    shape = (5, 3, 9, 7, 4, 3, 3, 1, 1)
    x, w, b, dout, conv_param = conv_problem(shape)
    shares = fast_layers._batch_shares(5, (4, 27), 9, 7)
    assert len(shares) == threads and [s.start for s in shares][0] == 0 and shares[-1].stop == 5
    assert all(a.stop == b.start for a, b in zip(shares, shares[1:], strict=False))
    assert_fast_equals_naive(x, w, b, dout, conv_param)


def test_conv_shares_run_here_when_no_thread_can_be_started(monkeypatch):
    class NoThreads:
        def submit(self, *args):
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(fast_layers, "_pool", NoThreads())
    monkeypatch.setattr(fast_layers, "allowed_threads", lambda: 2)
    monkeypatch.setattr(fast_layers, "machine_is_busy", lambda: False)
    monkeypatch.setattr(fast_layers, "MIN_MULTIPLY_ADDS_PER_THREAD", 1)
    x, w, b, dout, conv_param = conv_problem((4, 2, 6, 6, 3, 3, 3, 1, 1))
    assert_fast_equals_naive(x, w, b, dout, conv_param)


def test_conv_shared_between_threads_works_in_a_forked_child(monkeypatch):
    # The parent's pool has threads that a forked child lacks: the child must make its own pool.
    monkeypatch.setattr(fast_layers, "allowed_threads", lambda: 2)
    monkeypatch.setattr(fast_layers, "machine_is_busy", lambda: False)
    monkeypatch.setattr(fast_layers, "MIN_MULTIPLY_ADDS_PER_THREAD", 1)
    x, w, b, dout, conv_param = conv_problem((4, 2, 6, 6, 3, 3, 3, 1, 1))
    expected, _ = fast_layers.conv_forward_fast(x, w, b, conv_param)  # the parent's pool now exists
    assert fast_layers._pool is not None
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as children:
        result = children.apply_async(fast_layers.conv_forward_fast, (x, w, b, conv_param))
        out, _ = result.get(timeout=20)
    np.testing.assert_array_equal(out, expected)


def test_conv_batch_stays_whole_on_one_thread_or_for_tiny_work(monkeypatch):
    monkeypatch.setattr(fast_layers, "machine_is_busy", lambda: False)
    monkeypatch.setattr(fast_layers, "allowed_threads", lambda: 1)
    assert fast_layers._batch_shares(50, (64, 576), 32, 32) == [slice(0, 50)]
    monkeypatch.setattr(fast_layers, "allowed_threads", lambda: 2)
    assert len(fast_layers._batch_shares(50, (64, 576), 32, 32)) == 2
    assert fast_layers._batch_shares(2, (4, 27), 3, 3) == [slice(0, 2)]  # 2 * 4 * 27 * 9 multiply-adds
    monkeypatch.setattr(fast_layers, "machine_is_busy", lambda: True)  # a busy machine: one share
    assert fast_layers._batch_shares(50, (64, 576), 32, 32) == [slice(0, 50)]


@pytest.mark.parametrize("transposed_below", [1, 1000], ids=["dw in place", "dw transposed"])
def test_extension_backward_overwrites_whatever_dx_and_dw_held(monkeypatch, transposed_below):
    # conv_backward_fast hands the extension uninitialised dx and dw: every block must zero its part of dx
    # first, and dw is overwritten, accumulated in place (many filters) or transposed (few).
    monkeypatch.setattr(fast_layers.im2col_cython, "TRANSPOSED_DW_BELOW", transposed_below)
    x, w, b, dout, conv_param = conv_problem((3, 2, 9, 7, 4, 3, 3, 2, 1))
    _, cache = layers.conv_forward_naive(x, w, b, conv_param)
    dx_naive, dw_naive, _ = layers.conv_backward_naive(dout, cache)
    dx, dw_rows = np.full_like(x, np.nan), np.full((4, 2 * 3 * 3), np.nan)
    fast_layers.im2col_cython.conv_backward(dout, x, w.reshape(4, -1), dx, dw_rows, 3, 3, 1, 2)
    np.testing.assert_allclose(dx, dx_naive, rtol=EXACT_TOL, atol=EXACT_TOL)
    np.testing.assert_allclose(dw_rows.reshape(w.shape), dw_naive, rtol=EXACT_TOL, atol=EXACT_TOL)


def float32_bound(n_terms, magnitude):
    """
    The classic forward-error bound of a float32 sum of n_terms products: |computed - exact| <= gamma
    sum |terms| with gamma = n_terms * eps. `magnitude` is sum |terms|, obtained by running the naive
    float64 layer on absolute values. eps = 2**-23 (twice the unit roundoff) covers the rounding of the
    products, the bias and the partial sums of any summation order (BLAS blocking, col2im).
    """
    return (n_terms + 2) * np.finfo(np.float32).eps * magnitude


# Winograd's input and output transforms as matrices (Lavin and Gray 2016; the extension writes them out
# as additions), for the rounding bound of that way.
WINOGRAD_B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
WINOGRAD_A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)
# The roundings Winograd's transforms add to a chain of sums: at most 2 in the input's or dout's transform,
# 4 in the filters', 4 in the output's or dx's (and 3 more where the tiles of dx overlap), 4 in dw's.
WINOGRAD_EXTRA_ROUNDINGS = 16


def winograd_magnitudes(x, w, b, dout):
    """
    sum |terms| of every entry of out, dx and dw as the Winograd way evaluates them: its steps run on
    absolute values with the transforms' absolute matrices, in float64. Inputs as for conv_forward_naive,
    3x3 filters at stride 1 and pad 1.

    Returns (out, dx, dw) of the layer's shapes.
    """
    B_T, G, A_T = np.abs(WINOGRAD_B_T), np.abs(fast_layers.WINOGRAD_G), np.abs(WINOGRAD_A_T)
    x, w, b, dout = (np.abs(a.astype(np.float64)) for a in (x, w, b, dout))
    (N, C, H, W), F = x.shape, w.shape[0]
    high, wide = (H + 1) // 2, (W + 1) // 2
    padded = np.zeros((N, C, 2 * high + 2, 2 * wide + 2))
    padded[:, :, 1 : H + 1, 1 : W + 1] = x
    d = np.lib.stride_tricks.sliding_window_view(padded, (4, 4), axis=(2, 3))[:, :, ::2, ::2]  # 4x4 tiles
    V, U = B_T @ d @ B_T.T, G @ w @ G.T
    out = A_T @ np.einsum("fcab,ncyxab->nfyxab", U, V) @ A_T.T  # (N, F, high, wide, 2, 2)
    out = out.transpose(0, 1, 2, 4, 3, 5).reshape(N, F, 2 * high, 2 * wide)[:, :, :H, :W] + b[:, None, None]
    dY = np.zeros((N, F, 2 * high, 2 * wide))
    dY[:, :, :H, :W] = dout
    dM = A_T.T @ dY.reshape(N, F, high, 2, wide, 2).transpose(0, 1, 2, 4, 3, 5) @ A_T
    dw = G.T @ np.einsum("nfyxab,ncyxab->fcab", dM, V) @ G
    dd = B_T.T @ np.einsum("fcab,nfyxab->ncyxab", U, dM) @ B_T
    dx = np.zeros_like(padded)
    for i in range(4):
        for j in range(4):
            dx[:, :, i : i + 2 * high : 2, j : j + 2 * wide : 2] += dd[..., i, j]
    return out, dx[:, :, 1 : H + 1, 1 : W + 1], dw


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=CONV_IDS)
def test_conv_fast_float32_within_rounding_bound_of_naive_float64(shape, conv_way):
    x, w, b, dout, conv_param = conv_problem(shape, dtype=np.float32)
    F, C, HH, WW = w.shape
    N, _, H_out, W_out = dout.shape
    out32, cache32 = fast_layers.conv_forward_fast(x, w, b, conv_param)
    grads32 = fast_layers.conv_backward_fast(dout, cache32)
    assert out32.dtype == np.float32 and all(g.dtype == np.float32 for g in grads32)
    assert cache32[0].dtype == cache32[1].dtype == np.float32  # x and w are not upcast in the cache either

    # The same float32 values, in float64 (exact): the reference and sum |terms| for the bound.
    x64, w64, b64, dout64 = (a.astype(np.float64) for a in (x, w, b, dout))
    out64, cache64 = layers.conv_forward_naive(x64, w64, b64, conv_param)
    abs_out, abs_cache = layers.conv_forward_naive(np.abs(x64), np.abs(w64), np.abs(b64), conv_param)
    grads64 = layers.conv_backward_naive(dout64, cache64)
    magnitudes = [abs_out, *layers.conv_backward_naive(np.abs(dout64), abs_cache)]
    n_terms = {"out": C * HH * WW + 1, "dx": F * HH * WW, "dw": N * H_out * W_out, "db": N * H_out * W_out}
    winograd = fast_layers._winograd_applies(w.shape, conv_param["pad"], conv_param["stride"])
    if conv_way == "winograd" and winograd:
        magnitudes[:3] = winograd_magnitudes(x, w, b, dout)
        for name in ("out", "dx", "dw"):
            n_terms[name] += WINOGRAD_EXTRA_ROUNDINGS
    pairs = zip(("out", "dx", "dw", "db"), (out32, *grads32), (out64, *grads64), magnitudes, strict=True)
    for name, fast, exact, magnitude in pairs:
        error = np.abs(fast.astype(np.float64) - exact)
        bound = float32_bound(n_terms[name], magnitude)
        print(f"{name}: largest error {error.max():.2e}, largest bound {bound.max():.2e}")
        assert np.all(error <= bound), name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_max_pool_fast_equals_naive(shape, dtype):
    x, pool_param, dout = pool_problem(shape, dtype)
    out_naive, cache_naive = layers.max_pool_forward_naive(x, pool_param)
    out_fast, cache_fast = fast_layers.max_pool_forward_fast(x, pool_param)
    assert out_fast.dtype == dtype
    np.testing.assert_array_equal(out_fast, out_naive)  # a max is exact
    dx_naive = layers.max_pool_backward_naive(dout, cache_naive)
    dx_fast = fast_layers.max_pool_backward_fast(dout, cache_fast)
    assert dx_fast.dtype == dtype and dx_fast.shape == x.shape
    # Overlapping windows add up to ph*pw derivatives into one entry, in another order than the naive loop:
    # in float32 that changes the last bits, bounded by ph*pw roundings of the largest entry.
    ph, pw = pool_param["pool_height"], pool_param["pool_width"]
    tol = EXACT_TOL if dtype == np.float64 else ph * pw * np.finfo(np.float32).eps * np.abs(dx_naive).max()
    np.testing.assert_allclose(dx_fast, dx_naive, rtol=0, atol=tol)


def test_conv_fast_gradients_numerically(layer_grad_errors, conv_way):
    x, w, b, _, conv_param = conv_problem(CONV_SHAPES[1], seed=3)
    errors = layer_grad_errors(
        fast_layers.conv_forward_fast, fast_layers.conv_backward_fast, [x, w, b], conv_param, h=1e-3
    )  # linear in each input: any step is exact
    assert max(errors) < 1e-7


def test_max_pool_fast_gradient_numerically(layer_grad_errors):
    rng = np.random.default_rng(4)
    x = rng.permutation(2 * 2 * 7 * 7).reshape(2, 2, 7, 7) * 0.01  # distinct values: no ties
    pool_param = {"pool_height": 3, "pool_width": 3, "stride": 2}
    errors = layer_grad_errors(
        fast_layers.max_pool_forward_fast, fast_layers.max_pool_backward_fast, [x], pool_param
    )
    assert max(errors) < 1e-7


# --------------------------------------------------------------------------------------------------------
# The numpy fallback == the Cython path
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=CONV_IDS)
def test_im2col_numpy_equals_cython(shape, dtype):
    x, w, _, _, conv_param = conv_problem(shape, dtype)
    HH, WW = w.shape[2:]
    pad, stride = conv_param["pad"], conv_param["stride"]
    cols_cython = fast_layers.im2col_cython.im2col(x, HH, WW, pad, stride)
    cols_numpy = im2col_numpy.im2col(x, HH, WW, pad, stride)
    assert cols_cython.dtype == cols_numpy.dtype == dtype
    np.testing.assert_array_equal(cols_cython, cols_numpy)
    dcols = np.random.default_rng(1).standard_normal(cols_numpy.shape).astype(dtype)
    dx_cython = fast_layers.im2col_cython.col2im(dcols, x.shape, HH, WW, pad, stride)
    dx_numpy = im2col_numpy.col2im(dcols, x.shape, HH, WW, pad, stride)
    assert dx_cython.dtype == dx_numpy.dtype == dtype
    # Both add the contributions to each entry in the same order, so the results are identical.
    np.testing.assert_array_equal(dx_cython, dx_numpy)


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), c> == <x, col2im(c)> for every x and c: col2im is the transpose of the gather."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col_numpy.im2col(x, 3, 2, 1, 2)
    c = rng.standard_normal(cols.shape)
    assert np.isclose(np.sum(cols * c), np.sum(x * im2col_numpy.col2im(c, x.shape, 3, 2, 1, 2)), rtol=1e-12)


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=CONV_IDS)
def test_classic_im2col_indices_are_im2col_with_the_image_fastest(shape):
    x, w, _, _, conv_param = conv_problem(shape)
    N, HH, WW = x.shape[0], w.shape[2], w.shape[3]
    pad, stride = conv_param["pad"], conv_param["stride"]
    cols = im2col_numpy.im2col(x, HH, WW, pad, stride)  # columns (n, y, x)
    classic = im2col_numpy.im2col_indices(x, HH, WW, padding=pad, stride=stride)  # columns (y, x, n)
    np.testing.assert_array_equal(
        classic, cols.reshape(len(cols), N, -1).transpose(0, 2, 1).reshape(len(cols), -1)
    )
    k, i, j = im2col_numpy.get_im2col_indices(x.shape, HH, WW, pad, stride)
    assert k.shape == (len(cols), 1) and i.shape == j.shape == (len(cols), cols.shape[1] // N)
    # col2im_indices is the adjoint: <im2col(x), c> == <x, col2im(c)>
    c = np.random.default_rng(5).standard_normal(classic.shape)
    back = im2col_numpy.col2im_indices(c, x.shape, HH, WW, padding=pad, stride=stride)
    assert back.shape == x.shape
    assert np.isclose(np.sum(classic * c), np.sum(x * back), rtol=1e-12)


def test_classic_fast_layer_names_run_the_fast_layers():
    x, w, b, dout, conv_param = conv_problem(CONV_SHAPES[0])
    expected, _ = layers.conv_forward_naive(x, w, b, conv_param)
    for forward, backward in (
        (fast_layers.conv_forward_im2col, fast_layers.conv_backward_im2col),
        (fast_layers.conv_forward_strides, fast_layers.conv_backward_strides),
    ):
        out, cache = forward(x, w, b, conv_param)
        np.testing.assert_allclose(out, expected, rtol=EXACT_TOL, atol=EXACT_TOL)
        assert [g.shape for g in backward(dout, cache)] == [x.shape, w.shape, b.shape]
    pool_x, pool_param, pool_dout = pool_problem(POOL_SHAPES[0])
    pooled, _ = layers.max_pool_forward_naive(pool_x, pool_param)
    for forward, backward in (
        (fast_layers.max_pool_forward_reshape, fast_layers.max_pool_backward_reshape),
        (fast_layers.max_pool_forward_im2col, fast_layers.max_pool_backward_im2col),
    ):
        out, cache = forward(pool_x, pool_param)
        np.testing.assert_array_equal(out, pooled)
        assert backward(pool_dout, cache).shape == pool_x.shape


def run_conv_and_pool(x, w, b, dout, conv_param, pool_param):
    """Every output and gradient of the fast conv and pool layers, in a list."""
    out, cache = fast_layers.conv_forward_fast(x, w, b, conv_param)
    results = [out, *fast_layers.conv_backward_fast(dout, cache)]
    pooled, pool_cache = fast_layers.max_pool_forward_fast(out, pool_param)
    results += [pooled, fast_layers.max_pool_backward_fast(np.ones_like(pooled), pool_cache)]
    return results


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pool", [(2, 2, 2), (3, 3, 2)])
def test_fast_layers_numpy_fallback_equals_cython(monkeypatch, dtype, pool):
    x, w, b, dout, conv_param = conv_problem((2, 3, 9, 8, 4, 3, 3, 1, 1), dtype)
    pool_param = dict(zip(("pool_height", "pool_width", "stride"), pool, strict=True))
    with_cython = run_conv_and_pool(x, w, b, dout, conv_param, pool_param)
    monkeypatch.setattr(fast_layers, "USE_CYTHON", False)
    with_numpy = run_conv_and_pool(x, w, b, dout, conv_param, pool_param)
    # The extension multiplies through scipy's BLAS a block of images at a time, the fallback through
    # numpy's in one product: the same sums, possibly added in another order, so equal to rounding.
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b_ in zip(with_cython, with_numpy, strict=True):
        assert a.dtype == b_.dtype == dtype
        np.testing.assert_allclose(a, b_, rtol=tol, atol=tol * np.abs(b_).max())


def test_import_without_the_extension_warns_once_and_falls_back():
    """Block the compiled module in a fresh interpreter: the import warns in one line and still works."""
    script = textwrap.dedent("""
        import sys
        sys.modules["asgn3.im2col_cython"] = None  # makes `from asgn3 import im2col_cython` fail
        import numpy as np
        from asgn3 import fast_layers, layers
        assert fast_layers.im2col_cython is None and not fast_layers.USE_CYTHON
        rng = np.random.default_rng(0)
        x, w, b = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
        fast, _ = fast_layers.conv_forward_fast(x, w, b, {"stride": 2, "pad": 1})
        naive, _ = layers.conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
        assert np.allclose(fast, naive, rtol=1e-9, atol=1e-9)
        print("fallback ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fallback ok"
    print(result.stderr)
    warning_lines = [line for line in result.stderr.splitlines() if "Warning" in line]
    assert len(warning_lines) == 1
    assert "im2col_cython is not usable" in warning_lines[0]
    assert "pip install -e ." in warning_lines[0]
    assert "cd asgn3 && python setup.py build_ext --inplace" in warning_lines[0]


def test_an_out_of_date_extension_warns_and_falls_back():
    """A build from an older checkout (without the functions the layers call now) is not used."""
    script = textwrap.dedent("""
        import sys, types
        sys.modules["asgn3.im2col_cython"] = types.ModuleType("asgn3.im2col_cython")  # an old build
        from asgn3 import fast_layers
        assert fast_layers.im2col_cython is None and not fast_layers.USE_CYTHON
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "out of date, it lacks im2col, col2im, block_images" in result.stderr
    assert "pip install -e ." in result.stderr


def test_classic_build_command_builds_the_extension_in_place(tmp_path):
    """`cd asgn3 && python setup.py build_ext --inplace`, on a copy of the two files in a scratch folder (so
    that the kit's own compiled module is left alone), builds a module that gives numpy's numbers."""
    source_dir = Path(fast_layers.__file__).resolve().parent
    package = tmp_path / "asgn3"
    package.mkdir()
    for name in ("setup.py", "im2col_cython.pyx"):
        shutil.copy(source_dir / name, package / name)
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    built = [
        path
        for path in package.iterdir()
        if path.name.startswith("im2col_cython.") and path.suffix in (".so", ".pyd")
    ]
    assert len(built) == 1, sorted(path.name for path in package.iterdir())
    script = textwrap.dedent(f"""
        import importlib.util
        import numpy as np
        from asgn3 import im2col
        spec = importlib.util.spec_from_file_location("asgn3.im2col_cython", {str(built[0])!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
        assert np.array_equal(module.im2col(x, 3, 3, 1, 2), im2col.im2col(x, 3, 3, 1, 2))
        print("classic build ok")
    """)
    check = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "classic build ok"


def test_use_cython_without_the_extension_says_how_to_build(monkeypatch):
    monkeypatch.setattr(fast_layers, "im2col_cython", None)
    x, w, b, _, conv_param = conv_problem(CONV_SHAPES[0])
    with pytest.raises(RuntimeError, match="build_ext --inplace"):
        fast_layers.conv_forward_fast(x, w, b, conv_param)


# --------------------------------------------------------------------------------------------------------
# dtypes and errors
# --------------------------------------------------------------------------------------------------------


def test_conv_fast_promotes_integer_and_mixed_inputs_to_float64():
    x, w, b, _, conv_param = conv_problem(CONV_SHAPES[0])
    out_int, _ = fast_layers.conv_forward_fast(x.round().astype(int), w, b, conv_param)
    out_mixed, _ = fast_layers.conv_forward_fast(x.astype(np.float32), w, b, conv_param)
    assert out_int.dtype == out_mixed.dtype == np.float64


def test_conv_fast_accepts_non_contiguous_input():
    x, w, b, dout, conv_param = conv_problem(CONV_SHAPES[0])
    x_view = np.asfortranarray(x)
    out_view, _ = fast_layers.conv_forward_fast(x_view, w, b, conv_param)
    out, _ = fast_layers.conv_forward_fast(x, w, b, conv_param)
    np.testing.assert_array_equal(out_view, out)
    assert out.flags.c_contiguous


FAST_MISMATCHES = [
    (
        "conv channels",
        fast_layers.conv_forward_fast,
        (np.zeros((2, 3, 5, 5)), np.zeros((4, 2, 3, 3)), np.zeros(4), {"stride": 1, "pad": 1}),
        ["(2, 3, 5, 5)", "(4, 2, 3, 3)"],
    ),
    (
        "conv bias",
        fast_layers.conv_forward_fast,
        (np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3)), np.zeros(5), {"stride": 1, "pad": 1}),
        ["(5,)", "(4, 3, 3, 3)"],
    ),
    (
        "conv x 2-d",
        fast_layers.conv_forward_fast,
        (np.zeros((2, 75)), np.zeros((4, 3, 5, 5)), np.zeros(4), {"stride": 1, "pad": 0}),
        ["(2, 75)"],
    ),
    (
        "pool x 3-d",
        fast_layers.max_pool_forward_fast,
        (np.zeros((3, 8, 8)), {"pool_height": 2, "pool_width": 2, "stride": 2}),
        ["(3, 8, 8)"],
    ),
    (
        "pool too big",
        fast_layers.max_pool_forward_fast,
        (np.zeros((1, 2, 3, 3)), {"pool_height": 4, "pool_width": 2, "stride": 2}),
        ["(1, 2, 3, 3)"],
    ),
]


@pytest.mark.parametrize("case, forward, args, shapes", FAST_MISMATCHES, ids=[m[0] for m in FAST_MISMATCHES])
def test_fast_forward_with_mismatched_shapes_names_them(case, forward, args, shapes):
    with pytest.raises(ValueError) as raised:
        forward(*args)
    print(f"{case}: {raised.value}")
    for shape in shapes:
        assert shape in str(raised.value)


def test_conv_backward_fast_rejects_a_dout_of_the_wrong_shape():
    x, w, b, dout, conv_param = conv_problem(CONV_SHAPES[0])
    _, cache = fast_layers.conv_forward_fast(x, w, b, conv_param)
    with pytest.raises(ValueError, match=r"\(2, 4, 8, 7\)"):
        fast_layers.conv_backward_fast(dout[:, :, :, :7], cache)
