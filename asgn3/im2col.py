"""im2col and col2im in pure numpy: the fallback of the Cython extension, with the same numbers.

cols has one row per (channel c, filter row i, filter column j), in that order, and one column per
(image n, output row y, output column x), in that order, so cols has shape (C*HH*WW, N*H'*W').
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def output_size(x_shape, field_height, field_width, pad, stride):
    """Return (H', W'), the number of receptive fields along the height and the width of x (N, C, H, W)."""
    H, W = x_shape[2], x_shape[3]
    return (H + 2 * pad - field_height) // stride + 1, (W + 2 * pad - field_width) // stride + 1


def im2col(x, field_height, field_width, pad, stride):
    """
    Gather the receptive fields of a zero-padded input into the columns of a matrix.

    Inputs:
    - x: input of shape (N, C, H, W)
    - field_height, field_width: filter size HH, WW
    - pad: zero padding on each side of H and W
    - stride: step between receptive fields

    Returns:
    - cols: array of shape (C*HH*WW, N*H'*W'), the dtype of x
    """
    N, C = x.shape[:2]
    H_out, W_out = output_size(x.shape, field_height, field_width, pad, stride)
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    # A read-only strided view (N, C, H'', W'', HH, WW) of every window; keep every stride-th one.
    windows = sliding_window_view(x_pad, (field_height, field_width), axis=(2, 3))
    windows = windows[:, :, : H_out * stride : stride, : W_out * stride : stride]
    # One strided gather: the reshape of the transposed view copies it into the cols layout.
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(C * field_height * field_width, N * H_out * W_out)


def col2im(cols, x_shape, field_height, field_width, pad, stride):
    """
    Scatter-add the columns of a matrix back into an input-shaped array: the adjoint of im2col.

    Inputs:
    - cols: array of shape (C*HH*WW, N*H'*W')
    - x_shape: (N, C, H, W), the shape of the input im2col was given
    - field_height, field_width, pad, stride: as for im2col

    Returns:
    - x: array of shape (N, C, H, W), the dtype of cols
    """
    N, C, H, W = x_shape
    H_out, W_out = output_size(x_shape, field_height, field_width, pad, stride)
    x_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    fields = cols.reshape(C, field_height, field_width, N, H_out, W_out).transpose(3, 0, 1, 2, 4, 5)
    # One vectorized add per filter offset (i, j): the loop runs over the HH*WW offsets, not over pixels.
    for i in range(field_height):
        for j in range(field_width):
            x_pad[:, :, i : i + H_out * stride : stride, j : j + W_out * stride : stride] += fields[
                :, :, i, j
            ]
    return np.ascontiguousarray(x_pad[:, :, pad : pad + H, pad : pad + W])


# ---------------------------------------------------------------------------------------------------------
# The classic kit's index-based helpers, kept under their names for old notebooks and guides. They use the
# classic column order: one column per (output row y, output column x, image n), the image fastest, so
# their cols equal im2col's with the columns permuted. Slower than im2col above (a fancy-indexing gather).
# ---------------------------------------------------------------------------------------------------------


def get_im2col_indices(x_shape, field_height, field_width, padding=1, stride=1):
    """
    The indices that gather every receptive field of a zero-padded input.

    Inputs:
    - x_shape: (N, C, H, W)
    - field_height, field_width: filter size HH, WW
    - padding, stride: zero padding on each side, step between receptive fields

    Returns a tuple of:
    - k: channel of each row, shape (C*HH*WW, 1)
    - i: padded-input row of each (row, output position), shape (C*HH*WW, H'*W')
    - j: padded-input column of each (row, output position), shape (C*HH*WW, H'*W')
    so that x_padded[:, k, i, j] has shape (N, C*HH*WW, H'*W').
    """
    C = x_shape[1]
    H_out, W_out = output_size(x_shape, field_height, field_width, padding, stride)
    # rows: (channel, filter row, filter column); positions: (output row, output column)
    filter_rows = np.tile(np.repeat(np.arange(field_height), field_width), C)
    filter_cols = np.tile(np.arange(field_width), field_height * C)
    output_rows = stride * np.repeat(np.arange(H_out), W_out)
    output_cols = stride * np.tile(np.arange(W_out), H_out)
    k = np.repeat(np.arange(C), field_height * field_width)[:, None]
    i = filter_rows[:, None] + output_rows[None, :]
    j = filter_cols[:, None] + output_cols[None, :]
    return k, i, j


def im2col_indices(x, field_height, field_width, padding=1, stride=1):
    """
    Gather the receptive fields of x (N, C, H, W) into cols of shape (C*HH*WW, H'*W'*N), in the classic
    column order (the image fastest).
    """
    p = padding
    x_padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    k, i, j = get_im2col_indices(x.shape, field_height, field_width, padding, stride)
    fields = x_padded[:, k, i, j]  # (N, C*HH*WW, H'*W')
    return fields.transpose(1, 2, 0).reshape(fields.shape[1], -1)


def col2im_indices(cols, x_shape, field_height=3, field_width=3, padding=1, stride=1):
    """
    Scatter-add cols of shape (C*HH*WW, H'*W'*N), in the classic column order, back into an array of
    shape x_shape = (N, C, H, W): the adjoint of im2col_indices.
    """
    N, C, H, W = x_shape
    p = padding
    x_padded = np.zeros((N, C, H + 2 * p, W + 2 * p), dtype=cols.dtype)
    k, i, j = get_im2col_indices(x_shape, field_height, field_width, padding, stride)
    fields = cols.reshape(cols.shape[0], -1, N).transpose(2, 0, 1)  # (N, C*HH*WW, H'*W')
    np.add.at(x_padded, (slice(None), k, i, j), fields)  # overlapping fields add up
    return x_padded[:, :, p : p + H, p : p + W]
