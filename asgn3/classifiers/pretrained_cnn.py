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

The weights file is HDF5 in the classic layout (asgn3/weights_io.py): load_weights and save_weights read
and write it, and the classic `pretrained_model.h5` loads as it is.
"""

import numpy as np

from asgn3.data_paths import resolve_classic_path
from asgn3.layer_utils import (
    affine_bn_relu_backward,
    affine_bn_relu_forward,
    conv_bn_relu_backward,
    conv_bn_relu_forward,
)
from asgn3.layers import affine_backward, affine_forward, conv_output_shape, softmax_loss
from asgn3.weights_io import CLASSIC_PADS, CLASSIC_STRIDES, read_architecture, read_weights, write_weights

CLASSIC_FILTER_SIZES = (5, 3, 3, 3, 3, 3, 3, 3, 3)
CLASSIC_NUM_FILTERS = (64, 64, 128, 128, 256, 256, 512, 512, 1024)
CLASSIC_HIDDEN_DIM = 512


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
        - seed: seed of the random (He) initialisation when there is no h5_file; None draws from np.random,
          so that np.random.seed(0) makes PretrainedCNN() reproducible, as in the classic kit.
        """
        if h5_file is not None:
            h5_file = resolve_classic_path(h5_file)
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
            self.params = self._random_params(np.random if seed is None else np.random.default_rng(seed))
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
        """He-initialised weights, zero biases and betas, unit gammas; rng is np.random or a Generator."""
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

    def load_weights(self, h5_file, verbose=False):
        """
        Load every parameter and batchnorm statistic from h5_file (layout in asgn3/weights_io.py).

        Inputs:
        - h5_file: path of the weights file; it must match this network's architecture.
        - verbose: print each key and shape as it is read.
        """
        expected = self.param_shapes()
        for i, bn_param in enumerate(self.bn_params, start=1):
            expected[f"running_mean{i}"] = bn_param["running_mean"].shape
            expected[f"running_var{i}"] = bn_param["running_var"].shape
        values = read_weights(h5_file, expected, self.dtype, verbose)
        self.params = {key: values[key] for key in self.param_shapes()}
        for i, bn_param in enumerate(self.bn_params, start=1):
            bn_param["running_mean"] = values[f"running_mean{i}"]
            bn_param["running_var"] = values[f"running_var{i}"]

    def save_weights(self, h5_file):
        """
        Write every parameter and batchnorm statistic to h5_file in the classic layout (affine weights
        transposed), with the strides, pads and input_size as attributes so that the file alone rebuilds
        the network.
        """
        arrays = dict(self.params)
        for i, bn_param in enumerate(self.bn_params, start=1):
            arrays[f"running_mean{i}"] = bn_param["running_mean"]
            arrays[f"running_var{i}"] = bn_param["running_var"]
        attrs = {
            "strides": [cp["stride"] for cp in self.conv_params],
            "pads": [cp["pad"] for cp in self.conv_params],
            "input_size": self.input_size,
        }
        write_weights(h5_file, arrays, attrs)

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
          updates the running ones). The 'mode' entries of self.bn_params are left as they were.

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
            if i <= self.num_conv:
                # A copy in the asked mode: the model's bn_params keep their own 'mode'.
                bn_param = {**self.bn_params[i], "mode": mode}
            if i < self.num_conv:
                out, cache = conv_bn_relu_forward(
                    out, p[f"W{n}"], p[f"b{n}"], p[f"gamma{n}"], p[f"beta{n}"], self.conv_params[i], bn_param
                )
            elif i == self.num_conv:
                out, cache = affine_bn_relu_forward(
                    out, p[f"W{n}"], p[f"b{n}"], p[f"gamma{n}"], p[f"beta{n}"], bn_param
                )
            else:
                out, cache = affine_forward(out, p[f"W{n}"], p[f"b{n}"])
            if i <= self.num_conv:  # the running statistics that a train-mode pass updated
                self.bn_params[i]["running_mean"] = bn_param["running_mean"]
                self.bn_params[i]["running_var"] = bn_param["running_var"]
            caches.append(cache)
        return out, (start, end, caches)

    def backward(self, dout, cache, guided=False):
        """
        Backpropagate through the layers a forward pass ran.

        Inputs:
        - dout: upstream gradient, shaped like the forward's output.
        - cache: the cache that forward returned.
        - guided: run every ReLU's backward in guided-backpropagation mode (negative upstream
          gradients zeroed too, see layers.relu_backward); dX is then the guided-backprop map, not a
          gradient. This call only: nothing is changed for the next one.

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
                dout, dw, db, dgamma, dbeta = conv_bn_relu_backward(dout, layer_cache, guided)
            elif i == self.num_conv:
                dout, dw, db, dgamma, dbeta = affine_bn_relu_backward(dout, layer_cache, guided)
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

    def reinitialize_layer(self, layer, seed=None):
        """
        Give one layer fresh weights, as a new network would have them (for the sanity checks of
        asgn3/attribution.py): He-initialised filters or weights, zero biases and betas, unit gammas,
        and batchnorm statistics of a fresh network (mean 0, variance 1).

        Inputs:
        - layer: layer index in 0..num_layers - 1.
        - seed: seed of the random weights.
        """
        self._check_range(layer, layer)
        fresh = self._random_params(np.random.default_rng(seed))
        n = layer + 1  # parameter keys count from 1
        for key in (f"W{n}", f"b{n}", f"gamma{n}", f"beta{n}"):
            if key in fresh:
                self.params[key] = fresh[key]
        if layer < len(self.bn_params):
            dim = len(self.bn_params[layer]["running_mean"])
            self.bn_params[layer]["running_mean"] = np.zeros(dim, self.dtype)
            self.bn_params[layer]["running_var"] = np.ones(dim, self.dtype)
