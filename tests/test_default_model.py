"""Tests of the shipped default PretrainedCNN (datasets/pretrained/default_pretrained_model.h5).

The weights must match their recorded checksum, score at least 88% on the default validation split, and
behave like a trained network under the image-gradient methods of the notebooks. The default data must have
been built (`bash kit.sh setup`).
"""

import copy
import sys

import numpy as np
import pytest

from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.coco_utils import load_coco_data
from asgn3.data_paths import DEFAULT_COCO_DIR, DEFAULT_PRETRAINED_MODEL, DEFAULT_TINY_IMAGENET_DIR
from asgn3.data_utils import load_tiny_imagenet
from asgn3.fast_layers import conv_forward_fast
from asgn3.image_gradients import create_class_visualization, deepdream, invert_features, make_fooling_image
from asgn3.image_utils import read_rgb_image, resize_bilinear
from datasets import train_default_model
from datasets.average_weights import average_models, recompute_batchnorm_statistics
from datasets.build_coco_default import cnn_features
from datasets.build_tiny_imagenet_default import build as build_tiny_imagenet
from datasets.checksum import read_checksum, sha256_of
from datasets.train_default_model import NUM_FILTERS, add_noise, augment, augmentation, widen

MODEL = DEFAULT_PRETRAINED_MODEL


@pytest.fixture(scope="module")
def model():
    return PretrainedCNN(h5_file=MODEL)


@pytest.fixture(scope="module")
def data():
    if not (DEFAULT_TINY_IMAGENET_DIR / "wnids.txt").is_file():
        raise FileNotFoundError(f"{DEFAULT_TINY_IMAGENET_DIR} is missing: run `bash kit.sh setup` first")
    return load_tiny_imagenet(DEFAULT_TINY_IMAGENET_DIR, verbose=False)


@pytest.fixture(scope="module")
def val_scores(model, data):
    return np.concatenate([model.loss(data["X_val"][i : i + 250]) for i in range(0, len(data["X_val"]), 250)])


def test_weights_match_their_checksum():
    assert MODEL.stat().st_size < 10 * 2**20  # a few MB, fit to commit
    recorded = read_checksum(MODEL)
    assert len(recorded) == 64 and sha256_of(MODEL) == recorded
    assert (MODEL.parent / (MODEL.name + ".sha256")).read_text() == f"{recorded}  {MODEL.name}\n"


def test_architecture_is_the_narrow_classic(model):
    assert model.num_conv == 9 and model.num_filters == NUM_FILTERS and model.num_classes == 10
    assert model.filter_sizes == (5, 3, 3, 3, 3, 3, 3, 3, 3)
    assert [cp["stride"] for cp in model.conv_params] == [2, 1, 2, 1, 2, 1, 2, 1, 2]
    assert model.num_filters[-1] * model.feature_sizes[-1] ** 2 > 512  # a raw feature wider than the PCA one


@pytest.mark.slow  # the data fixture loads the 50,000 training images (about a minute)
def test_validation_accuracy_is_at_least_88_percent(val_scores, data):
    accuracy = np.mean(val_scores.argmax(axis=1) == data["y_val"])
    print(f"validation accuracy of the shipped model: {accuracy:.4f}")
    assert accuracy >= 0.88
    per_class = [np.mean(val_scores[data["y_val"] == c].argmax(axis=1) == c) for c in range(10)]
    print("per class:", np.round(per_class, 2))
    assert min(per_class) >= 0.5


def test_training_noise_goes_on_about_half_of_each_batch_with_the_asked_spread():
    rng = np.random.default_rng(0)
    X = rng.uniform(-100, 100, size=(400, 3, 16, 16)).astype(np.float32)
    before = X.copy()
    noisy = add_noise(X, np.random.default_rng(1), noise_level=0.15)
    np.testing.assert_array_equal(X, before)  # the input is left as it was
    assert noisy.dtype == np.float32 and noisy.shape == X.shape
    changed = np.any(noisy != X, axis=(1, 2, 3))
    assert 0.4 < changed.mean() < 0.6
    spread = (noisy - X)[changed].std(axis=(1, 2, 3)) / np.ptp(X[changed], axis=(1, 2, 3))
    np.testing.assert_allclose(spread, 0.15, rtol=0.1)


def test_the_augmentation_choices():
    assert augmentation("all", 0) is augment
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 3, 8, 8)).astype(np.float32)
    same = augmentation("all", 0.1)(X, np.random.default_rng(3))
    # noise after the flips, shuffles and shifts, drawn from the same generator right after them
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(same, add_noise(augment(X, rng), rng, 0.1))


def test_widen_keeps_the_function_and_gives_the_new_filters_room_to_learn():
    small = PretrainedCNN(
        num_classes=5,
        input_size=16,
        num_filters=(4, 6),
        filter_sizes=(3, 3),
        strides=(2, 1),
        pads=(1, 1),
        hidden_dim=8,
        seed=0,
    )
    rng = np.random.default_rng(0)
    for bn_param in small.bn_params:  # trained-looking statistics, which the wide copy must keep
        bn_param["running_mean"] = rng.standard_normal(bn_param["running_mean"].shape).astype(np.float32)
        bn_param["running_var"] = rng.uniform(0.5, 2, bn_param["running_var"].shape).astype(np.float32)
    wide = widen(small, (7, 9), np.random.default_rng(1))
    assert wide.num_filters == (7, 9) and wide.params["W3"].shape == (9 * 8 * 8, 8)
    X = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(wide.loss(X), small.loss(X), rtol=1e-5, atol=1e-5)
    # in training mode (batch statistics) too, and the new filters get gradients through the next layer
    y = np.arange(6) % 5
    loss_small, _ = small.loss(X, y)
    loss_wide, grads = wide.loss(X, y)
    np.testing.assert_allclose(loss_wide, loss_small, rtol=1e-5)
    assert np.all(wide.params["W1"][4:] != 0) and np.any(grads["W2"][:, 4:] != 0)
    with pytest.raises(ValueError, match="at least"):
        widen(small, (3, 9), rng)


def test_average_models_is_the_mean_of_weights_and_statistics_and_refuses_other_architectures():
    arch = dict(num_classes=3, input_size=8, num_filters=(4, 5), filter_sizes=(3, 3), hidden_dim=6)
    models = [PretrainedCNN(strides=(2, 1), pads=(1, 1), seed=seed, **arch) for seed in (0, 1, 2)]
    for seed, model in enumerate(models):
        model.bn_params[1]["running_var"] = np.full(5, seed + 1.0, dtype=np.float32)
    average = average_models(models)
    for name, value in average.params.items():
        np.testing.assert_allclose(value, sum(m.params[name] for m in models) / 3, rtol=1e-6, atol=1e-7)
        assert value.dtype == np.float32
    np.testing.assert_allclose(average.bn_params[1]["running_var"], 2.0)
    np.testing.assert_array_equal(models[0].bn_params[1]["running_var"], 1.0)  # the inputs are untouched
    other_strides = PretrainedCNN(strides=(1, 2), pads=(1, 1), seed=0, **arch)
    with pytest.raises(ValueError, match="model 2 has another architecture"):
        average_models([models[0], other_strides])


def test_recompute_batchnorm_statistics_measures_the_models_own_activations():
    arch = dict(num_classes=3, input_size=8, num_filters=(4, 5), filter_sizes=(3, 3), hidden_dim=6)
    model = PretrainedCNN(strides=(2, 1), pads=(1, 1), seed=0, **arch)
    params = copy.deepcopy(model.params)
    X = np.random.default_rng(0).standard_normal((250, 3, 8, 8)).astype(np.float32)
    X[:125] += 3  # sorted like the class-sorted training images: consecutive batches would each see one half
    recompute_batchnorm_statistics(model, X, batch_size=100, seed=4)  # two batches; 50 images unused
    batches = np.sort(np.random.default_rng(4).permutation(250)[:200].reshape(2, 100), axis=1)
    conv1, _ = conv_forward_fast(X, params["W1"], params["b1"], model.conv_params[0])
    bn = model.bn_params[0]
    np.testing.assert_allclose(
        bn["running_mean"], conv1[batches].mean(axis=(0, 1, 3, 4)), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(bn["running_var"], conv1[batches].var(axis=(1, 3, 4)).mean(axis=0), rtol=1e-4)
    # random batches see both halves: their variance is near the whole set's, not the halves' own
    np.testing.assert_allclose(bn["running_var"], conv1.var(axis=(0, 2, 3)), rtol=0.1)
    assert all("momentum" not in bn_param for bn_param in model.bn_params)
    for name, value in params.items():
        np.testing.assert_array_equal(model.params[name], value)
    with pytest.raises(ValueError, match="at least batch_size=100 images"):
        recompute_batchnorm_statistics(model, X[:99])


def test_average_last_averages_the_last_epochs_and_measures_their_statistics(tmp_path, monkeypatch):
    data_dir = tmp_path / "tiny"
    build_tiny_imagenet(
        data_dir, seed=5, train_per_class=20, val_per_class=2, test_per_class=2, verbose=False
    )
    out = tmp_path / "model.h5"
    argv = ["train_default_model", "--data", str(data_dir), "--out", str(out), "--epochs", "2"]
    monkeypatch.setattr(sys, "argv", argv + ["--average-last", "3"])
    with pytest.raises(SystemExit):  # more epochs to average than the run has
        train_default_model.main()
    monkeypatch.setattr(
        sys, "argv", argv + ["--update-rule", "sgd_momentum", "--lr-decay", "1", "--average-last", "2"]
    )
    averaged = []

    def average_and_keep(models):
        averaged.append(models)
        return average_models(models)

    monkeypatch.setattr(train_default_model, "average_models", average_and_keep)
    train_default_model.main()
    (models,) = averaged  # the two epochs' weights, which training moved apart
    assert len(models) == 2 and not np.array_equal(models[0].params["W1"], models[1].params["W1"])
    assert "average of the last 2 epochs: validation accuracy" in out.with_suffix(".txt").read_text()
    saved = PretrainedCNN(h5_file=out)
    X_train = load_tiny_imagenet(data_dir, dtype=np.float32, subtract_mean=True, verbose=False)["X_train"]
    measured = recompute_batchnorm_statistics(copy.deepcopy(saved), X_train)
    for kept, again in zip(saved.bn_params, measured.bn_params, strict=True):
        np.testing.assert_allclose(kept["running_mean"], again["running_mean"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(kept["running_var"], again["running_var"], rtol=1e-4, atol=1e-5)


def correctly_classified(val_scores, data, count):
    """Indices of the first `count` validation images the model classifies correctly."""
    return np.flatnonzero(val_scores.argmax(axis=1) == data["y_val"])[:count]


@pytest.mark.slow  # the data fixture loads the 50,000 training images (about a minute)
def test_fooling_images_fool_within_200_steps(model, data, val_scores):
    # The notebook's choice of target: the class half-way round the list from the true one. The network,
    # trained with weight decay and on noisy copies, resists more than the one before it: the notebook's
    # pairs took 24-96 steps of length 10 and changed the image by at most 8% (20 images; the old model:
    # at most 73 steps); a neighbouring class is harder (a shirt into a sneaker: 126 steps, 10%). So the
    # test gives 200 steps; the bar on the change is the grader's, a tenth of the image.
    for idx in correctly_classified(val_scores, data, 8):
        X = data["X_val"][idx : idx + 1]
        target = (data["y_val"][idx] + 5) % 10
        X_fooling = make_fooling_image(X, target, model, max_iterations=200)
        assert model.loss(X_fooling).argmax() == target
        change = np.linalg.norm(X_fooling - X) / np.linalg.norm(X + data["mean_image"])
        print(f"image {idx}: fooled with a relative change of {change:.4f}")
        assert change < 0.1


@pytest.mark.slow  # the data fixture loads the 50,000 training images (about a minute)
def test_class_visualization_makes_the_target_the_top_class(model, data):
    for target in (1, 7):
        X = create_class_visualization(
            target,
            model,
            mean_image=data["mean_image"],
            seed=target,
            num_iterations=100,
            show_every=0,
            verbose=False,
        )
        scores = model.loss(X)[0]
        print(f"class {target}: top class {scores.argmax()}, scores {np.round(scores, 1)}")
        assert scores.argmax() == target


@pytest.mark.slow  # the data fixture loads the 50,000 training images (about a minute)
def test_feature_inversion_reduces_the_feature_distance(model, data):
    # The classic plain gradient descent needs a step that suits the model's scale: 300 here (the classic
    # 10000 was tuned for the classic network and diverges on this one); blurring every step slows the fit
    # down. A fixed step levels off: 83.7% less with learning_rate 100, 89.0% with 200, 90.8% with 300,
    # 91.3% with 500, 89.9% with 1000 (measured on this model); the bar asks for most of the distance
    # gone, with room for another BLAS. (The default step, Adam, needs no tuning: the test after this one.)
    X = data["X_val"][:1]
    layer = 7
    target, _ = model.forward(X, end=layer)
    start = np.random.default_rng(231).standard_normal(X.shape).astype(np.float32)  # invert_features' start
    before = np.linalg.norm(model.forward(start, end=layer)[0] - target)
    X_inv = invert_features(
        target,
        layer,
        model,
        mean_image=data["mean_image"],
        seed=231,
        learning_rate=300,
        num_iterations=400,
        l2_reg=1e-7,
        blur_every=0,
        step="gd",
        tv_reg=0,
        show_every=0,
        verbose=False,
    )
    after = np.linalg.norm(model.forward(X_inv, end=layer)[0] - target)
    print(f"feature distance at layer {layer}: {before:.2f} -> {after:.2f} ({1 - after / before:.1%} less)")
    assert after <= 0.2 * before


@pytest.mark.slow  # the data fixture loads the 50,000 training images (about a minute)
@pytest.mark.parametrize("layer, cut", [(3, 0.95), (6, 0.90)])
def test_feature_inversion_with_its_defaults_cuts_the_feature_distance(model, data, layer, cut):
    X = data["X_val"][:1]
    target, _ = model.forward(X, end=layer)
    start = np.random.default_rng(231).standard_normal(X.shape).astype(np.float32)  # invert_features' start
    before = np.linalg.norm(model.forward(start, end=layer)[0] - target)
    X_inv = invert_features(
        target, layer, model, mean_image=data["mean_image"], seed=231, show_every=0, verbose=False
    )
    after = np.linalg.norm(model.forward(X_inv, end=layer)[0] - target)
    print(
        f"defaults, layer {layer}: feature distance {before:.2f} -> {after:.2f} "
        f"({1 - after / before:.1%} less)"
    )
    assert after <= (1 - cut) * before


@pytest.mark.slow  # the data fixture loads the 50,000 training images (about a minute)
def test_deepdream_with_octaves_raises_the_activation_norm(model, data):
    X = resize_bilinear(data["X_val"][5:6], 96, 96)  # conv layers take any size
    layer = 6
    norm = lambda image: np.linalg.norm(model.forward(image, end=layer)[0])  # noqa: E731
    options = dict(mean_image=data["mean_image"], seed=231, learning_rate=2.0, show_every=0, verbose=False)
    single = deepdream(X, layer, model, num_iterations=30, **options)
    octaves = deepdream(X, layer, model, num_iterations=10, num_octaves=3, **options)
    print(
        f"activation norm at layer {layer}: {norm(X):.1f} -> {norm(single):.1f} (30 steps, one octave), "
        f"{norm(octaves):.1f} (3 octaves of 10 steps)"
    )
    assert octaves.shape == X.shape
    assert norm(octaves) > 1.5 * norm(X)


@pytest.mark.slow  # the data fixture loads the 50,000 training images (about a minute)
def test_deepdream_raises_the_activation_norm(model, data):
    X = data["X_val"][5:6]
    layer = 6
    before = np.linalg.norm(model.forward(X, end=layer)[0])
    X_dream = deepdream(
        X,
        layer,
        model,
        mean_image=data["mean_image"],
        seed=231,
        num_iterations=20,
        show_every=0,
        verbose=False,
    )
    after = np.linalg.norm(model.forward(X_dream, end=layer)[0])
    print(f"activation norm at layer {layer}: {before:.1f} -> {after:.1f}")
    assert after > 1.5 * before


@pytest.mark.slow  # the data fixture loads the 50,000 training images (about a minute)
def test_coco_default_features_come_from_this_model(model, data):
    """The raw COCO features are this model's conv9 output on the scene images (mean subtracted)."""
    raw = load_coco_data(DEFAULT_COCO_DIR, pca_features=False)
    images = np.stack([read_rgb_image(url.removeprefix("file://")) for url in raw["val_urls"][:8]])
    expected = cnn_features(model, images, data["mean_image"])
    assert np.allclose(raw["val_features"][:8], expected, rtol=1e-4, atol=1e-4)
