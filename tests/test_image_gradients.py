"""Tests of the image-gradient techniques on a small CNN with fixed random weights.

The model's batchnorm statistics are calibrated on smooth random images, and its batchnorm shifts are
positive so that most ReLUs are active: a random network whose units are half dead has flat directions
that no gradient method can climb, which says nothing about the code under test.
"""

import numpy as np
import pytest
from scipy import ndimage

from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.gradient_check import eval_numerical_gradient
from asgn3.image_gradients import (
    STEP_RULES,
    ImageStep,
    clip_to_pixel_range,
    compute_saliency_maps,
    create_class_visualization,
    deepdream,
    invert_features,
    jitter,
    make_fooling_image,
    total_variation,
)
from asgn3.notebook_checks import rel_error

SIZE = 32
ARCH = dict(
    num_classes=5,
    input_size=SIZE,
    num_filters=(8, 16, 32),
    filter_sizes=(5, 3, 3),
    strides=(2, 2, 2),
    pads=(2, 1, 1),
    hidden_dim=32,
)
MEAN_IMAGE = np.random.default_rng(2).uniform(80, 160, (3, SIZE, SIZE)).astype(np.float32)
QUIET = dict(verbose=False, show_every=0)


def smooth_images(n, seed, size=SIZE):
    """Mean-subtracted smooth random images (n, 3, size, size) spanning the pixel range [0, 255]."""
    img = ndimage.gaussian_filter(
        np.random.default_rng(seed).uniform(0, 255, (n, 3, size, size)), sigma=(0, 0, 2, 2)
    )
    img = 255 * (img - img.min()) / (img.max() - img.min())
    mean = MEAN_IMAGE if size == SIZE else MEAN_IMAGE.mean(axis=(1, 2), keepdims=True)
    return (img - mean).astype(np.float32)


def make_model(dtype=np.float32, size=SIZE):
    """The small test CNN: random weights, batchnorm calibrated on 64 images, positive shifts."""
    model = PretrainedCNN(dtype=dtype, seed=0, **{**ARCH, "input_size": size})
    for bn_param in model.bn_params:
        bn_param["momentum"] = 0.0  # one train-mode pass sets the running statistics to the batch's
    model.forward(smooth_images(64, seed=1, size=size), mode="train")
    for bn_param in model.bn_params:
        bn_param["momentum"] = 0.9
    for name in model.params:
        if name.startswith("beta"):
            model.params[name][:] = 2.0
    return model


@pytest.fixture(scope="module")
def model():
    return make_model()


def test_saliency_is_the_channel_max_of_the_numeric_score_gradient():
    model = make_model(np.float64, size=12)  # small images keep the numeric gradient fast
    X = smooth_images(3, seed=3, size=12).astype(np.float64)
    y = np.array([0, 3, 4])
    saliency = compute_saliency_maps(X, y, model)
    assert saliency.shape == (3, 12, 12)
    # Images do not interact in test mode, so the gradient of the sum of the scores of the correct
    # classes holds each image's own gradient.
    correct_scores = lambda x: model.forward(x)[0][np.arange(3), y].sum()  # noqa: E731
    numeric = eval_numerical_gradient(correct_scores, X, verbose=False, h=1e-4)
    err = rel_error(saliency, np.abs(numeric).max(axis=1))
    print("saliency relative error", err)
    assert err < 1e-6


@pytest.mark.parametrize("objective", ["score", "log_softmax"])
def test_fooling_image_is_classified_as_the_target_and_is_close(model, objective):
    X = smooth_images(1, seed=7)
    original = X.copy()
    predicted = int(model.loss(X).argmax())
    for target in range(5):
        if target == predicted:
            continue
        X_fooling = make_fooling_image(X, target, model, objective=objective)
        change = np.linalg.norm(X_fooling - X) / np.linalg.norm(X)
        print(f"{objective}, target {target}: relative change {change:.4f}")
        assert int(model.loss(X_fooling).argmax()) == target
        assert change < 0.1
    np.testing.assert_array_equal(X, original)
    with pytest.raises(ValueError, match="objective"):
        make_fooling_image(X, 0, model, objective="margin")


def test_class_visualization_makes_the_target_the_top_class(model):
    start = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    start_scores = model.loss(start)[0]
    for target in range(5):
        X = create_class_visualization(target, model, max_jitter=1, mean_image=MEAN_IMAGE, seed=0, **QUIET)
        scores = model.loss(X)[0]
        print(f"class {target}: score {start_scores[target]:.2f} -> {scores[target]:.2f}")
        assert scores.argmax() == target
        assert scores[target] - start_scores[target] > 4 * np.abs(start_scores).max()
        assert np.all(X >= -MEAN_IMAGE - 1e-3) and np.all(X <= 255 - MEAN_IMAGE + 1e-3)


@pytest.mark.parametrize("layer, learning_rate", [(0, 100), (2, 10)])
def test_classic_feature_inversion_cuts_the_feature_distance_tenfold(model, layer, learning_rate):
    target = model.forward(smooth_images(1, seed=7), end=layer)[0]
    start = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    start_distance = np.linalg.norm(model.forward(start, end=layer)[0] - target)
    X = invert_features(
        target,
        layer,
        model,
        learning_rate=learning_rate,
        num_iterations=400,
        blur_every=0,
        step="gd",
        tv_reg=0,
        mean_image=MEAN_IMAGE,
        seed=0,
        **QUIET,
    )
    ratio = np.linalg.norm(model.forward(X, end=layer)[0] - target) / start_distance
    print(f"layer {layer}: feature distance down to {ratio:.3f} of its start")
    assert ratio <= 0.1


def test_deepdream_raises_the_activation_energy_on_a_larger_image(model):
    X = smooth_images(1, seed=8, size=48)  # conv layers take any size
    original = X.copy()
    before = np.linalg.norm(model.forward(X, end=1)[0])
    dream = deepdream(X, 1, model, num_iterations=20, mean_image=MEAN_IMAGE, seed=0, **QUIET)
    after = np.linalg.norm(model.forward(dream, end=1)[0])
    print(f"layer 1 activation norm {before:.1f} -> {after:.1f}")
    assert dream.shape == X.shape and after > 1.5 * before
    np.testing.assert_array_equal(X, original)
    pixel_mean = MEAN_IMAGE.mean(axis=(1, 2), keepdims=True)
    assert np.all(dream >= -pixel_mean - 1e-3) and np.all(dream <= 255 - pixel_mean + 1e-3)


def test_seeds_make_runs_repeatable(model):
    run = lambda seed: create_class_visualization(1, model, num_iterations=10, seed=seed, **QUIET)  # noqa: E731
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
    X = smooth_images(1, seed=9)
    np.testing.assert_array_equal(
        deepdream(X, 0, model, num_iterations=5, seed=1, **QUIET),
        deepdream(X, 0, model, num_iterations=5, seed=1, **QUIET),
    )


def test_callback_takes_the_displays_every_show_every_steps_and_at_the_end(model):
    seen = []
    create_class_visualization(
        2,
        model,
        num_iterations=60,
        show_every=25,
        seed=0,
        verbose=False,
        callback=lambda t, X: seen.append((t, X.shape)),
    )
    assert seen == [
        (0, (1, 3, SIZE, SIZE)),
        (25, (1, 3, SIZE, SIZE)),
        (50, (1, 3, SIZE, SIZE)),
        (59, (1, 3, SIZE, SIZE)),
    ]
    seen.clear()
    invert_features(
        model.forward(smooth_images(1, 0), end=0)[0],
        0,
        model,
        num_iterations=5,
        show_every=0,
        verbose=False,
        callback=lambda t, X: seen.append(t),
    )
    assert seen == []


def test_jitter_and_clipping_helpers():
    X = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    moved = jitter(X, 2, -1)
    assert moved[0, 0, 0, 2] == X[0, 0, 1, 0]  # two to the right, one up
    np.testing.assert_array_equal(jitter(moved, -2, 1), X)
    mean = np.full((3, 4, 5), 100.0, np.float32)
    X = np.array([-300.0, 0.0, 300.0]).reshape(1, 3, 1, 1) * np.ones((1, 3, 4, 5))
    clipped = clip_to_pixel_range(X, mean)
    np.testing.assert_array_equal(clipped[0, :, 0, 0], [-100, 0, 155])
    assert clip_to_pixel_range(X, None) is X


def test_displays_go_to_matplotlib_only_when_it_is_interactive(model, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gca().images[-1].get_array().shape))
    monkeypatch.setattr(plt, "isinteractive", lambda: False)
    create_class_visualization(0, model, num_iterations=3, show_every=1, seed=0, verbose=False)
    assert shown == []
    monkeypatch.setattr(plt, "isinteractive", lambda: True)
    create_class_visualization(
        0, model, num_iterations=3, show_every=1, mean_image=MEAN_IMAGE, seed=0, verbose=False
    )
    deepdream(
        smooth_images(1, seed=8, size=40), 0, model, num_iterations=2, show_every=5, seed=0, verbose=False
    )
    plt.close("all")
    assert shown == [(SIZE, SIZE, 3)] * 3 + [(40, 40, 3)] * 2  # deepdream: first and last step


def test_total_variation_gradient_matches_the_numeric_one_in_float64():
    X = np.random.default_rng(3).normal(0, 50, (2, 3, 5, 6))
    value, grad = total_variation(X)
    numeric = eval_numerical_gradient(lambda x: total_variation(x)[0], X, verbose=False, h=1e-3)
    error = rel_error(grad, numeric)
    print(f"total_variation gradient: relative error {error:.2e}")
    assert error < 1e-6
    assert total_variation(np.full((1, 3, 4, 4), 7.0))[0] == 0
    stripes = np.zeros((1, 1, 4, 4))
    stripes[..., ::2] = 255  # every horizontal neighbour pair jumps by the full range
    assert total_variation(stripes)[0] == pytest.approx(12 / 24)


def test_step_rules():
    X, dX = np.zeros((1, 3, 4, 4)), np.random.default_rng(0).normal(0, 1e-6, (1, 3, 4, 4))
    np.testing.assert_allclose(ImageStep("gd", 10.0)(X, dX), 10.0 * dX)
    assert ImageStep("gd").learning_rate == STEP_RULES["gd"] == 10000  # the classic step
    normalized = ImageStep("normalized", 2.0)(X, dX)
    assert np.abs(normalized).mean() == pytest.approx(2.0)
    adam = ImageStep("adam", 3.0)
    first = adam(X, dX)
    np.testing.assert_allclose(first, 3.0 * np.sign(dX), rtol=1e-3)  # Adam's first step: lr * sign
    second = adam(first, -dX)  # the gradient turns: the step shrinks, the moving average remembers
    assert np.all(np.abs(second - first) < 3.0)
    with pytest.raises(ValueError, match="step must be one of"):
        ImageStep("sgd")


@pytest.mark.parametrize("layer", [1, 2])
def test_feature_inversion_defaults_work_on_the_small_cnn_too(model, layer):
    # The default step does not depend on the gradients' scale: the defaults tuned on the shipped model
    # fit this random one as well (the classic step, learning_rate=10000, would blow up here).
    target = model.forward(smooth_images(1, seed=7), end=layer)[0]
    start = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    start_distance = np.linalg.norm(model.forward(start, end=layer)[0] - target)
    X = invert_features(target, layer, model, mean_image=MEAN_IMAGE, seed=0, **QUIET)
    ratio = np.linalg.norm(model.forward(X, end=layer)[0] - target) / start_distance
    print(f"defaults on the small CNN, layer {layer}: feature distance down to {ratio:.3f} of its start")
    assert ratio <= 0.1
    assert np.all(X >= -MEAN_IMAGE - 1e-3) and np.all(X <= 255 - MEAN_IMAGE + 1e-3)


def test_total_variation_penalty_smooths_the_inversion(model):
    target = model.forward(smooth_images(1, seed=7), end=2)[0]
    options = dict(num_iterations=100, mean_image=MEAN_IMAGE, seed=0, **QUIET)
    rough = total_variation(invert_features(target, 2, model, tv_reg=0, **options))[0]
    smooth = total_variation(invert_features(target, 2, model, tv_reg=10.0, **options))[0]
    print(f"total variation of the inversion: {rough:.2e} without the penalty, {smooth:.2e} with it")
    assert smooth < 0.5 * rough


def test_deepdream_octaves_keep_the_size_and_the_displays_count_every_step(model):
    X = smooth_images(1, seed=8, size=48)
    seen = []
    dream = deepdream(
        X,
        1,
        model,
        num_iterations=4,
        num_octaves=3,
        octave_scale=1.5,
        mean_image=MEAN_IMAGE,
        seed=0,
        show_every=4,
        verbose=False,
        callback=lambda t, image: seen.append((t, image.shape[2:])),
    )
    assert dream.shape == X.shape
    assert seen == [(0, (21, 21)), (4, (32, 32)), (8, (48, 48)), (11, (48, 48))]  # 48 / 1.5^2, 48 / 1.5
    before = np.linalg.norm(model.forward(X, end=1)[0])
    assert np.linalg.norm(model.forward(dream, end=1)[0]) > before
    with pytest.raises(ValueError, match="octave"):
        deepdream(X, 1, model, num_octaves=2, octave_scale=1.0, **QUIET)


class ScaledInputs:
    """The small CNN behind a preprocessing that divides pixel levels by 128 (as EfficientNet-Lite0's):
    the same network, its inputs on another scale."""

    pixel_level = 1 / 128

    def __init__(self, model):
        self.model, self.dtype, self.input_size = model, model.dtype, model.input_size

    def forward(self, X, start=None, end=None, mode="test"):
        return self.model.forward(X / self.pixel_level, start, end, mode)

    def backward(self, dout, cache):
        dX, grads = self.model.backward(dout, cache)
        return dX / self.pixel_level, grads


def test_feature_inversion_defaults_do_not_depend_on_the_input_scale():
    model = make_model(dtype=np.float64)
    target = model.forward(smooth_images(1, seed=7).astype(np.float64), end=1)[0]
    options = dict(num_iterations=60, l2_reg=0, seed=0, **QUIET)
    X = invert_features(target, 1, model, **options)
    X_scaled = invert_features(target, 1, ScaledInputs(model), **options)
    error = rel_error(X_scaled / ScaledInputs.pixel_level, X)
    print(f"inversion through inputs scaled by 1/128, in pixel levels: relative error {error:.1e}")
    assert error < 1e-6


def test_a_classic_call_with_a_learning_rate_takes_the_classic_step(model):
    target = model.forward(smooth_images(1, seed=7), end=1)[0]
    options = dict(learning_rate=10, num_iterations=5, seed=0, **QUIET)
    np.testing.assert_array_equal(
        invert_features(target, 1, model, **options), invert_features(target, 1, model, step="gd", **options)
    )
    assert not np.array_equal(
        invert_features(target, 1, model, **options),
        invert_features(target, 1, model, step="adam", **options),
    )
