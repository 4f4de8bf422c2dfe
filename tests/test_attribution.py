"""Tests of the attribution methods (asgn3/attribution.py).

The exact properties (SmoothGrad's limits, Integrated Gradients' completeness, Grad-CAM and guided
backpropagation against direct computations written here) run on the small random CNN of
test_image_gradients; what an explanation should show (the sanity check, deletion and insertion, the
pointing game) runs on the shipped model and the default validation images, which need `bash kit.sh setup`.
"""

import numpy as np
import pytest
from scipy import ndimage
from test_image_gradients import make_model, smooth_images

from asgn3 import attribution
from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.data_paths import DEFAULT_PRETRAINED_MODEL, DEFAULT_TINY_IMAGENET_DIR
from asgn3.data_utils import load_tiny_imagenet, load_tiny_imagenet_val_boxes
from asgn3.fast_layers import conv_backward_fast
from asgn3.gradient_check import eval_numerical_gradient
from asgn3.image_gradients import compute_saliency_maps
from asgn3.layers import affine_backward, batchnorm_backward, spatial_batchnorm_backward
from asgn3.notebook_checks import rel_error


@pytest.fixture(scope="module")
def small():
    return make_model(dtype=np.float64)


@pytest.fixture(scope="module")
def shipped():
    return PretrainedCNN(h5_file=DEFAULT_PRETRAINED_MODEL)


@pytest.fixture(scope="module")
def val():
    """The first 100 default validation images that the shipped model classifies correctly, their labels
    and their item boxes (x0, y0, x1, y1)."""
    if not (DEFAULT_TINY_IMAGENET_DIR / "wnids.txt").is_file():
        raise FileNotFoundError(f"{DEFAULT_TINY_IMAGENET_DIR} is missing: run `bash kit.sh setup` first")
    data = load_tiny_imagenet(DEFAULT_TINY_IMAGENET_DIR, max_train_per_class=500, verbose=False)
    boxes = load_tiny_imagenet_val_boxes(DEFAULT_TINY_IMAGENET_DIR)
    X, y = data["X_val"][:130], data["y_val"][:130]
    right = np.flatnonzero(PretrainedCNN(h5_file=DEFAULT_PRETRAINED_MODEL).loss(X).argmax(axis=1) == y)[:100]
    return X[right], y[right], boxes[right]


def images_and_labels(n=3, seed=7):
    return smooth_images(n, seed=seed).astype(np.float64), np.arange(n) % 5


# -- SmoothGrad --------------------------------------------------------------------------------------


def test_smoothgrad_without_noise_is_the_saliency_map(small):
    X, y = images_and_labels()
    plain = attribution.smoothgrad(X, y, small, num_samples=1, noise_level=0)
    np.testing.assert_allclose(plain, compute_saliency_maps(X, y, small), rtol=1e-12)
    np.testing.assert_allclose(plain, attribution.saliency(X, y, small), rtol=1e-12)


def test_smoothgrad_is_the_mean_of_noisy_saliency_maps_and_repeats_with_its_seed(small):
    X, y = images_and_labels()
    maps = attribution.smoothgrad(X, y, small, num_samples=4, noise_level=0.1, seed=3)
    rng = np.random.default_rng(3)
    sigma = 0.1 * (X.max(axis=(1, 2, 3)) - X.min(axis=(1, 2, 3)))[:, None, None, None]
    direct = np.mean(
        [attribution.saliency(X + sigma * rng.standard_normal(X.shape), y, small) for _ in range(4)], 0
    )
    np.testing.assert_allclose(maps, direct, rtol=1e-10)
    np.testing.assert_array_equal(
        maps, attribution.smoothgrad(X, y, small, num_samples=4, noise_level=0.1, seed=3)
    )
    assert not np.allclose(maps, attribution.smoothgrad(X, y, small, num_samples=4, noise_level=0.1, seed=4))


# -- Integrated Gradients ----------------------------------------------------------------------------


def class_scores(model, X, y):
    return model.loss(X)[np.arange(len(y)), y]


def test_integrated_gradients_add_up_to_the_score_difference_on_the_small_cnn(small):
    X, y = images_and_labels(n=4)
    baseline = smooth_images(1, seed=11).astype(np.float64)  # any image broadcasts
    ig = attribution.integrated_gradients(X, y, small, baseline=baseline, steps=200)
    assert ig.shape == X.shape
    difference = class_scores(small, X, y) - class_scores(small, np.broadcast_to(baseline, X.shape), y)
    error = np.abs(ig.sum(axis=(1, 2, 3)) - difference) / np.abs(difference)
    print("completeness error at 200 steps, small CNN:", np.round(error, 5))
    assert np.all(error < 0.01)


def test_integrated_gradients_is_the_trapezoid_rule_of_the_path_gradients(small):
    X, y = images_and_labels(n=2)
    steps = 3
    gradients = [attribution.class_score_gradient(k / steps * X, y, small) for k in range(steps + 1)]
    trapezoid = (gradients[0] / 2 + gradients[1] + gradients[2] + gradients[3] / 2) / steps
    np.testing.assert_allclose(
        attribution.integrated_gradients(X, y, small, steps=steps), X * trapezoid, rtol=1e-10
    )
    with pytest.raises(ValueError, match="steps"):
        attribution.integrated_gradients(X, y, small, steps=0)


@pytest.mark.slow
def test_integrated_gradients_completeness_on_the_shipped_model(shipped, val):
    X, y, _ = val
    X, y = X[:4], y[:4]
    difference = class_scores(shipped, X, y) - class_scores(shipped, np.zeros_like(X), y)
    errors = {}
    for steps in (200, 800):
        ig = attribution.integrated_gradients(X, y, shipped, steps=steps)
        errors[steps] = np.abs(ig.sum(axis=(1, 2, 3)) - difference) / np.abs(difference)
        print(f"completeness error at {steps} steps, shipped model:", np.round(errors[steps], 4))
    # The path crosses many ReLU kinks, each a jump of the gradient that the rule smears over one step:
    # measured 0.02-0.84% at 200 steps (the model before the noise-trained stage had one image at 1.5%).
    assert np.all(errors[200] < 0.01)
    assert np.all(errors[800] < 0.005)


# -- Grad-CAM ----------------------------------------------------------------------------------------


def bilinear_by_the_formula(cam, H, W):
    """Bilinear resizing pixel by pixel: half-pixel centres, source coordinates clamped to the edges."""
    h, w = cam.shape
    out = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            r = min(max((i + 0.5) * h / H - 0.5, 0), h - 1)
            c = min(max((j + 0.5) * w / W - 0.5, 0), w - 1)
            r0, c0 = int(r), int(c)
            r1, c1 = min(r0 + 1, h - 1), min(c0 + 1, w - 1)
            dr, dc = r - r0, c - c0
            out[i, j] = (
                cam[r0, c0] * (1 - dr) * (1 - dc)
                + cam[r0, c1] * (1 - dr) * dc
                + cam[r1, c0] * dr * (1 - dc)
                + cam[r1, c1] * dr * dc
            )
    return out


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_grad_cam_against_numeric_gradients_of_the_activations(small, layer):
    X, y = images_and_labels(n=2)
    maps = attribution.grad_cam(X, y, small, layer, upsample=False)
    for i in range(2):
        A = small.forward(X[i : i + 1], end=layer)[0]
        label = y[i]
        dA = eval_numerical_gradient(
            lambda a, label=label: small.forward(a, start=layer + 1)[0][0, label], A, verbose=False
        )
        direct = np.maximum(np.einsum("k,khw->hw", dA[0].mean(axis=(1, 2)), A[0]), 0)
        error = rel_error(maps[i], direct)
        print(
            f"grad_cam layer {layer} image {i}: relative error {error:.2e}, "
            f"{np.mean(direct > 0):.0%} of the map positive"
        )
        assert error < 1e-6
        upsampled = attribution.grad_cam(X[i : i + 1], y[i : i + 1], small, layer)[0]
        np.testing.assert_allclose(upsampled, bilinear_by_the_formula(direct, *X.shape[2:]), atol=1e-6)


def test_grad_cam_refuses_a_layer_without_a_spatial_map(small):
    X, y = images_and_labels()
    with pytest.raises(ValueError, match="spatial map"):
        attribution.grad_cam(X, y, small, small.num_conv)


# -- Guided backpropagation --------------------------------------------------------------------------


def guided_by_hand(model, X, y):
    """Guided backpropagation written out: the model's layers backward, every ReLU passing only
    positive gradients where its input was positive."""
    scores, (_, _, caches) = model.forward(X)
    dout = attribution.one_hot(scores, y)
    dout, _, _ = affine_backward(dout, caches[-1])
    fc_cache, bn_cache, relu_input = caches[-2]
    dout = dout * (relu_input > 0) * (dout > 0)
    dout, _, _ = affine_backward(batchnorm_backward(dout, bn_cache)[0], fc_cache)
    for conv_cache, bn_cache, relu_input in reversed(caches[:-2]):
        dout = dout.reshape(relu_input.shape) * (relu_input > 0) * (dout.reshape(relu_input.shape) > 0)
        dout = conv_backward_fast(spatial_batchnorm_backward(dout, bn_cache)[0], conv_cache)[0]
    return dout


def test_guided_backprop_against_the_layers_by_hand_and_the_plain_backward_untouched(small):
    X, y = images_and_labels()
    guided = attribution.guided_backprop(X, y, small)
    np.testing.assert_allclose(guided, guided_by_hand(small, X, y), rtol=1e-10, atol=1e-14)
    gradient = attribution.class_score_gradient(X, y, small)
    assert not np.allclose(guided, gradient)  # the guided mode changes this call only:
    np.testing.assert_array_equal(gradient, attribution.class_score_gradient(X, y, small))
    guided_cam = attribution.guided_grad_cam(X, y, small, 1)
    np.testing.assert_allclose(guided_cam, guided * attribution.grad_cam(X, y, small, 1)[:, None])


# -- deletion, insertion, the randomisation check, the pointing game --------------------------------


def test_deletion_and_insertion_curves_by_hand(small):
    X, y = images_and_labels()
    importance = np.random.default_rng(1).random(X.shape[:1] + X.shape[2:])
    blurred = ndimage.gaussian_filter(X, sigma=(0, 0, 4, 4), mode="nearest")  # sigma: 1/8 of the side
    top_half = importance >= np.median(importance, axis=(1, 2), keepdims=True)  # 512 of 1024 pixels
    halfway = np.where(top_half[:, None], blurred, X)
    p = {
        name: attribution.class_probability(images, y, small)
        for name, images in (("image", X), ("halfway", halfway), ("blurred", blurred))
    }
    deletion = (p["image"] / 2 + p["halfway"] + p["blurred"] / 2) / 2  # the trapezoid rule, 2 steps of 1/2
    np.testing.assert_allclose(attribution.deletion_score(X, y, small, importance, steps=2), deletion)
    inserted_halfway = attribution.class_probability(np.where(top_half[:, None], X, blurred), y, small)
    insertion = (p["blurred"] / 2 + inserted_halfway + p["image"] / 2) / 2
    np.testing.assert_allclose(attribution.insertion_score(X, y, small, importance, steps=2), insertion)
    per_channel = np.random.default_rng(0).standard_normal(X.shape)
    np.testing.assert_allclose(
        attribution.insertion_score(X, y, small, per_channel),
        attribution.insertion_score(X, y, small, np.abs(per_channel).sum(axis=1)),
    )
    with pytest.raises(ValueError, match="attribution of shape"):
        attribution.deletion_score(X, y, small, importance[:, :5])


@pytest.mark.slow
def test_smoothgrad_deletes_and_inserts_better_than_random_maps(shipped, val):
    X, y, _ = val
    X, y = X[:20], y[:20]
    maps = attribution.smoothgrad(X, y, shipped, seed=0)
    random_maps = np.random.default_rng(0).random(maps.shape)
    scores = {
        name: (
            attribution.deletion_score(X, y, shipped, m).mean(),
            attribution.insertion_score(X, y, shipped, m).mean(),
        )
        for name, m in (("SmoothGrad", maps), ("random", random_maps))
    }
    for name, (deletion, insertion) in scores.items():
        print(
            f"{name}: deletion {deletion:.3f} (lower is better), insertion {insertion:.3f} (higher is better)"
        )
    assert scores["SmoothGrad"][0] < scores["random"][0]
    assert scores["SmoothGrad"][1] > scores["random"][1]


def test_rank_correlation_is_spearmans():
    a = np.array([[1.0, 2, 3, 4], [1, 2, 3, 4], [5, 5, 5, 5]])
    b = np.array([[10.0, 20, 30, 400], [4, 3, 2, 1], [1, 2, 3, 4]])
    np.testing.assert_allclose(attribution.rank_correlation(a, b), [1, -1, 0])
    with pytest.raises(ValueError, match="same shape"):
        attribution.rank_correlation(a, b[:, :3])


@pytest.mark.slow
def test_randomization_check_separates_the_model_from_an_edge_detector(shipped, val):
    X, y, _ = val
    X, y = X[:8], y[:8]
    params = {key: value.copy() for key, value in shipped.params.items()}

    def edges(X, y, model):  # depends on the image only
        return np.hypot(ndimage.sobel(X, axis=2), ndimage.sobel(X, axis=3)).sum(axis=1)

    assert np.allclose(attribution.rank_correlation(*[attribution.saliency(X, y, shipped)] * 2), 1)
    saliency = attribution.randomization_check(X, y, shipped, attribution.saliency, seed=0)
    edge = attribution.randomization_check(X, y, shipped, edges, seed=0)
    assert list(saliency) == list(range(shipped.num_layers - 1, -1, -1))
    for layer in saliency:
        print(
            f"randomised from layer {layer:2d} up: rank correlation with the trained model's maps: "
            f"saliency {saliency[layer].mean():+.2f}, edges {edge[layer].mean():+.2f}"
        )
    assert np.mean(saliency[0]) < 0.5  # every layer random: the map has little left of the trained one
    assert all(np.allclose(correlation, 1) for correlation in edge.values())
    assert all(np.array_equal(shipped.params[key], value) for key, value in params.items())  # untouched


def test_pointing_game_counts_maxima_inside_the_boxes():
    maps = np.zeros((3, 8, 8))
    maps[0, 2, 5] = maps[1, 7, 7] = maps[2, 2, 1] = 1  # (row, column)
    boxes = np.array([[4, 1, 6, 3], [0, 0, 6, 6], [1, 2, 1, 2]])  # x0, y0, x1, y1 inclusive
    np.testing.assert_array_equal(attribution.pointing_game(maps, boxes), [True, False, True])


@pytest.mark.slow
def test_pointing_game_of_smoothgrad_and_plain_saliency_on_the_shipped_model(shipped, val):
    X, y, boxes = val
    area_share = np.mean((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)) / X.shape[2] ** 2
    hits = {
        "saliency": attribution.pointing_game(attribution.saliency(X, y, shipped), boxes).mean(),
        **{
            f"SmoothGrad, noise {level}": attribution.pointing_game(
                attribution.smoothgrad(X, y, shipped, noise_level=level, seed=0), boxes
            ).mean()
            for level in (0.1, 0.15)
        },
        "guided backprop": attribution.pointing_game(
            np.abs(attribution.guided_backprop(X, y, shipped)).max(1), boxes
        ).mean(),
    }
    print(f"pointing game on {len(X)} images (chance: the mean box area share {area_share:.2f}):")
    for name, rate in hits.items():
        print(f"  {name}: {rate:.2f}")
    # Measured on the shipped model: saliency 0.84, guided backprop 0.94; SmoothGrad over the seeds 0, 1, 2:
    # 0.87 0.86 0.85 at noise 0.05, 0.82 0.84 0.85 at 0.1, 0.78 0.78 0.84 at 0.15 (the default), 0.76 0.79
    # 0.75 at 0.2. Before the model's noise-trained last stage: saliency 0.66, SmoothGrad 0.61 (0.15),
    # guided backprop 0.92. So the training noise moved the gradients onto the item; SmoothGrad then holds
    # issue 12's 0.8 at noise 0.1 (Smilkov et al. recommend 0.1-0.2) but does not beat the plain map: the
    # strided convolutions leave a checkerboard in every gradient that averaging keeps.
    assert hits["SmoothGrad, noise 0.1"] >= 0.8
    assert hits["SmoothGrad, noise 0.15"] > area_share + 0.2
    assert hits["saliency"] >= 0.75
    assert hits["guided backprop"] >= 0.8


def test_bad_labels_are_clear_errors(small):
    X, y = images_and_labels()
    with pytest.raises(ValueError, match=r"labels y of shape \(N,\)"):
        attribution.smoothgrad(X, y[:2], small)
    with pytest.raises(ValueError, match="labels must lie in"):
        attribution.saliency(X, y + 10, small)
