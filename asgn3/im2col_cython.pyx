# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col, col2im and the whole fast convolution in Cython, for float32 and float64 (fused types: float32
stays float32).

The layout is the one of asgn3/im2col.py (the pure-numpy version, which gives the same numbers):
cols has one row per (channel c, filter row i, filter column j), in that order, and one column per
(image n, output row y, output column x), in that order, so cols has shape (C*HH*WW, N*H'*W').
Zero padding is handled inside the loops, without building a padded copy of the input.

conv_forward and conv_backward run the convolution a block of images at a time (small images), or a band
of output rows of one image at a time (large ones): im2col of the block into one buffer, reused, that
stays in the cache while BLAS (scipy's, through scipy.linalg.cython_blas) multiplies it. A one-image
block's product is written straight into the (N, F, H', W') output and its dout is read in place; the
backward accumulates dw across blocks in the BLAS call itself and adds the block's dcols into dx at once
(col2im fused). The matrix of the whole batch, which for a 64-channel 3x3 layer at batch 50 is over
100 MB, is never built.

conv_forward_shifted and conv_backward_shifted, further down, do without im2col: one matrix product per
filter tap, each reading a shifted window of the zero-padded input in place. conv_forward_winograd and
conv_backward_winograd, at the end of the file, compute 3x3 filters at stride 1 and pad 1 with Winograd's
minimal filtering F(2x2, 3x3): 16 products over the 2x2 tiles of the output instead of 9 over its pixels,
2.25x fewer multiply-adds.
fast_layers picks whichever way is fastest for the shapes at hand.
"""
import numpy as np

from cython cimport floating
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

# A block holds enough images for about this many columns (a product wide enough to run at BLAS speed) ...
BLOCK_COLUMNS = 256
# ... and at most this many entries of cols (1 MB of float32: it stays in the L2 cache), but >= 1 image.
BLOCK_ENTRIES = 1 << 18
# One image with more entries than this is taken in bands of output rows (512 KB of float32 each), so that
# its cols stays in the L2 cache between im2col and the products (measured: 64->64 channels at 32x32 run
# 10% faster than in whole images, and faster than with 1 MB bands).
BAND_ENTRIES = 1 << 17
# conv_backward accumulates dw as (C*HH*WW, F) and transposes it at the end below this many filters.
TRANSPOSED_DW_BELOW = 128


cdef inline Py_ssize_t _first_valid(Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    """The smallest output index o >= 0 with o * stride + offset >= 0."""
    if offset >= 0:
        return 0
    return (-offset + stride - 1) // stride


cdef inline Py_ssize_t _end_valid(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size,
                                  Py_ssize_t n_out) noexcept nogil:
    """One past the largest output index o < n_out with o * stride + offset < size."""
    cdef Py_ssize_t last = size - 1 - offset
    if last < 0:
        return 0
    return min(last // stride + 1, n_out)


cdef inline void _gather(floating* dst, const floating* src, Py_ssize_t count,
                         Py_ssize_t stride) noexcept nogil:
    """dst[o] = src[o * stride] for o < count; a plain copy (that the compiler vectorizes) for stride 1."""
    cdef Py_ssize_t o
    if stride == 1:
        memcpy(dst, src, count * sizeof(floating))
    else:
        for o in range(count):
            dst[o] = src[o * stride]


cdef inline void _scatter_add(floating* dst, const floating* src, Py_ssize_t count,
                              Py_ssize_t stride) noexcept nogil:
    """dst[o * stride] += src[o] for o < count."""
    cdef Py_ssize_t o
    if stride == 1:
        for o in range(count):
            dst[o] += src[o]
    else:
        for o in range(count):
            dst[o * stride] += src[o]


cdef struct Geometry:
    # x (N, C, H, W) read by fields of field_height x field_width, giving H_out x W_out positions
    Py_ssize_t C, H, W, field_height, field_width, pad, stride, H_out, W_out


cdef inline bint _same_width(Geometry g) noexcept nogil:
    """True for a stride-1 convolution that keeps the width (W' == W, e.g. 3x3 with pad 1): then the rows
    a filter tap reads are one contiguous run of x, shifted, and a row of cols is one copy of it."""
    return g.stride == 1 and g.W_out == g.W


cdef inline void _valid_rows(Geometry g, Py_ssize_t i, Py_ssize_t y0, Py_ssize_t y1, Py_ssize_t* lo,
                             Py_ssize_t* hi) noexcept nogil:
    """Stride 1: the output rows [lo, hi) within [y0, y1) whose filter row i reads inside x (lo <= hi)."""
    lo[0] = min(max(y0, g.pad - i), y1)
    hi[0] = max(lo[0], min(y1, g.H + g.pad - i))


cdef void _fill_shifted_rows(const floating* x_c, Geometry g, Py_ssize_t i, Py_ssize_t j, Py_ssize_t y0,
                             Py_ssize_t y1, floating* dst) noexcept nogil:
    """
    _same_width geometry: dst, the (y1-y0)*W entries of one row of cols for one image, gets the channel x_c
    (H, W) seen by filter tap (i, j) at the output rows [y0, y1). The valid rows are copied in one run,
    shifted by j - pad; the entries that the shift carries across a row's edge belong to the padding and are
    zeroed after, as are the rows above and below x. The run leaves out its first (or last) |j - pad|
    entries, which would lie outside x_c and are padding anyway.
    """
    cdef Py_ssize_t W = g.W, w_off = j - g.pad, lo, hi, y, o, count
    cdef Py_ssize_t o_lo = min(max(-w_off, 0), W), o_hi = max(min(W - w_off, W), o_lo)
    cdef floating* run
    _valid_rows(g, i, y0, y1, &lo, &hi)
    memset(dst, 0, (lo - y0) * W * sizeof(floating))
    memset(dst + (hi - y0) * W, 0, (y1 - hi) * W * sizeof(floating))
    if hi == lo:
        return
    run = dst + (lo - y0) * W
    count = (hi - lo) * W
    if o_hi > o_lo:
        if w_off < 0:
            memcpy(run - w_off, x_c + (lo + i - g.pad) * W, (count + w_off) * sizeof(floating))
        else:
            memcpy(run, x_c + (lo + i - g.pad) * W + w_off, (count - w_off) * sizeof(floating))
    for y in range(hi - lo):
        for o in range(o_lo):
            run[y * W + o] = 0
        for o in range(o_hi, W):
            run[y * W + o] = 0


cdef void _add_shifted_rows(floating* src, Geometry g, Py_ssize_t i, Py_ssize_t j, Py_ssize_t y0,
                            Py_ssize_t y1, floating* x_c) noexcept nogil:
    """
    The adjoint of _fill_shifted_rows: add src, one row of cols for one image, into the channel x_c (H, W)
    in one shifted run. The entries of src that belong to the padding are zeroed first (src is scratch),
    so that the run adds nothing where it crosses a row's edge.
    """
    cdef Py_ssize_t W = g.W, w_off = j - g.pad, lo, hi, y, o, count
    cdef Py_ssize_t o_lo = min(max(-w_off, 0), W), o_hi = max(min(W - w_off, W), o_lo)
    cdef floating* run
    cdef floating* target
    _valid_rows(g, i, y0, y1, &lo, &hi)
    if hi == lo or o_hi == o_lo:
        return
    run = src + (lo - y0) * W
    count = (hi - lo) * W
    for y in range(hi - lo):
        for o in range(o_lo):
            run[y * W + o] = 0
        for o in range(o_hi, W):
            run[y * W + o] = 0
    target = x_c + (lo + i - g.pad) * W + w_off
    if w_off < 0:
        for o in range(-w_off, count):
            target[o] += run[o]
    else:
        for o in range(count - w_off):
            target[o] += run[o]


cdef void _fill_cols(const floating* x, Py_ssize_t n_images, Geometry g, Py_ssize_t y0, Py_ssize_t y1,
                     floating* cols) noexcept nogil:
    """cols (C*HH*WW, n_images*(y1-y0)*W'), C-contiguous, gets the receptive fields of x (n_images, C, H, W)
    at the output rows y0 <= y < y1."""
    cdef Py_ssize_t n_cols = n_images * (y1 - y0) * g.W_out
    cdef Py_ssize_t c, i, j, n, y, h, o_lo, o_hi, w_off
    cdef floating* dst
    for c in range(g.C):
        for i in range(g.field_height):
            for j in range(g.field_width):
                # Output columns o in [o_lo, o_hi) read inside the input; the others read the padding.
                w_off = j - g.pad
                o_lo = min(_first_valid(w_off, g.stride), g.W_out)
                o_hi = max(_end_valid(w_off, g.stride, g.W, g.W_out), o_lo)
                for n in range(n_images):
                    if _same_width(g):
                        _fill_shifted_rows(x + (n * g.C + c) * g.H * g.W, g, i, j, y0, y1,
                                           cols + ((c * g.field_height + i) * g.field_width + j) * n_cols
                                           + n * (y1 - y0) * g.W_out)
                        continue
                    for y in range(y0, y1):
                        dst = cols + ((c * g.field_height + i) * g.field_width + j) * n_cols \
                            + (n * (y1 - y0) + y - y0) * g.W_out
                        h = y * g.stride + i - g.pad
                        if h < 0 or h >= g.H:
                            memset(dst, 0, g.W_out * sizeof(floating))
                            continue
                        memset(dst, 0, o_lo * sizeof(floating))
                        if o_hi > o_lo:
                            _gather(dst + o_lo, x + ((n * g.C + c) * g.H + h) * g.W + o_lo * g.stride + w_off,
                                    o_hi - o_lo, g.stride)
                        memset(dst + o_hi, 0, (g.W_out - o_hi) * sizeof(floating))


cdef void _add_cols(floating* cols, Py_ssize_t n_images, Geometry g, Py_ssize_t y0, Py_ssize_t y1,
                    floating* x, bint cols_is_scratch) noexcept nogil:
    """Add every entry of cols (C*HH*WW, n_images*(y1-y0)*W') to the position of x (n_images, C, H, W) it
    was taken from: the adjoint of _fill_cols. With cols_is_scratch, cols may be overwritten (its padding
    entries zeroed), which lets a _same_width geometry add whole runs."""
    cdef Py_ssize_t n_cols = n_images * (y1 - y0) * g.W_out
    cdef Py_ssize_t c, i, j, n, y, h, o_lo, o_hi, w_off
    for c in range(g.C):
        for i in range(g.field_height):
            for j in range(g.field_width):
                w_off = j - g.pad
                o_lo = _first_valid(w_off, g.stride)
                o_hi = _end_valid(w_off, g.stride, g.W, g.W_out)
                if o_hi <= o_lo:
                    continue
                for n in range(n_images):
                    if cols_is_scratch and _same_width(g):
                        _add_shifted_rows(cols + ((c * g.field_height + i) * g.field_width + j) * n_cols
                                          + n * (y1 - y0) * g.W_out, g, i, j, y0, y1,
                                          x + (n * g.C + c) * g.H * g.W)
                        continue
                    for y in range(y0, y1):
                        h = y * g.stride + i - g.pad
                        if h < 0 or h >= g.H:
                            continue
                        _scatter_add(x + ((n * g.C + c) * g.H + h) * g.W + o_lo * g.stride + w_off,
                                     cols + ((c * g.field_height + i) * g.field_width + j) * n_cols
                                     + (n * (y1 - y0) + y - y0) * g.W_out + o_lo,
                                     o_hi - o_lo, g.stride)


cdef inline void _gemm(bint trans_a, bint trans_b, int m, int n, int k, const floating* a, int lda,
                       const floating* b, int ldb, floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major c (m, n) = op(a) @ op(b) + beta * c, op(a) of shape (m, k), op(b) (k, n); lda, ldb, ldc
    are the row lengths of the arrays as stored, op transposes when trans_* is set."""
    # BLAS is column-major, where a row-major array reads as its transpose: there c^T = op(b)^T op(a)^T.
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef floating one = 1
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &one, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &one, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef Geometry _geometry(x_shape, Py_ssize_t field_height, Py_ssize_t field_width, Py_ssize_t pad,
                        Py_ssize_t stride):
    """The sizes of a convolution of x (N, C, H, W) by HH x WW fields, with H' and W'."""
    cdef Geometry g
    g.C, g.H, g.W = x_shape[1], x_shape[2], x_shape[3]
    g.field_height, g.field_width, g.pad, g.stride = field_height, field_width, pad, stride
    g.H_out = (g.H + 2 * pad - field_height) // stride + 1
    g.W_out = (g.W + 2 * pad - field_width) // stride + 1
    return g


def block_images(n_images, rows, positions):
    """
    How many images conv_forward and conv_backward put in a block: enough for BLOCK_COLUMNS columns of
    cols, within BLOCK_ENTRIES entries, at least one.

    Inputs:
    - n_images: N; rows: C*HH*WW, the rows of cols; positions: H'*W', the columns of one image
    """
    wanted = -(-BLOCK_COLUMNS // positions)
    return max(1, min(n_images, wanted, BLOCK_ENTRIES // (rows * positions)))


def band_rows(n_images, rows, out_height, out_width):
    """
    How many output rows conv_forward and conv_backward take at a time: all of them, unless the block is
    one image whose cols would exceed BAND_ENTRIES; then bands of rows that fit (at least one row).

    Inputs:
    - n_images: N; rows: C*HH*WW, the rows of cols; out_height, out_width: H', W'
    """
    several_images = block_images(n_images, rows, out_height * out_width) > 1
    if several_images or rows * out_height * out_width <= BAND_ENTRIES:
        return out_height
    return max(1, min(out_height, BAND_ENTRIES // (rows * out_width)))


def im2col(x, field_height, field_width, pad, stride):
    """
    Gather the receptive fields of a zero-padded input into the columns of a matrix.

    Inputs:
    - x: input of shape (N, C, H, W), float32 or float64
    - field_height, field_width: filter size HH, WW
    - pad: zero padding on each side of H and W
    - stride: step between receptive fields

    Returns:
    - cols: array of shape (C*HH*WW, N*H'*W'), the dtype of x
    """
    x = np.ascontiguousarray(x)
    cdef Geometry g = _geometry(x.shape, field_height, field_width, pad, stride)
    cols = np.empty((g.C * field_height * field_width, x.shape[0] * g.H_out * g.W_out), dtype=x.dtype)
    _im2col_typed(x, cols, field_height, field_width, pad, stride)
    return cols


def _im2col_typed(const floating[:, :, :, ::1] x, floating[:, ::1] cols, field_height, field_width, pad,
                  stride):
    cdef Geometry g = _geometry(x.shape, field_height, field_width, pad, stride)
    if x.shape[0] and cols.shape[1]:
        with nogil:
            _fill_cols(&x[0, 0, 0, 0], x.shape[0], g, 0, g.H_out, &cols[0, 0])


def col2im(cols, x_shape, field_height, field_width, pad, stride):
    """
    Scatter-add the columns of a matrix back into an input-shaped array: the adjoint of im2col.

    Inputs:
    - cols: array of shape (C*HH*WW, N*H'*W'), float32 or float64
    - x_shape: (N, C, H, W), the shape of the input im2col was given
    - field_height, field_width, pad, stride: as for im2col

    Returns:
    - x: array of shape (N, C, H, W), the dtype of cols
    """
    cols = np.ascontiguousarray(cols)
    x = np.zeros(tuple(x_shape), dtype=cols.dtype)
    _col2im_typed(cols, x, field_height, field_width, pad, stride)
    return x


def _col2im_typed(const floating[:, ::1] cols, floating[:, :, :, ::1] x, field_height, field_width, pad,
                  stride):
    cdef Geometry g = _geometry(x.shape, field_height, field_width, pad, stride)
    if x.shape[0] and cols.shape[1]:
        with nogil:
            _add_cols(<floating*>&cols[0, 0], x.shape[0], g, 0, g.H_out, &x[0, 0, 0, 0], False)


def conv_forward(x, w_rows, b, out, field_height, field_width, pad, stride):
    """
    Fill out with the convolution of x by the filters, a block of images at a time.

    Inputs:
    - x: input of shape (N, C, H, W), C-contiguous, float32 or float64
    - w_rows: filters as a matrix of shape (F, C*HH*WW), C-contiguous, the dtype of x
    - b: biases of shape (F,), the dtype of x
    - out: C-contiguous array of shape (N, F, H', W'), the dtype of x, overwritten
    - field_height, field_width, pad, stride: filter size HH, WW, zero padding and stride
    """
    _conv_forward_typed(x, w_rows, b, out, field_height, field_width, pad, stride)


def _conv_forward_typed(const floating[:, :, :, ::1] x, const floating[:, ::1] w_rows,
                        const floating[::1] b, floating[:, :, :, ::1] out, field_height, field_width, pad,
                        stride):
    cdef Geometry g = _geometry(x.shape, field_height, field_width, pad, stride)
    cdef Py_ssize_t N = x.shape[0], F = w_rows.shape[0], rows = w_rows.shape[1]
    cdef Py_ssize_t P = g.H_out * g.W_out
    cdef Py_ssize_t block = block_images(N, rows, P)
    cdef Py_ssize_t band = band_rows(N, rows, g.H_out, g.W_out)
    # Buffers for the largest block; a smaller last block uses their beginning, with rows of n_cols.
    cdef floating[:, ::1] cols = np.empty((rows, block * band * g.W_out), dtype=np.asarray(out).dtype)
    cdef floating[:, ::1] product = np.empty((F, block * P if block > 1 else 1), dtype=np.asarray(out).dtype)
    cdef Py_ssize_t n0 = 0, y0, y1, n, f, p, count, n_cols
    cdef floating bias
    cdef floating* dst
    cdef const floating* src
    if N == 0 or P == 0:
        return
    with nogil:
        while n0 < N:
            count = min(block, N - n0)
            y0 = 0
            while y0 < g.H_out:
                y1 = min(y0 + band, g.H_out)
                n_cols = count * (y1 - y0) * g.W_out
                _fill_cols(&x[n0, 0, 0, 0], count, g, y0, y1, &cols[0, 0])
                if count == 1:
                    # one image: the product goes straight into out[n0, :, y0:y1] (rows of P), then the bias
                    _gemm(False, False, F, n_cols, rows, &w_rows[0, 0], rows, &cols[0, 0], n_cols,
                          0, &out[n0, 0, y0, 0], P)
                    for f in range(F):
                        dst, bias = &out[n0, f, y0, 0], b[f]
                        for p in range(n_cols):
                            dst[p] += bias
                else:
                    _gemm(False, False, F, n_cols, rows, &w_rows[0, 0], rows, &cols[0, 0], n_cols,
                          0, &product[0, 0], n_cols)
                    # product (F, count*P) -> out[n0:n0+count] (count, F, P), adding the bias on the way
                    for n in range(count):
                        for f in range(F):
                            dst, bias = &out[n0 + n, f, 0, 0], b[f]
                            src = &product[0, 0] + (f * count + n) * P
                            for p in range(P):
                                dst[p] = src[p] + bias
                y0 = y1
            n0 += count


def _zero_gradients(dx, dw):
    """The gradients of a batch without images or an output without pixels: zeros in dx and dw (the
    backward functions are handed uninitialised arrays)."""
    np.asarray(dx).fill(0)
    np.asarray(dw).fill(0)


def conv_backward(dout, x, w_rows, dx, dw_rows, field_height, field_width, pad, stride):
    """
    Fill dx and dw_rows with the gradients of the convolution, a block of images at a time.

    Inputs:
    - dout: upstream derivative of shape (N, F, H', W'), C-contiguous, the dtype of x
    - x, w_rows: as for conv_forward
    - dx: C-contiguous array of shape (N, C, H, W), overwritten with the gradient of x (each block's part
      is zeroed just before its columns are added in, while it is in the cache)
    - dw_rows: C-contiguous array of shape (F, C*HH*WW), overwritten with the gradient of w_rows
    - field_height, field_width, pad, stride: as for conv_forward
    """
    _conv_backward_typed(dout, x, w_rows, dx, dw_rows, field_height, field_width, pad, stride)


def _conv_backward_typed(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                         const floating[:, ::1] w_rows, floating[:, :, :, ::1] dx,
                         floating[:, ::1] dw_rows, field_height, field_width, pad, stride):
    cdef Geometry g = _geometry(x.shape, field_height, field_width, pad, stride)
    cdef Py_ssize_t N = x.shape[0], F = w_rows.shape[0], rows = w_rows.shape[1]
    cdef Py_ssize_t P = g.H_out * g.W_out
    cdef Py_ssize_t block = block_images(N, rows, P)
    cdef Py_ssize_t band = band_rows(N, rows, g.H_out, g.W_out)
    dtype = np.asarray(dx).dtype
    # Buffers for the largest block; a smaller last block uses their beginning, with rows of n_cols.
    cdef floating[:, ::1] cols = np.empty((rows, block * band * g.W_out), dtype=dtype)
    cdef floating[:, ::1] dcols = np.empty((rows, block * band * g.W_out), dtype=dtype)
    cdef floating[:, ::1] dout_rows = np.empty((F, block * P if block > 1 else 1), dtype=dtype)
    # With few filters dw accumulates transposed, (C*HH*WW, F) = cols @ dout_rows.T, and is copied into
    # dw_rows at the end: OpenBLAS runs this orientation 1.2-1.7x faster than dout_rows @ cols.T for F of
    # 16-64 (one core, the shipped model's shapes). With many, the copy would cost more than it saves (a
    # (4608, 1024) one takes 28 ms, 16x the product of one image), and dw accumulates in place.
    cdef bint transposed = F < TRANSPOSED_DW_BELOW
    # the transposed sums; a 1x1 placeholder when dw accumulates in place
    cdef floating[:, ::1] dw_columns = (
        np.empty((rows, F), dtype=dtype) if transposed else np.empty((1, 1), dtype=dtype)
    )
    cdef floating* dw_target = &dw_columns[0, 0] if transposed else &dw_rows[0, 0]
    cdef Py_ssize_t n0 = 0, y0, y1, n, f, count, n_cols, ld_block
    cdef const floating* dout_block
    cdef floating beta = 0
    if N == 0 or P == 0:
        _zero_gradients(dx, dw_rows)
        return
    with nogil:
        while n0 < N:
            count = min(block, N - n0)
            memset(&dx[n0, 0, 0, 0], 0, count * g.C * g.H * g.W * sizeof(floating))
            y0 = 0
            while y0 < g.H_out:
                y1 = min(y0 + band, g.H_out)
                n_cols = count * (y1 - y0) * g.W_out
                _fill_cols(&x[n0, 0, 0, 0], count, g, y0, y1, &cols[0, 0])
                if count == 1:
                    # one image: dout[n0, :, y0:y1] is already a (F, n_cols) matrix with rows of P
                    dout_block, ld_block = &dout[n0, 0, y0, 0], P
                else:
                    # dout[n0:n0+count] (count, F, P) -> dout_rows (F, count*P), the forward product's layout
                    for n in range(count):
                        for f in range(F):
                            memcpy(&dout_rows[0, 0] + (f * count + n) * P, &dout[n0 + n, f, 0, 0],
                                   P * sizeof(floating))
                    dout_block, ld_block = &dout_rows[0, 0], n_cols
                # dw += its product for the block (beta 0 on the first block overwrites, then accumulates)
                if transposed:
                    _gemm(False, True, rows, F, n_cols, &cols[0, 0], n_cols, dout_block, ld_block,
                          beta, dw_target, F)
                else:
                    _gemm(False, True, F, rows, n_cols, dout_block, ld_block, &cols[0, 0], n_cols,
                          beta, dw_target, rows)
                beta = 1
                # dcols = w_rows.T @ dout_block, added into the block's dx
                _gemm(True, False, rows, n_cols, F, &w_rows[0, 0], rows, dout_block, ld_block,
                      0, &dcols[0, 0], n_cols)
                _add_cols(&dcols[0, 0], count, g, y0, y1, &dx[n0, 0, 0, 0], True)
                y0 = y1
            n0 += count
    if transposed:
        np.copyto(np.asarray(dw_rows), np.asarray(dw_columns).T)


# ---------------------------------------------------------------------------------------------------------
# The shifted-product convolution: no im2col at all.
#
# Zero-pad each image and split it into stride x stride phases (phase (a, b) holds the padded pixels at rows
# a, a + stride, ... and columns b, b + stride, ...; one phase, the padded image itself, at stride 1), each
# phase a plane of Hq x Wq pixels stored row after row. Filter tap (i, j) then reads, for the output pixel
# (y, x), the pixel at position q + shift of phase (i % stride, j % stride), with q = y * Wq + x and
# shift = (i // stride) * Wq + j // stride. So the output, laid out on the same Hq x Wq grid, is a sum of
# HH*WW matrix products, one per tap, each of the tap's (F, C) weights by a shifted (C, positions) window of
# a phase buffer: BLAS reads the window in place (rows of the buffer, leading dimension its row length).
# The grid has columns x >= W' (and rows y >= H'), which the products compute and the copy into the output
# drops: (Hq * Wq) / (H' * W') more multiply-adds, 13% for a 3x3 layer at 32x32, in exchange for input
# reads of one copy of x instead of HH*WW. Images of a block lie one after the other in each phase row, so
# one product covers them all; a valid output pixel only reads its own image's plane.
# The backward is the same sums transposed: the taps' dw are products of dout (on the grid, zero outside
# the valid pixels) by the shifted windows; dx gathers from a phase buffer that each tap's product adds into.
# ---------------------------------------------------------------------------------------------------------

# A block of the shifted convolution holds enough images for about this many grid positions per product ...
SHIFTED_BLOCK_COLUMNS = 512
# ... within this many entries of its phase buffer (1 MB of float32), but at least one image.
SHIFTED_BLOCK_ENTRIES = 1 << 18


cdef struct Phases:
    # the phase planes of one padded image: stride * stride of them, each Hq x Wq; the images in a block,
    # and the length of a row of the block's phase buffer
    Py_ssize_t Hq, Wq, plane, extra, block, row


cdef Phases _phases(Geometry g, Py_ssize_t n_images):
    """The phase layout of g's padded images, n_images of them, in blocks of shifted_block_images. A
    block's phase buffer has stride*stride*C rows of `row` entries: the block's planes one after another,
    then `extra` zeros that the last image's grid columns beyond W' may read."""
    cdef Phases p
    p.block = shifted_block_images(n_images, g.C, g.stride, g.H + 2 * g.pad, g.W + 2 * g.pad)
    p.Hq = (g.H + 2 * g.pad + g.stride - 1) // g.stride
    p.Wq = (g.W + 2 * g.pad + g.stride - 1) // g.stride
    p.plane = p.Hq * p.Wq
    p.extra = (g.field_width - 1) // g.stride
    p.row = p.block * p.plane + p.extra
    return p


def shifted_block_images(n_images, channels, stride, padded_height, padded_width):
    """
    How many images conv_forward_shifted and conv_backward_shifted put in a block: enough for
    SHIFTED_BLOCK_COLUMNS grid positions, within SHIFTED_BLOCK_ENTRIES entries of the phase buffer, at
    least one.

    Inputs:
    - n_images: N; channels: C; stride; padded_height, padded_width: H + 2 pad, W + 2 pad
    """
    plane = -(-padded_height // stride) * -(-padded_width // stride)
    wanted = -(-SHIFTED_BLOCK_COLUMNS // plane)
    return max(1, min(n_images, wanted, SHIFTED_BLOCK_ENTRIES // (stride * stride * channels * plane)))


cdef void _phase_row_copy(floating* phase_row, floating* image_row, Geometry g, Py_ssize_t phase_column,
                          bint to_phase) noexcept nogil:
    """Copy between one row of an image (W pixels) and the matching row of one phase column: the pixels w
    with (w + pad) % stride == phase_column, which sit at (w + pad) // stride of the phase's row. to_phase
    copies image -> phase, else phase -> image."""
    cdef Py_ssize_t first = (phase_column - g.pad) % g.stride
    cdef Py_ssize_t count, o
    if first < 0:
        first += g.stride
    if first >= g.W:
        return
    count = (g.W - 1 - first) // g.stride + 1
    phase_row += (first + g.pad) // g.stride
    image_row += first
    if g.stride == 1:
        if to_phase:
            memcpy(phase_row, image_row, count * sizeof(floating))
        else:
            memcpy(image_row, phase_row, count * sizeof(floating))
    elif to_phase:
        for o in range(count):
            phase_row[o] = image_row[o * g.stride]
    else:
        for o in range(count):
            image_row[o * g.stride] = phase_row[o]


cdef void _copy_phases(floating* phases, floating* images, Py_ssize_t n_images, Geometry g, Phases p,
                       bint to_phase) noexcept nogil:
    """Between n_images images (n_images, C, H, W) and the pixels of a block's phase buffer (stride*stride*C
    rows of p.row entries) that lie inside the images; the padding entries are not touched. to_phase copies
    images -> phases, else phases -> images."""
    cdef Py_ssize_t n, c, h, a, b, r
    cdef floating* phase_row
    for n in range(n_images):
        for c in range(g.C):
            for h in range(g.H):
                r = h + g.pad
                a = r % g.stride
                for b in range(g.stride):
                    phase_row = phases + ((a * g.stride + b) * g.C + c) * p.row + n * p.plane \
                        + (r // g.stride) * p.Wq
                    _phase_row_copy(phase_row, images + ((n * g.C + c) * g.H + h) * g.W, g, b, to_phase)


cdef inline Py_ssize_t _tap_phase(Geometry g, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """The phase tap (i, j) reads."""
    return (i % g.stride) * g.stride + j % g.stride


cdef inline Py_ssize_t _tap_shift(Geometry g, Phases p, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """How far along its phase's rows tap (i, j) reads from the output position q."""
    return (i // g.stride) * p.Wq + j // g.stride


def conv_forward_shifted(x, w_taps, b, out, field_height, field_width, pad, stride):
    """
    Fill out with the convolution of x by the filters as a sum of one matrix product per filter tap (see
    the comment above), a block of images at a time.

    Inputs:
    - x: input of shape (N, C, H, W), C-contiguous, float32 or float64
    - w_taps: filters by tap, of shape (HH*WW, F, C): w_taps[i * WW + j] = w[:, :, i, j], C-contiguous,
      the dtype of x
    - b: biases of shape (F,), the dtype of x
    - out: C-contiguous array of shape (N, F, H', W'), the dtype of x, overwritten
    - field_height, field_width, pad, stride: filter size HH, WW, zero padding and stride
    """
    _conv_forward_shifted_typed(x, w_taps, b, out, field_height, field_width, pad, stride)


def _conv_forward_shifted_typed(const floating[:, :, :, ::1] x, const floating[:, :, ::1] w_taps,
                                const floating[::1] b, floating[:, :, :, ::1] out, field_height, field_width,
                                pad, stride):
    cdef Geometry g = _geometry(x.shape, field_height, field_width, pad, stride)
    cdef Py_ssize_t N = x.shape[0], F = w_taps.shape[1]
    cdef Phases p = _phases(g, N)
    dtype = np.asarray(out).dtype
    # zeros once: the padding entries are never written, the image entries are rewritten for every block
    cdef floating[:, ::1] phases = np.zeros((stride * stride * g.C, p.row), dtype=dtype)
    cdef floating[:, ::1] grid = np.empty((F, p.block * p.plane), dtype=dtype)
    cdef Py_ssize_t n0 = 0, n, f, y, x_out, i, j, count, columns
    cdef floating bias
    cdef floating* dst
    cdef const floating* src
    if N == 0 or g.H_out * g.W_out == 0:
        return
    with nogil:
        while n0 < N:
            count = min(p.block, N - n0)
            _copy_phases(&phases[0, 0], <floating*>&x[n0, 0, 0, 0], count, g, p, True)
            columns = (count - 1) * p.plane + g.H_out * p.Wq  # through the last image's last output row
            for i in range(g.field_height):
                for j in range(g.field_width):
                    _gemm(False, False, F, columns, g.C, &w_taps[i * g.field_width + j, 0, 0], g.C,
                          &phases[_tap_phase(g, i, j) * g.C, _tap_shift(g, p, i, j)], p.row,
                          0 if i == 0 and j == 0 else 1, &grid[0, 0], p.block * p.plane)
            for n in range(count):
                for f in range(F):
                    bias = b[f]
                    for y in range(g.H_out):
                        dst = &out[n0 + n, f, y, 0]
                        src = &grid[f, n * p.plane + y * p.Wq]
                        for x_out in range(g.W_out):
                            dst[x_out] = src[x_out] + bias
            n0 += count


def conv_backward_shifted(dout, x, w_taps, dx, dw_taps, field_height, field_width, pad, stride):
    """
    Fill dx and dw_taps with the gradients of conv_forward_shifted, a block of images at a time.

    Inputs:
    - dout: upstream derivative of shape (N, F, H', W'), C-contiguous, the dtype of x
    - x, w_taps: as for conv_forward_shifted
    - dx: C-contiguous array of shape (N, C, H, W), overwritten with the gradient of x
    - dw_taps: C-contiguous array of shape (HH*WW, F, C), overwritten with the gradient of w_taps
    - field_height, field_width, pad, stride: as for conv_forward_shifted
    """
    _conv_backward_shifted_typed(dout, x, w_taps, dx, dw_taps, field_height, field_width, pad, stride)


def _conv_backward_shifted_typed(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                                 const floating[:, :, ::1] w_taps, floating[:, :, :, ::1] dx,
                                 floating[:, :, ::1] dw_taps, field_height, field_width, pad, stride):
    cdef Geometry g = _geometry(x.shape, field_height, field_width, pad, stride)
    cdef Py_ssize_t N = x.shape[0], F = w_taps.shape[1]
    cdef Phases p = _phases(g, N)
    dtype = np.asarray(dx).dtype
    cdef floating[:, ::1] phases = np.zeros((stride * stride * g.C, p.row), dtype=dtype)
    cdef floating[:, ::1] dphases = np.empty((stride * stride * g.C, p.row), dtype=dtype)
    # dout on the grid; zeros once: the entries off the valid pixels must stay zero, so that the products
    # add nothing from the grid columns and rows the forward dropped
    cdef floating[:, ::1] dgrid = np.zeros((F, p.block * p.plane), dtype=dtype)
    cdef Py_ssize_t n0 = 0, n, f, y, i, j, count, columns, tap
    cdef floating beta = 0
    if N == 0 or g.H_out * g.W_out == 0:
        _zero_gradients(dx, dw_taps)
        return
    with nogil:
        while n0 < N:
            count = min(p.block, N - n0)
            columns = (count - 1) * p.plane + g.H_out * p.Wq
            for n in range(count):
                for f in range(F):
                    for y in range(g.H_out):
                        memcpy(&dgrid[f, n * p.plane + y * p.Wq], &dout[n0 + n, f, y, 0],
                               g.W_out * sizeof(floating))
            _copy_phases(&phases[0, 0], <floating*>&x[n0, 0, 0, 0], count, g, p, True)
            memset(&dphases[0, 0], 0, dphases.shape[0] * p.row * sizeof(floating))
            for i in range(g.field_height):
                for j in range(g.field_width):
                    tap = i * g.field_width + j
                    # dw_tap (F, C) (+)= dgrid (F, columns) @ window (C, columns)^T: beta 0 on the first block
                    _gemm(False, True, F, g.C, columns, &dgrid[0, 0], p.block * p.plane,
                          &phases[_tap_phase(g, i, j) * g.C, _tap_shift(g, p, i, j)], p.row,
                          beta, &dw_taps[tap, 0, 0], g.C)
                    # the tap's window of dphases (C, columns) += w_tap (F, C)^T @ dgrid (F, columns)
                    _gemm(True, False, g.C, columns, F, &w_taps[tap, 0, 0], g.C, &dgrid[0, 0],
                          p.block * p.plane, 1, &dphases[_tap_phase(g, i, j) * g.C, _tap_shift(g, p, i, j)],
                          p.row)
            beta = 1
            _copy_phases(&dphases[0, 0], &dx[n0, 0, 0, 0], count, g, p, False)
            n0 += count


# ---------------------------------------------------------------------------------------------------------
# Winograd's minimal filtering F(2x2, 3x3) for 3x3 filters at stride 1 and pad 1 (Lavin and Gray, "Fast
# Algorithms for Convolutional Neural Networks", 2016). The output is cut into 2x2 tiles; tile (ty, tx) reads
# the 4x4 patch d of the padded input at rows 2ty..2ty+3 and columns 2tx..2tx+3 and is
#     Y = A^T [ (G g G^T) * (B^T d B) ] A      (* elementwise, 4x4)
# summed over the channels, with
#     B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
#     G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]],  A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
# The sum over channels of each of the 16 elementwise products is a matrix product: with U[k] (F, C) the
# entry k = 4a + b of every filter's transform and V[k] (C, P) that of every tile's input transform,
# M[k] = U[k] @ V[k] (F, P). That is 16 products of C multiply-adds per filter and tile, where the direct
# way takes 9 * 4 = 36 per output tile: 2.25x fewer. The transforms are additions only.
# The backward runs the same steps transposed: dM[k] = the transform A dY A^T of dout's tiles, then
# dU[k] = dM[k] @ V[k]^T (the filters' gradient is G^T dU G, done by fast_layers) and dV[k] = U[k]^T @ dM[k],
# whose tiles B dV B^T overlap by two rows and columns and are added into dx.
# Tiles are numbered p = (image * tiles_high + ty) * tiles_wide + tx within a block of images; V, M and dM
# are (16, C or F, P) buffers, each of their rows one transform entry for every tile of the block.
# ---------------------------------------------------------------------------------------------------------

# A block of the Winograd convolution holds enough images for about this many tiles (measured on one core,
# batch 50: blocks of 128 tiles ran as fast as or up to 1.3x faster than blocks of 32 to 2048, the buffers
# V and M of 64 channels then fitting the L2 cache).
WINOGRAD_BLOCK_TILES = 128


def winograd_block_images(n_images, tiles_per_image):
    """How many images conv_forward_winograd and conv_backward_winograd put in a block: enough for
    WINOGRAD_BLOCK_TILES tiles, at least one, at most n_images."""
    return max(1, min(n_images, -(-WINOGRAD_BLOCK_TILES // tiles_per_image)))


cdef struct Tiles:
    # the image size, the tiles per column and per row of an image, and the length of a padded row
    Py_ssize_t H, W, high, wide, padded_width


cdef Tiles _tiles(Py_ssize_t H, Py_ssize_t W):
    cdef Tiles t
    t.H, t.W = H, W
    t.high, t.wide = (H + 1) // 2, (W + 1) // 2
    t.padded_width = 2 * t.wide + 2
    return t


cdef object _tile_buffer(Py_ssize_t rows, Py_ssize_t block, Tiles t, dtype):
    """A flat (16, rows, P) buffer for a block of images' P tiles: V (rows = C), or M and dM (rows = F)."""
    return np.empty(16 * rows * block * t.high * t.wide, dtype=dtype)


cdef Py_ssize_t _scratch_entries(Tiles t):
    """The transforms' scratch: 8 padded rows or 16 rows of tiles, then (for _winograd_dx) a padded plane."""
    return _padded_plane_offset(t) + (2 * t.high + 2) * t.padded_width


cdef inline Py_ssize_t _padded_plane_offset(Tiles t) noexcept nogil:
    """Where the padded plane of _winograd_dx starts in the scratch."""
    return 8 * t.padded_width + 16 * t.wide


cdef void _padded_rows(const floating* plane, Tiles t, Py_ssize_t ty, floating* rows) noexcept nogil:
    """The padded input rows 2ty..2ty+3 of one channel plane (H, W), each t.padded_width long (zeros off
    the image), into rows (4, t.padded_width)."""
    cdef Py_ssize_t k, r
    cdef floating* row
    for k in range(4):
        r = 2 * ty - 1 + k  # image row of padded row 2ty + k
        row = rows + k * t.padded_width
        memset(row, 0, t.padded_width * sizeof(floating))
        if 0 <= r < t.H:
            memcpy(row + 1, plane + r * t.W, t.W * sizeof(floating))


cdef void _winograd_input(const floating* x, Py_ssize_t count, Py_ssize_t C, Tiles t, floating* V,
                          floating* rows) noexcept nogil:
    """V (16, C, P) = B^T d B of every tile d of the block's count images x (count, C, H, W), P their tiles.
    rows: scratch of 8 * t.padded_width entries."""
    cdef Py_ssize_t P = count * t.high * t.wide, k_stride = C * P
    cdef Py_ssize_t n, c, ty, tx, j, k, p
    cdef floating* d = rows
    cdef floating* e = rows + 4 * t.padded_width  # B^T d: the rows' combinations
    cdef floating* dst
    cdef floating e0, e1, e2, e3
    for n in range(count):
        for c in range(C):
            for ty in range(t.high):
                _padded_rows(x + (n * C + c) * t.H * t.W, t, ty, d)
                for j in range(t.padded_width):
                    e[j] = d[j] - d[2 * t.padded_width + j]
                    e[t.padded_width + j] = d[t.padded_width + j] + d[2 * t.padded_width + j]
                    e[2 * t.padded_width + j] = d[2 * t.padded_width + j] - d[t.padded_width + j]
                    e[3 * t.padded_width + j] = d[t.padded_width + j] - d[3 * t.padded_width + j]
                p = (n * t.high + ty) * t.wide
                for k in range(4):
                    dst = V + 4 * k * k_stride + c * P + p
                    for tx in range(t.wide):
                        e0 = e[k * t.padded_width + 2 * tx]
                        e1 = e[k * t.padded_width + 2 * tx + 1]
                        e2 = e[k * t.padded_width + 2 * tx + 2]
                        e3 = e[k * t.padded_width + 2 * tx + 3]
                        dst[tx] = e0 - e2
                        dst[k_stride + tx] = e1 + e2
                        dst[2 * k_stride + tx] = e2 - e1
                        dst[3 * k_stride + tx] = e1 - e3


cdef void _winograd_output(const floating* M, Py_ssize_t count, Py_ssize_t F, Tiles t, const floating* b,
                           floating* out, floating* scratch) noexcept nogil:
    """out (count, F, H, W) = A^T m A + b of every tile m of M (16, F, P), cut to the image.
    scratch: 8 * t.wide entries."""
    cdef Py_ssize_t P = count * t.high * t.wide, k_stride = F * P, wide = t.wide
    cdef Py_ssize_t n, f, ty, tx, i, a, full = t.W // 2
    cdef const floating* m
    cdef floating* s
    cdef floating* row
    cdef floating bias
    for n in range(count):
        for f in range(F):
            bias = b[f]
            for ty in range(t.high):
                m = M + f * P + (n * t.high + ty) * wide
                # A^T m along the tile rows, for every tile of the row at once: s[4i + a] is row i of A^T m
                # (A^T's rows are (1, 1, 1, 0) and (0, 1, -1, -1)), column a
                for a in range(4):
                    s = scratch + a * wide
                    for tx in range(wide):
                        s[tx] = m[a * k_stride + tx] + m[(4 + a) * k_stride + tx] + m[(8 + a) * k_stride + tx]
                    s = scratch + (4 + a) * wide
                    for tx in range(wide):
                        s[tx] = m[(4 + a) * k_stride + tx] - m[(8 + a) * k_stride + tx] - m[(12 + a) * k_stride + tx]
                for i in range(2):  # then (A^T m) A along the columns, the same combinations
                    if 2 * ty + i >= t.H:
                        break
                    s = scratch + 4 * i * wide
                    row = out + ((n * F + f) * t.H + 2 * ty + i) * t.W
                    for tx in range(full):
                        row[2 * tx] = s[tx] + s[wide + tx] + s[2 * wide + tx] + bias
                        row[2 * tx + 1] = s[wide + tx] - s[2 * wide + tx] - s[3 * wide + tx] + bias
                    if full < wide:  # an odd width: the last tile has one column in the image
                        row[2 * full] = s[full] + s[wide + full] + s[2 * wide + full] + bias


cdef void _winograd_dout(const floating* dout, Py_ssize_t count, Py_ssize_t F, Tiles t, floating* dM,
                         floating* scratch) noexcept nogil:
    """dM (16, F, P) = A dY A^T of every 2x2 tile dY of dout (count, F, H, W), zero off the image.
    scratch: 4 * t.wide + 4 entries."""
    cdef Py_ssize_t P = count * t.high * t.wide, k_stride = F * P, wide = t.wide
    cdef Py_ssize_t n, f, ty, tx, i, a
    cdef floating* r = scratch  # dout's rows 2ty and 2ty + 1, each 2 * wide long, zeros off the image
    cdef floating* d
    cdef floating u0, u1
    for n in range(count):
        for f in range(F):
            for ty in range(t.high):
                memset(r, 0, 4 * wide * sizeof(floating))
                for i in range(2):
                    if 2 * ty + i < t.H:
                        memcpy(r + 2 * i * wide, dout + ((n * F + f) * t.H + 2 * ty + i) * t.W,
                               t.W * sizeof(floating))
                d = dM + f * P + (n * t.high + ty) * wide
                for a in range(4):
                    # row a of A dY (A's rows are (1, 0), (1, 1), (1, -1), (0, -1)), then times A^T
                    for tx in range(wide):
                        if a == 0:
                            u0, u1 = r[2 * tx], r[2 * tx + 1]
                        elif a == 1:
                            u0, u1 = r[2 * tx] + r[2 * wide + 2 * tx], r[2 * tx + 1] + r[2 * wide + 2 * tx + 1]
                        elif a == 2:
                            u0, u1 = r[2 * tx] - r[2 * wide + 2 * tx], r[2 * tx + 1] - r[2 * wide + 2 * tx + 1]
                        else:
                            u0, u1 = -r[2 * wide + 2 * tx], -r[2 * wide + 2 * tx + 1]
                        d[4 * a * k_stride + tx] = u0
                        d[(4 * a + 1) * k_stride + tx] = u0 + u1
                        d[(4 * a + 2) * k_stride + tx] = u0 - u1
                        d[(4 * a + 3) * k_stride + tx] = -u1


cdef void _winograd_dx(const floating* dV, Py_ssize_t count, Py_ssize_t C, Tiles t, floating* dx,
                       floating* padded, floating* scratch) noexcept nogil:
    """dx (count, C, H, W) = the sum of B v B^T over the tiles v of dV (16, C, P), each added at its place
    in the padded image, the padding dropped. padded: (2 * t.high + 2) * t.padded_width entries of
    scratch; scratch: 16 * t.wide more."""
    cdef Py_ssize_t P = count * t.high * t.wide, k_stride = C * P, wide = t.wide
    cdef Py_ssize_t n, c, ty, tx, i, b, h
    cdef const floating* v
    cdef floating* e
    cdef floating* row
    for n in range(count):
        for c in range(C):
            memset(padded, 0, (2 * t.high + 2) * t.padded_width * sizeof(floating))
            for ty in range(t.high):
                v = dV + c * P + (n * t.high + ty) * wide
                # B v along the tile rows, for every tile of the row at once: e[4i + b] is row i, column b
                # (B's rows are (1, 0, 0, 0), (0, 1, -1, 1), (-1, 1, 1, 0), (0, 0, 0, -1))
                for b in range(4):
                    e = scratch
                    for tx in range(wide):
                        e[b * wide + tx] = v[b * k_stride + tx]
                        e[(4 + b) * wide + tx] = (v[(4 + b) * k_stride + tx] - v[(8 + b) * k_stride + tx]
                                                  + v[(12 + b) * k_stride + tx])
                        e[(8 + b) * wide + tx] = (-v[b * k_stride + tx] + v[(4 + b) * k_stride + tx]
                                                  + v[(8 + b) * k_stride + tx])
                        e[(12 + b) * wide + tx] = -v[(12 + b) * k_stride + tx]
                for i in range(4):  # then (B v) B^T along the columns, added into the padded row 2ty + i
                    e = scratch + 4 * i * wide
                    row = padded + (2 * ty + i) * t.padded_width
                    # columns 2tx and 2tx + 1 of each tile, then 2tx + 2 and 2tx + 3 (the next tile's first
                    # two): two passes, so that no pass adds twice into the same column
                    for tx in range(wide):
                        row[2 * tx] += e[tx]
                        row[2 * tx + 1] += e[wide + tx] - e[2 * wide + tx] + e[3 * wide + tx]
                    for tx in range(wide):
                        row[2 * tx + 2] += -e[tx] + e[wide + tx] + e[2 * wide + tx]
                        row[2 * tx + 3] -= e[3 * wide + tx]
            for h in range(t.H):
                memcpy(dx + ((n * C + c) * t.H + h) * t.W, padded + (h + 1) * t.padded_width + 1,
                       t.W * sizeof(floating))


def conv_forward_winograd(x, w_winograd, b, out, field_height, field_width, pad, stride):
    """
    Fill out with the convolution of x by 3x3 filters at stride 1 and pad 1, with Winograd's F(2x2, 3x3)
    (see the comment above), a block of images at a time.

    Inputs:
    - x: input of shape (N, C, H, W), C-contiguous, float32 or float64
    - w_winograd: the filters' transforms G g G^T, of shape (16, F, C), C-contiguous, the dtype of x
    - b: biases of shape (F,), the dtype of x
    - out: C-contiguous array of shape (N, F, H, W), the dtype of x, overwritten
    - field_height, field_width, pad, stride: must be 3, 3, 1, 1 (the signature of the other ways)
    """
    _check_winograd(field_height, field_width, pad, stride)
    _conv_forward_winograd_typed(x, w_winograd, b, out)


def _check_winograd(field_height, field_width, pad, stride):
    if (field_height, field_width, pad, stride) != (3, 3, 1, 1):
        raise ValueError(
            f"the Winograd convolution takes 3x3 filters at stride 1 and pad 1, got {field_height}x"
            f"{field_width} filters, stride {stride}, pad {pad}"
        )


def _conv_forward_winograd_typed(const floating[:, :, :, ::1] x, const floating[:, :, ::1] w_winograd,
                                 const floating[::1] b, floating[:, :, :, ::1] out):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], F = w_winograd.shape[1]
    cdef Tiles t = _tiles(x.shape[2], x.shape[3])
    cdef Py_ssize_t block = winograd_block_images(N, max(1, t.high * t.wide))
    dtype = np.asarray(out).dtype
    cdef floating[::1] V = _tile_buffer(C, block, t, dtype)
    cdef floating[::1] M = _tile_buffer(F, block, t, dtype)
    cdef floating[::1] scratch = np.empty(_scratch_entries(t), dtype=dtype)
    cdef Py_ssize_t n0 = 0, count, P, k
    if N == 0 or t.H * t.W == 0:
        return
    with nogil:
        while n0 < N:
            count = min(block, N - n0)
            P = count * t.high * t.wide
            _winograd_input(&x[n0, 0, 0, 0], count, C, t, &V[0], &scratch[0])
            for k in range(16):
                _gemm(False, False, F, P, C, &w_winograd[k, 0, 0], C, &V[k * C * P], P, 0, &M[k * F * P], P)
            _winograd_output(&M[0], count, F, t, &b[0], &out[n0, 0, 0, 0], &scratch[0])
            n0 += count


def conv_backward_winograd(dout, x, w_winograd, dx, dw_winograd, field_height, field_width, pad, stride):
    """
    Fill dx and dw_winograd with the gradients of conv_forward_winograd, a block of images at a time.

    Inputs:
    - dout: upstream derivative of shape (N, F, H, W), C-contiguous, the dtype of x
    - x, w_winograd: as for conv_forward_winograd
    - dx: C-contiguous array of shape (N, C, H, W), overwritten with the gradient of x
    - dw_winograd: C-contiguous array of shape (16, F, C), overwritten with the gradient of w_winograd
      (the filters' own gradient is G^T dw_winograd[4a + b] G, summed as the forward's transform)
    - field_height, field_width, pad, stride: must be 3, 3, 1, 1
    """
    _check_winograd(field_height, field_width, pad, stride)
    _conv_backward_winograd_typed(dout, x, w_winograd, dx, dw_winograd)


def _conv_backward_winograd_typed(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
                                  const floating[:, :, ::1] w_winograd, floating[:, :, :, ::1] dx,
                                  floating[:, :, ::1] dw_winograd):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], F = w_winograd.shape[1]
    cdef Tiles t = _tiles(x.shape[2], x.shape[3])
    cdef Py_ssize_t block = winograd_block_images(N, max(1, t.high * t.wide))
    dtype = np.asarray(dx).dtype
    cdef floating[::1] V = _tile_buffer(C, block, t, dtype)  # V, then dV
    cdef floating[::1] dM = _tile_buffer(F, block, t, dtype)
    cdef floating[::1] scratch = np.empty(_scratch_entries(t), dtype=dtype)
    cdef Py_ssize_t n0 = 0, count, P, k
    cdef floating beta = 0
    if N == 0 or t.H * t.W == 0:
        _zero_gradients(dx, dw_winograd)
        return
    with nogil:
        while n0 < N:
            count = min(block, N - n0)
            P = count * t.high * t.wide
            _winograd_input(&x[n0, 0, 0, 0], count, C, t, &V[0], &scratch[0])
            _winograd_dout(&dout[n0, 0, 0, 0], count, F, t, &dM[0], &scratch[0])
            for k in range(16):
                # dU[k] (F, C) (+)= dM[k] (F, P) @ V[k]^T: beta 0 on the first block; then V[k] is free for
                # dV[k] (C, P) = U[k]^T @ dM[k]
                _gemm(False, True, F, C, P, &dM[k * F * P], P, &V[k * C * P], P, beta, &dw_winograd[k, 0, 0], C)
                _gemm(True, False, C, P, F, &w_winograd[k, 0, 0], C, &dM[k * F * P], P, 0, &V[k * C * P], P)
            _winograd_dx(&V[0], count, C, t, &dx[n0, 0, 0, 0], &scratch[_padded_plane_offset(t)], &scratch[0])
            beta = 1
            n0 += count
