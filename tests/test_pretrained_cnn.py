"""Tests of PretrainedCNN: gradients, forward in pieces, the weights file layout and its errors."""

import h5py
import numpy as np
import pytest

from asgn3 import data_paths
from asgn3.classifiers.pretrained_cnn import (
    CLASSIC_PADS,
    CLASSIC_STRIDES,
    PretrainedCNN,
    read_architecture,
)
from asgn3.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array
from asgn3.notebook_checks import rel_error

SMALL = dict(
    num_classes=4,
    input_size=8,
    num_filters=(3, 4),
    filter_sizes=(3, 3),
    strides=(2, 1),
    pads=(1, 1),
    hidden_dim=5,
)


def small_model(dtype=np.float64, seed=0):
    """A two-block model with random weights and random (non-trivial) batchnorm statistics."""
    model = PretrainedCNN(dtype=dtype, seed=seed, **SMALL)
    rng = np.random.default_rng(seed + 100)
    for name, value in model.params.items():
        if name.startswith(("gamma", "beta", "b")):
            model.params[name] = (value + 0.3 * rng.standard_normal(value.shape)).astype(dtype)
    for bn_param in model.bn_params:
        dim = bn_param["running_mean"].shape[0]
        bn_param["running_mean"] = (0.2 * rng.standard_normal(dim)).astype(dtype)
        bn_param["running_var"] = rng.uniform(0.5, 2.0, dim).astype(dtype)
    return model


def test_classic_architecture_shapes():
    model = PretrainedCNN(seed=0)
    assert model.num_layers == 11
    assert model.params["W1"].shape == (64, 3, 5, 5)
    assert model.params["W9"].shape == (1024, 512, 3, 3)
    assert model.params["W10"].shape == (1024 * 2 * 2, 512)
    assert model.params["W11"].shape == (512, 100)
    assert all(v.dtype == np.float32 for v in model.params.values())
    scores, _ = model.forward(np.zeros((1, 3, 64, 64), np.float32))
    assert scores.shape == (1, 100) and scores.dtype == np.float32
    # The convolutions take larger images (DeepDream); the affine layers do not.
    feats, _ = model.forward(np.zeros((1, 3, 96, 96), np.float32), end=8)
    assert feats.shape == (1, 1024, 3, 3)
    with pytest.raises(ValueError, match="4096"):
        model.forward(np.zeros((1, 3, 96, 96), np.float32))


def test_backward_to_image_matches_numeric_gradient():
    model = small_model()
    X = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    scores, cache = model.forward(X)
    dscores = np.random.default_rng(2).standard_normal(scores.shape)
    dX, grads = model.backward(dscores, cache)
    dX_num = eval_numerical_gradient_array(lambda x: model.forward(x)[0], X, dscores)
    err = rel_error(dX, dX_num)
    print("dX relative error", err)
    assert err < 1e-6
    assert set(grads) == set(model.params)


def test_backward_from_a_middle_layer_to_image():
    model = small_model()
    X = np.random.default_rng(3).standard_normal((2, 3, 8, 8))
    feats, cache = model.forward(X, end=1)
    dfeats = np.random.default_rng(4).standard_normal(feats.shape)
    dX, grads = model.backward(dfeats, cache)
    dX_num = eval_numerical_gradient_array(lambda x: model.forward(x, end=1)[0], X, dfeats)
    err = rel_error(dX, dX_num)
    print("dX (to layer 1) relative error", err)
    assert err < 1e-6
    assert set(grads) == {"W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2"}


def test_loss_gradients_match_numeric_gradients():
    model = small_model()
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4, 3, 8, 8))
    y = rng.integers(0, 4, size=4)
    loss, grads = model.loss(X, y)
    assert np.isfinite(loss)
    for name in sorted(model.params):
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False)
        err = rel_error(grads[name], num)
        print(name, "relative error", err, "absolute error", np.max(np.abs(grads[name] - num)))
        # A bias followed by train-mode batchnorm has a zero gradient: compare absolutely there.
        assert err < 1e-5 or np.max(np.abs(grads[name] - num)) < 1e-9, name


def test_forward_in_pieces_equals_full_forward():
    model = small_model()
    X = np.random.default_rng(6).standard_normal((3, 3, 8, 8))
    full, full_cache = model.forward(X)
    out = X
    for start, end in [(0, 0), (1, 2), (3, 3)]:
        out, _ = model.forward(out, start=start, end=end)
    np.testing.assert_array_equal(out, full)
    # Backward in pieces equals one full backward too.
    dscores = np.ones_like(full)
    dX_full, _ = model.backward(dscores, full_cache)
    feats, cache_low = model.forward(X, end=1)
    _, cache_high = model.forward(feats, start=2)
    dfeats, _ = model.backward(dscores, cache_high)
    dX_pieces, _ = model.backward(dfeats, cache_low)
    np.testing.assert_allclose(dX_pieces, dX_full, rtol=1e-12, atol=1e-14)


def test_save_load_round_trip_rebuilds_the_architecture(tmp_path):
    model = small_model(dtype=np.float32)
    X = np.random.default_rng(7).standard_normal((3, 3, 8, 8)).astype(np.float32)
    path = tmp_path / "model.h5"
    model.save_weights(path)
    with h5py.File(path, "r") as f:
        assert f["W3"].shape == (5, 4 * 4 * 4)  # hidden affine stored transposed
        assert f["W4"].shape == (4, 5)
        assert list(f.attrs["strides"]) == [2, 1]
    loaded = PretrainedCNN(h5_file=path)  # default (classic) options, overridden by the file
    assert loaded.num_filters == (3, 4) and loaded.hidden_dim == 5 and loaded.num_classes == 4
    assert loaded.input_size == 8
    np.testing.assert_array_equal(loaded.loss(X), model.loss(X))


def test_loader_accepts_both_orientations_and_the_classic_file_without_attributes(tmp_path):
    # A 9-block file in the classic key layout, without attributes: classic strides and pads apply.
    narrow = dict(num_filters=(2,) * 9, hidden_dim=3, num_classes=4, input_size=64)
    model = PretrainedCNN(seed=1, **narrow)
    X = np.random.default_rng(8).standard_normal((2, 3, 64, 64)).astype(np.float32)
    path = tmp_path / "classic.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        for name in list(f.attrs):
            del f.attrs[name]
    arch = read_architecture(path)
    assert arch["strides"] == CLASSIC_STRIDES and arch["pads"] == CLASSIC_PADS
    assert arch["input_size"] is None
    np.testing.assert_array_equal(PretrainedCNN(h5_file=path).loss(X), model.loss(X))
    # The affine weights stored in the params' own orientation (in, out) load too.
    with h5py.File(path, "a") as f:
        for key in ("W10", "W11"):
            value = np.asarray(f[key]).T
            del f[key]
            f.create_dataset(key, data=value)
    np.testing.assert_array_equal(PretrainedCNN(h5_file=path).loss(X), model.loss(X))


def test_loader_errors_name_key_and_shapes(tmp_path):
    model = small_model(dtype=np.float32)
    path = tmp_path / "model.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        del f["gamma2"]
    with pytest.raises(ValueError, match=r"'gamma2' is missing \(expected shape \(4,\)\)"):
        PretrainedCNN(h5_file=path)
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        del f["running_var3"]
        f.create_dataset("running_var3", data=np.ones(7, np.float32))
    with pytest.raises(ValueError, match=r"'running_var3' has shape \(7,\), expected \(5,\)"):
        PretrainedCNN(h5_file=path)
    # Loading into a model of another architecture names the mismatching key.
    other = PretrainedCNN(seed=0, **{**SMALL, "hidden_dim": 6})
    with pytest.raises(ValueError, match=r"'W3' has shape \(5, 64\), expected \(64, 6\) or \(6, 64\)"):
        other.load_weights(path)
    with pytest.raises(FileNotFoundError, match="get_pretrained_model.sh"):
        PretrainedCNN(h5_file=tmp_path / "absent.h5")


def test_bad_arguments_are_clear_errors():
    model = small_model()
    with pytest.raises(ValueError, match="start=3, end=1"):
        model.forward(np.zeros((1, 5)), start=3, end=1)
    with pytest.raises(ValueError, match=r"expects X of shape \(N, 3, H, W\)"):
        model.forward(np.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="mode"):
        model.forward(np.zeros((1, 3, 8, 8)), mode="eval")
    with pytest.raises(ValueError, match="one entry per conv block"):
        PretrainedCNN(num_filters=(3, 4), filter_sizes=(3,), strides=(1, 1), pads=(1, 1))
    with pytest.raises(ValueError, match="too small"):
        PretrainedCNN(input_size=2, num_filters=(2, 2), filter_sizes=(3, 3), strides=(2, 2), pads=(0, 0))


def test_train_mode_updates_running_statistics_and_seed_is_deterministic():
    a, b = PretrainedCNN(seed=3, **SMALL), PretrainedCNN(seed=3, **SMALL)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    X = np.random.default_rng(9).standard_normal((4, 3, 8, 8)).astype(np.float32)
    before = a.bn_params[0]["running_mean"].copy()
    a.loss(X, np.array([0, 1, 2, 3]))
    assert not np.allclose(a.bn_params[0]["running_mean"], before)


def test_seed_none_draws_from_np_random_as_in_the_classic_kit():
    np.random.seed(0)
    a = PretrainedCNN(**SMALL)
    np.random.seed(0)
    b = PretrainedCNN(**SMALL)
    c = PretrainedCNN(**SMALL)  # the global generator has moved on
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_forward_leaves_the_batchnorm_modes_as_they_were():
    model = small_model()
    model.bn_params[0]["mode"] = "train"
    X = np.random.default_rng(10).standard_normal((4, 3, 8, 8))
    before = [bn_param["running_mean"].copy() for bn_param in model.bn_params]
    model.forward(X, mode="test")
    assert [bn_param["mode"] for bn_param in model.bn_params] == ["train", "test", "test"]
    for bn_param, old in zip(model.bn_params, before, strict=True):
        np.testing.assert_array_equal(bn_param["running_mean"], old)
    model.forward(X, mode="train")  # updates the statistics, not the modes
    assert [bn_param["mode"] for bn_param in model.bn_params] == ["train", "test", "test"]
    assert not np.allclose(model.bn_params[1]["running_mean"], before[1])


def test_a_classic_weights_path_that_does_not_exist_means_the_kits_model(tmp_path, monkeypatch, capsys):
    path = tmp_path / "mine.h5"
    small_model(dtype=np.float32).save_weights(path)
    monkeypatch.setenv("ASGN3_DATA", "default")
    monkeypatch.setattr(data_paths, "DEFAULT_PRETRAINED_MODEL", path)
    model = PretrainedCNN(h5_file=tmp_path / "cs231n" / "datasets" / "pretrained_model.h5")
    assert model.num_filters == SMALL["num_filters"]
    assert capsys.readouterr().out.strip().endswith(f"using the kit's pretrained_model.h5 in {path}")


def test_reinitialize_layer_gives_one_layer_fresh_weights_and_statistics():
    model = PretrainedCNN(seed=0, **SMALL)
    for key in model.params:
        model.params[key] = model.params[key] + 1.0  # "trained"
    model.bn_params[1]["running_mean"] = np.full(4, 3.0, np.float32)
    before = {key: value.copy() for key, value in model.params.items()}
    model.reinitialize_layer(1, seed=5)
    fresh = PretrainedCNN(seed=5, **SMALL)
    for key, value in model.params.items():
        expected = fresh.params[key] if key[-1] == "2" else before[key]
        np.testing.assert_array_equal(value, expected, err_msg=key)
    np.testing.assert_array_equal(model.bn_params[1]["running_mean"], np.zeros(4))
    np.testing.assert_array_equal(model.bn_params[1]["running_var"], np.ones(4))
    model.reinitialize_layer(3)  # the scores: no batchnorm
    with pytest.raises(ValueError, match="layers must satisfy"):
        model.reinitialize_layer(4)
