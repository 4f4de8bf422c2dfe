"""The pretrained CNN whose image gradients questions 3 and 4 study.

The network is a stack of conv - spatial batchnorm - ReLU blocks without pooling (strided convolutions
shrink the image), then affine - batchnorm - ReLU to a hidden layer, then affine to the class scores.
With L conv blocks the layers are numbered 0..L-1 (conv blocks), L (hidden affine block) and L+1 (scores);
the classic network has L = 9, so layers 0..8, 9 and 10.

The default is the classic architecture, whose weights `pretrained_model.h5` the classic kit downloaded.
Keyword options build a narrower or shallower network of the same shape, and a weights file fixes the
architecture itself: the depth, widths, filter sizes, hidden dimension and number of classes are read
from the shapes in the file, the strides and pads from its attributes (the classic file has none and gets
the classic ones).

Weights file layout (HDF5), with L conv blocks:
  W1..WL        (F, C, k, k)     conv filters            b1..bL, gamma1..gammaL, beta1..betaL  (F,)
  W{L+1}        (hidden, D)      hidden affine, stored TRANSPOSED (the param is (D, hidden))
  W{L+2}        (classes, hidden) score affine, stored TRANSPOSED (the param is (hidden, classes))
  b{L+1}, gamma{L+1}, beta{L+1} (hidden,)               b{L+2} (classes,)
  running_mean1..running_mean{L+1}, running_var1..running_var{L+1}   batchnorm statistics
  attributes `strides`, `pads`, `input_size` (written by `save_weights`; optional when reading)
The loader takes W{L+1} and W{L+2} in either orientation (for a square matrix the stored one is assumed).
"""

import h5py
import numpy as np

from asgn3.layer_utils import (
    affine_bn_relu_backward,
    affine_bn_relu_forward,
    conv_bn_relu_backward,
    conv_bn_relu_forward,
)
from asgn3.layers import affine_backward, affine_forward, conv_output_shape, softmax_loss

CLASSIC_FILTER_SIZES = (5, 3, 3, 3, 3, 3, 3, 3, 3)
CLASSIC_NUM_FILTERS = (64, 64, 128, 128, 256, 256, 512, 512, 1024)
CLASSIC_STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 2)
CLASSIC_PADS = (2, 1, 1, 1, 1, 1, 1, 1, 1)
CLASSIC_HIDDEN_DIM = 512


def _open_weights(h5_file):
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
    with _open_weights(h5_file) as f:
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


class PretrainedCNN:
    """
    Conv - spatial batchnorm - ReLU blocks, then affine - batchnorm - ReLU, then affine to scores.

    Parameters live in self.params (W1, b1, gamma1, beta1, ...), the batchnorm running statistics in
    self.bn_params[i]['running_mean'] and ['running_var'] (one dict per batchnorm layer).
    """

    def __init__(
        self,
        dtype=np.float32,
        num_classes=100,
        input_size=64,
        h5_file=None,
        num_filters=CLASSIC_NUM_FILTERS,
        filter_sizes=CLASSIC_FILTER_SIZES,
        strides=CLASSIC_STRIDES,
        pads=CLASSIC_PADS,
        hidden_dim=CLASSIC_HIDDEN_DIM,
        in_channels=3,
        seed=None,
    ):
        """
        Build the network, with random weights or with the weights of h5_file.

        Inputs:
        - dtype: numpy float type of the parameters and of the computation.
        - num_classes: number of class scores.
        - input_size: side of the square images the affine layers are sized for (convolutions alone
          take any size).
        - h5_file: optional weights file. Its shapes and attributes override num_filters,
          filter_sizes, strides, pads, hidden_dim, num_classes, in_channels (and input_size when the
          file stores it).
        - num_filters, filter_sizes, strides, pads: one entry per conv block (same lengths).
        - hidden_dim: width of the hidden affine layer.
        - in_channels: channels of the input images.
        - seed: seed of the random (He) initialisation when there is no h5_file.
        """
        if h5_file is not None:
            arch = read_architecture(h5_file)
            num_filters, filter_sizes = arch["num_filters"], arch["filter_sizes"]
            strides, pads = arch["strides"], arch["pads"]
            hidden_dim, num_classes = arch["hidden_dim"], arch["num_classes"]
            in_channels = arch["in_channels"]
            input_size = arch["input_size"] or input_size
        lengths = {len(num_filters), len(filter_sizes), len(strides), len(pads)}
        if len(lengths) != 1 or 0 in lengths:
            found = [len(num_filters), len(filter_sizes), len(strides), len(pads)]
            raise ValueError(
                f"num_filters, filter_sizes, strides and pads need one entry per conv block; "
                f"got lengths {found}"
            )
        self.dtype = dtype
        self.num_classes = int(num_classes)
        self.input_size = int(input_size)
        self.in_channels = int(in_channels)
        self.num_filters = tuple(int(f) for f in num_filters)
        self.filter_sizes = tuple(int(k) for k in filter_sizes)
        self.hidden_dim = int(hidden_dim)
        self.conv_params = [{"stride": int(s), "pad": int(p)} for s, p in zip(strides, pads, strict=True)]
        self.num_conv = len(self.conv_params)
        self.num_layers = self.num_conv + 2

        self.feature_sizes = self._feature_sizes(self.input_size)
        self.bn_params = [
            {"mode": "test", "running_mean": np.zeros(dim, dtype), "running_var": np.ones(dim, dtype)}
            for dim in (*self.num_filters, self.hidden_dim)
        ]
        if h5_file is None:
            self.params = self._random_params(np.random.default_rng(seed))
        else:
            self.load_weights(h5_file)

    def _feature_sizes(self, size):
        """Spatial sizes after each conv block for a size x size input."""
        sizes, channels = [], self.in_channels
        for f, k, cp in zip(self.num_filters, self.filter_sizes, self.conv_params, strict=True):
            try:
                _, _, size, _ = conv_output_shape((1, channels, size, size), (f, channels, k, k), (f,), cp)
            except ValueError as err:
                raise ValueError(
                    f"input_size={self.input_size} is too small for these convolutions, after "
                    f"spatial sizes {sizes}: {err}"
                ) from err
            sizes.append(size)
            channels = f
        return sizes

    def param_shapes(self):
        """Dict of the shape of every parameter, keyed like self.params."""
        shapes = {}
        prev = self.in_channels
        for i, (f, k) in enumerate(zip(self.num_filters, self.filter_sizes, strict=True), start=1):
            shapes.update({f"W{i}": (f, prev, k, k), f"b{i}": (f,), f"gamma{i}": (f,), f"beta{i}": (f,)})
            prev = f
        h, c = self.num_conv + 1, self.num_conv + 2
        fan_in = prev * self.feature_sizes[-1] ** 2
        shapes.update(
            {
                f"W{h}": (fan_in, self.hidden_dim),
                f"b{h}": (self.hidden_dim,),
                f"gamma{h}": (self.hidden_dim,),
                f"beta{h}": (self.hidden_dim,),
            }
        )
        shapes.update({f"W{c}": (self.hidden_dim, self.num_classes), f"b{c}": (self.num_classes,)})
        return shapes

    def _random_params(self, rng):
        """He-initialised weights, zero biases and betas, unit gammas."""
        params = {}
        for key, shape in self.param_shapes().items():
            if key.startswith("W"):
                fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
                value = np.sqrt(2.0 / fan_in) * rng.standard_normal(shape)
            elif key.startswith("gamma"):
                value = np.ones(shape)
            else:
                value = np.zeros(shape)
            params[key] = value.astype(self.dtype)
        return params

    def _is_stored_transposed(self, key):
        """True for the affine weights, which the file stores as (out, in)."""
        return key in (f"W{self.num_conv + 1}", f"W{self.num_conv + 2}")

    def load_weights(self, h5_file, verbose=False):
        """
        Load every parameter and batchnorm statistic from h5_file (layout in the module docstring).

        Inputs:
        - h5_file: path of the weights file; it must match this network's architecture.
        - verbose: print each key and shape as it is read.
        """
        expected = self.param_shapes()
        for i, bn_param in enumerate(self.bn_params, start=1):
            expected[f"running_mean{i}"] = bn_param["running_mean"].shape
            expected[f"running_var{i}"] = bn_param["running_var"].shape
        values = {}
        with _open_weights(h5_file) as f:
            for key, shape in expected.items():
                if key not in f:
                    raise ValueError(f"{h5_file}: key {key!r} is missing (expected shape {shape})")
                value = np.asarray(f[key])
                if self._is_stored_transposed(key) and value.shape == shape[::-1]:
                    value = value.T
                elif value.shape != shape:
                    raise ValueError(
                        f"{h5_file}: key {key!r} has shape {value.shape}, expected {shape}"
                        + (f" or {shape[::-1]}" if self._is_stored_transposed(key) else "")
                    )
                if verbose:
                    print(key, value.shape)
                values[key] = np.ascontiguousarray(value, dtype=self.dtype)
        self.params = {key: values[key] for key in self.param_shapes()}
        for i, bn_param in enumerate(self.bn_params, start=1):
            bn_param["running_mean"] = values[f"running_mean{i}"]
            bn_param["running_var"] = values[f"running_var{i}"]

    def save_weights(self, h5_file):
        """
        Write every parameter and batchnorm statistic to h5_file in the classic layout.

        The affine weights are written transposed, as in the classic file, and the strides, pads and
        input_size go into HDF5 attributes so that the file alone rebuilds the network.
        """
        with h5py.File(h5_file, "w") as f:
            for key, value in self.params.items():
                f.create_dataset(key, data=value.T if self._is_stored_transposed(key) else value)
            for i, bn_param in enumerate(self.bn_params, start=1):
                f.create_dataset(f"running_mean{i}", data=bn_param["running_mean"])
                f.create_dataset(f"running_var{i}", data=bn_param["running_var"])
            f.attrs["strides"] = [cp["stride"] for cp in self.conv_params]
            f.attrs["pads"] = [cp["pad"] for cp in self.conv_params]
            f.attrs["input_size"] = self.input_size

    def _check_range(self, start, end):
        """Fill in default layer indices and check 0 <= start <= end < num_layers."""
        start = 0 if start is None else int(start)
        end = self.num_layers - 1 if end is None else int(end)
        if not 0 <= start <= end < self.num_layers:
            raise ValueError(
                f"layers must satisfy 0 <= start <= end <= {self.num_layers - 1}; "
                f"got start={start}, end={end}"
            )
        return start, end

    def _check_input(self, X, start):
        """Check that X is what layer `start` takes, with an error that names the expected shape."""
        if start < self.num_conv:
            channels = self.in_channels if start == 0 else self.num_filters[start - 1]
            if X.ndim != 4 or X.shape[1] != channels:
                raise ValueError(
                    f"layer {start} (conv) expects X of shape (N, {channels}, H, W); got {X.shape}"
                )
            return
        fan_in = self.params[f"W{start + 1}"].shape[0]
        if X.ndim < 2 or int(np.prod(X.shape[1:])) != fan_in:
            hint = ""
            if start == self.num_conv:
                side = self.feature_sizes[-1]
                hint = (
                    f" such as (N, {self.num_filters[-1]}, {side}, {side}) from a {self.input_size}x"
                    f"{self.input_size} image; the affine layers need input_size images, run only the "
                    f"conv layers (end <= {self.num_conv - 1}) on other sizes"
                )
            raise ValueError(
                f"layer {start} (affine) expects N inputs of {fan_in} values{hint}; got {X.shape}"
            )

    def forward(self, X, start=None, end=None, mode="test"):
        """
        Run layers start..end (inclusive) on X.

        Inputs:
        - X: what layer `start` takes: images (N, C, H, W) for start = 0, the activations of layer
          start - 1 otherwise.
        - start, end: layer indices, default 0 and num_layers - 1 (the scores).
        - mode: 'test' uses the batchnorm running statistics, 'train' the batch statistics (and
          updates the running ones).

        Returns a tuple of:
        - out: output of layer `end`: (N, F, H', W') for a conv block, (N, hidden_dim) for the hidden
          layer, (N, num_classes) scores for the last.
        - cache: (start, end, list of layer caches), for backward.
        """
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test'; got {mode!r}")
        start, end = self._check_range(start, end)
        X = np.asarray(X).astype(self.dtype, copy=False)
        self._check_input(X, start)
        out = X
        caches = []
        for i in range(start, end + 1):
            p = self.params
            n = i + 1  # parameter keys count from 1
            if i < self.num_conv:
                bn_param = self.bn_params[i]
                bn_param["mode"] = mode
                out, cache = conv_bn_relu_forward(
                    out, p[f"W{n}"], p[f"b{n}"], p[f"gamma{n}"], p[f"beta{n}"], self.conv_params[i], bn_param
                )
            elif i == self.num_conv:
                bn_param = self.bn_params[i]
                bn_param["mode"] = mode
                out, cache = affine_bn_relu_forward(
                    out, p[f"W{n}"], p[f"b{n}"], p[f"gamma{n}"], p[f"beta{n}"], bn_param
                )
            else:
                out, cache = affine_forward(out, p[f"W{n}"], p[f"b{n}"])
            caches.append(cache)
        return out, (start, end, caches)

    def backward(self, dout, cache):
        """
        Backpropagate through the layers a forward pass ran.

        Inputs:
        - dout: upstream gradient, shaped like the forward's output.
        - cache: the cache that forward returned.

        Returns a tuple of:
        - dX: gradient with respect to the forward's input X, shaped like X.
        - grads: dict of gradients for the parameters of the layers start..end only.
        """
        start, end, caches = cache
        grads = {}
        dout = np.asarray(dout).astype(self.dtype, copy=False)
        for i, layer_cache in zip(range(end, start - 1, -1), reversed(caches), strict=True):
            n = i + 1
            if i < self.num_conv:
                dout, dw, db, dgamma, dbeta = conv_bn_relu_backward(dout, layer_cache)
            elif i == self.num_conv:
                dout, dw, db, dgamma, dbeta = affine_bn_relu_backward(dout, layer_cache)
            else:
                dout, dw, db = affine_backward(dout, layer_cache)
            grads[f"W{n}"], grads[f"b{n}"] = dw, db
            if i <= self.num_conv:
                grads[f"gamma{n}"], grads[f"beta{n}"] = dgamma, dbeta
        return dout, grads

    def loss(self, X, y=None):
        """
        Class scores, or the softmax loss and its gradients.

        Inputs:
        - X: images (N, C, input_size, input_size).
        - y: optional integer labels (N,).

        Returns the scores (N, num_classes) in test mode when y is None; else a tuple of:
        - loss: softmax loss of a train-mode forward pass (it updates the batchnorm statistics).
        - grads: dict of gradients, keyed like self.params.
        """
        if y is None:
            scores, _ = self.forward(X, mode="test")
            return scores
        scores, cache = self.forward(X, mode="train")
        loss, dscores = softmax_loss(scores, y)
        _, grads = self.backward(dscores, cache)
        return loss, grads
