# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col and col2im in Cython, for float32 and float64 (fused types: float32 stays float32).

The layout is the one of asgn3/im2col.py (the pure-numpy version, which gives the same numbers):
cols has one row per (channel c, filter row i, filter column j), in that order, and one column per
(image n, output row y, output column x), in that order, so cols has shape (C*HH*WW, N*H'*W').
Zero padding is handled inside the loops, without building a padded copy of the input.
"""
import numpy as np

from cython cimport floating
from libc.string cimport memcpy, memset


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


def _im2col_fill(const floating[:, :, :, ::1] x, floating[:, ::1] cols, Py_ssize_t field_height,
                 Py_ssize_t field_width, Py_ssize_t pad, Py_ssize_t stride, Py_ssize_t H_out,
                 Py_ssize_t W_out):
    """Fill cols (C*HH*WW, N*H'*W') with the receptive fields of x (N, C, H, W)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t c, i, j, n, y, h, row, o_lo, o_hi, w_off
    cdef floating* dst
    with nogil:
        for c in range(C):
            for i in range(field_height):
                for j in range(field_width):
                    row = (c * field_height + i) * field_width + j
                    # Output columns o in [o_lo, o_hi) read inside the input; the others read the padding.
                    w_off = j - pad
                    o_lo = min(_first_valid(w_off, stride), W_out)
                    o_hi = max(_end_valid(w_off, stride, W, W_out), o_lo)
                    for n in range(N):
                        for y in range(H_out):
                            dst = &cols[row, (n * H_out + y) * W_out]
                            h = y * stride + i - pad
                            if h < 0 or h >= H:
                                memset(dst, 0, W_out * sizeof(floating))
                                continue
                            memset(dst, 0, o_lo * sizeof(floating))
                            if o_hi > o_lo:
                                _gather(dst + o_lo, &x[n, c, h, o_lo * stride + w_off], o_hi - o_lo, stride)
                            memset(dst + o_hi, 0, (W_out - o_hi) * sizeof(floating))


def _col2im_add(const floating[:, ::1] cols, floating[:, :, :, ::1] x, Py_ssize_t field_height,
                Py_ssize_t field_width, Py_ssize_t pad, Py_ssize_t stride, Py_ssize_t H_out,
                Py_ssize_t W_out):
    """Add every entry of cols (C*HH*WW, N*H'*W') to the position of x (N, C, H, W) it was taken from."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t c, i, j, n, y, h, row, o_lo, o_hi, w_off
    with nogil:
        for c in range(C):
            for i in range(field_height):
                for j in range(field_width):
                    row = (c * field_height + i) * field_width + j
                    w_off = j - pad
                    o_lo = _first_valid(w_off, stride)
                    o_hi = _end_valid(w_off, stride, W, W_out)
                    if o_hi <= o_lo:
                        continue
                    for n in range(N):
                        for y in range(H_out):
                            h = y * stride + i - pad
                            if h < 0 or h >= H:
                                continue
                            _scatter_add(&x[n, c, h, o_lo * stride + w_off],
                                         &cols[row, (n * H_out + y) * W_out + o_lo], o_hi - o_lo, stride)


def _output_size(x_shape, field_height, field_width, pad, stride):
    N, C, H, W = x_shape
    return (H + 2 * pad - field_height) // stride + 1, (W + 2 * pad - field_width) // stride + 1


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
    H_out, W_out = _output_size(x.shape, field_height, field_width, pad, stride)
    cols = np.empty((x.shape[1] * field_height * field_width, x.shape[0] * H_out * W_out), dtype=x.dtype)
    _im2col_fill(x, cols, field_height, field_width, pad, stride, H_out, W_out)
    return cols


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
    H_out, W_out = _output_size(x_shape, field_height, field_width, pad, stride)
    x = np.zeros(tuple(x_shape), dtype=cols.dtype)
    _col2im_add(cols, x, field_height, field_width, pad, stride, H_out, W_out)
    return x
