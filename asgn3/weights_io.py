"""The HDF5 weights files of PretrainedCNN, in the layout of the classic kit's `pretrained_model.h5`.

Layout, with L conv blocks:
  W1..WL        (F, C, k, k)     conv filters            b1..bL, gamma1..gammaL, beta1..betaL  (F,)
  W{L+1}        (hidden, D)      hidden affine, stored TRANSPOSED (the param is (D, hidden))
  W{L+2}        (classes, hidden) score affine, stored TRANSPOSED (the param is (hidden, classes))
  b{L+1}, gamma{L+1}, beta{L+1} (hidden,)               b{L+2} (classes,)
  running_mean1..running_mean{L+1}, running_var1..running_var{L+1}   batchnorm statistics
  attributes `strides`, `pads`, `input_size` (written by write_weights; optional when reading)
The affine weights (the 2-D W keys) are read in either orientation (for a square matrix the stored one is
assumed), so the classic file loads as it is. The classic file has no attributes: it gets the classic
strides and pads.
"""

import h5py
import numpy as np

CLASSIC_STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 2)
CLASSIC_PADS = (2, 1, 1, 1, 1, 1, 1, 1, 1)


def open_weights(h5_file):
    """Open a weights file for reading, with an error that says how to get the file."""
    try:
        return h5py.File(h5_file, "r")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"weights file {h5_file} not found: run datasets/get_pretrained_model.sh for the classic "
            f"model, or use asgn3.data_paths.pretrained_model_path() for the one that is present"
        ) from None


def read_architecture(h5_file):
    """
    Read the architecture of a PretrainedCNN from the shapes and attributes of its weights file.

    Inputs:
    - h5_file: path of an HDF5 weights file in the layout of this module's docstring.

    Returns a dict with keys num_filters, filter_sizes, strides, pads (tuples, one entry per conv
    block), in_channels, hidden_dim, num_classes (ints) and input_size (int, or None when the file
    does not say).
    """
    with open_weights(h5_file) as f:
        depth = 0
        while f"W{depth + 1}" in f and f[f"W{depth + 1}"].ndim == 4:
            depth += 1
        if depth == 0:
            raise ValueError(
                f"{h5_file}: expected conv filters W1, W2, ... of shape (F, C, k, k); found "
                f"none (keys: {sorted(f.keys())})"
            )
        shapes = [f[f"W{i}"].shape for i in range(1, depth + 1)]
        for i, shape in enumerate(shapes, start=1):
            if shape[2] != shape[3]:
                raise ValueError(f"{h5_file}: W{i} must hold square filters (F, C, k, k); got {shape}")
        for key in (f"b{depth + 1}", f"b{depth + 2}"):
            if key not in f:
                raise ValueError(
                    f"{h5_file}: key {key!r} is missing: the affine layers after {depth} conv blocks need it"
                )
        strides = f.attrs.get("strides")
        pads = f.attrs.get("pads")
        input_size = f.attrs.get("input_size")
        arch = {
            "num_filters": tuple(s[0] for s in shapes),
            "filter_sizes": tuple(s[2] for s in shapes),
            "in_channels": shapes[0][1],
            "hidden_dim": f[f"b{depth + 1}"].shape[0],
            "num_classes": f[f"b{depth + 2}"].shape[0],
            "input_size": None if input_size is None else int(input_size),
        }
    if strides is None or pads is None:
        if depth != len(CLASSIC_STRIDES):
            raise ValueError(
                f"{h5_file}: has {depth} conv blocks but no 'strides'/'pads' attributes; only "
                f"the classic {len(CLASSIC_STRIDES)}-block file may omit them (save_weights "
                f"writes them)"
            )
        strides, pads = CLASSIC_STRIDES, CLASSIC_PADS
    arch["strides"] = tuple(int(s) for s in strides)
    arch["pads"] = tuple(int(p) for p in pads)
    return arch


def _stored_transposed(key, shape):
    """The affine weights (2-D W keys) are stored (out, in), the transpose of the params."""
    return key.startswith("W") and len(shape) == 2


def read_weights(h5_file, expected, dtype, verbose=False):
    """
    Read arrays of known shapes from a weights file.

    Inputs:
    - h5_file: path of the weights file.
    - expected: dict key -> the shape the caller needs (the param's shape: affine weights (in, out)).
    - dtype: numpy type of the returned arrays.
    - verbose: print each key and shape as it is read.

    Returns a dict key -> C-contiguous array of dtype, affine weights transposed back to (in, out).
    """
    arrays = {}
    with open_weights(h5_file) as f:
        for key, shape in expected.items():
            if key not in f:
                raise ValueError(f"{h5_file}: key {key!r} is missing (expected shape {shape})")
            value = np.asarray(f[key])
            transposed = _stored_transposed(key, shape)
            if transposed and value.shape == shape[::-1]:
                value = value.T
            elif value.shape != shape:
                raise ValueError(
                    f"{h5_file}: key {key!r} has shape {value.shape}, expected {shape}"
                    + (f" or {shape[::-1]}" if transposed else "")
                )
            if verbose:
                print(key, value.shape)
            arrays[key] = np.ascontiguousarray(value, dtype=dtype)
    return arrays


def write_weights(h5_file, arrays, attrs):
    """
    Write arrays in the classic layout: the affine weights (2-D W keys) transposed to (out, in).

    Inputs:
    - h5_file: path of the file to write.
    - arrays: dict key -> array (params and batchnorm statistics).
    - attrs: dict of HDF5 attributes, e.g. strides, pads and input_size, so that the file alone rebuilds
      the network.
    """
    with h5py.File(h5_file, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value.T if _stored_transposed(key, value.shape) else value)
        for name, value in attrs.items():
            f.attrs[name] = value
