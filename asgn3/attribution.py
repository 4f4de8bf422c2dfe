"""Attribution: which pixels of an image make a CNN score the class it does (extra-credit question Q6).

Every method here explains the unnormalized score of class y[i] for image i, and needs from the model only
`forward(X, start=None, end=None, mode='test') -> (out, cache)`, `backward(dout, cache) -> (dX, grads)` and
`loss(X) -> scores`; guided backpropagation also needs `backward(..., guided=True)`, and the sanity check
`num_layers` and `reinitialize_layer(layer, seed)`. Images are (N, C, H, W), mean subtracted.

- Saliency and SmoothGrad (Smilkov et al. 2017): |gradient|, averaged over noisy copies of the image.
- Integrated Gradients (Sundararajan et al. 2017): (X - baseline) times the gradient averaged along the
  straight path from a baseline to X; the attributions add up to score(X) - score(baseline).
- Grad-CAM (Selvaraju et al. 2017): a conv layer's channels weighted by their mean gradient.
- Guided backpropagation (Springenberg et al. 2015), and guided Grad-CAM, their product.
- Deletion and insertion scores (Petsiuk et al. 2018): how fast the class probability falls when the most
  attributed pixels go first, and how fast it rises when they come first.
- The model-randomisation sanity check (Adebayo et al. 2018): an explanation of the model should change
  when the model's weights are replaced by random ones.
"""

import copy

import numpy as np
from scipy import ndimage, stats

from asgn3.image_utils import resize_bilinear

# Deletion and insertion replace pixels by those of the image blurred with this sigma, in image sides.
BLUR_SIGMA_FRACTION = 1 / 8


def check_labels(X, y, num_classes=None):
    """Check that X is a batch of images (N, C, H, W) and y (N,) integer labels; return y as an array."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 4:
        raise ValueError(f"expected images X of shape (N, C, H, W), got shape {X.shape}")
    if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"expected integer labels y of shape (N,) = ({X.shape[0]},) to match X {X.shape}, "
            f"got {y.dtype} {y.shape}"
        )
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got values in [{y.min()}, {y.max()}]")
    return y


def one_hot(scores, y):
    """The upstream gradient that picks the score of class y[i] in row i: (N, classes), 1 at (i, y[i])."""
    dscores = np.zeros_like(scores)
    dscores[np.arange(len(y)), y] = 1
    return dscores


def class_score_gradient(X, y, model, guided=False):
    """
    The gradient of the unnormalized score of class y[i] with respect to image i (test mode).

    Inputs:
    - X: images (N, C, H, W); y: labels (N,); model: a PretrainedCNN-like model.
    - guided: backpropagate in guided mode (guided backpropagation instead of the gradient).

    Returns dX, of shape (N, C, H, W).
    """
    scores, cache = model.forward(X, mode="test")
    dscores = one_hot(scores, check_labels(X, y, scores.shape[1]))
    dX, _ = model.backward(dscores, cache, guided=True) if guided else model.backward(dscores, cache)
    return dX


def saliency(X, y, model):
    """Plain saliency maps (N, H, W): the channel max of |gradient of score y| (Simonyan et al. 2014)."""
    return np.abs(class_score_gradient(X, y, model)).max(axis=1)


def noise_scale(X, noise_level):
    """SmoothGrad's noise standard deviation for each image of X (N, C, H, W): noise_level * (max - min)
    of the image, shaped (N, 1, 1, 1) to broadcast against X."""
    return noise_level * (X.max(axis=(1, 2, 3), keepdims=True) - X.min(axis=(1, 2, 3), keepdims=True))


def smoothgrad(X, y, model, num_samples=25, noise_level=0.15, seed=None):
    """
    SmoothGrad: the saliency map averaged over copies of the image with Gaussian noise added.

    The gradient of a ReLU network jumps from pixel to pixel; averaging it over a small neighbourhood of
    the image keeps what is stable and washes out the rest.

    Inputs:
    - X: images (N, C, H, W), mean subtracted.
    - y: labels (N,).
    - model: a PretrainedCNN-like model.
    - num_samples: number of noisy copies of each image.
    - noise_level: standard deviation of the noise, as a fraction of each image's range (max - min).
    - seed: seed of the noise.

    Returns the maps, (N, H, W): noise_level=0 with one sample gives the plain saliency map.
    """
    X = np.asarray(X, dtype=model.dtype)
    check_labels(X, y)
    rng = np.random.default_rng(seed)
    sigma = noise_scale(X, noise_level)
    maps = None
    ###########################################################################
    # TODO: Average the saliency maps of num_samples noisy copies of X. For   #
    # each sample draw the noise of all N images at once, in this order:      #
    #     noise = sigma * rng.standard_normal(X.shape)                        #
    # (cast to X's dtype), compute the gradient of the class scores at        #
    # X + noise with class_score_gradient, and add the max over channels of   #
    # its absolute value to a running sum of shape (N, H, W).                 #
    ###########################################################################
    # *****START OF YOUR CODE*****
    total = np.zeros((X.shape[0], *X.shape[2:]), dtype=X.dtype)
    for _ in range(num_samples):
        noise = (sigma * rng.standard_normal(X.shape)).astype(X.dtype)
        total += np.abs(class_score_gradient(X + noise, y, model)).max(axis=1)
    maps = total / num_samples
    # *****END OF YOUR CODE*****
    return maps


def integrated_gradients(X, y, model, baseline=None, steps=50):
    """
    Integrated Gradients: (X - baseline) times the gradient averaged along the path from baseline to X.

    The path average uses the trapezoid rule on the steps + 1 points baseline + (k / steps) (X - baseline),
    k = 0..steps: (1 / steps) (g_0 / 2 + g_1 + ... + g_{steps-1} + g_steps / 2), g_k the gradient of the
    class score at point k. Completeness: the attributions of an image add up to
    score(X) - score(baseline), up to the error of the rule.

    Inputs:
    - X: images (N, C, H, W), mean subtracted.
    - y: labels (N,).
    - model: a PretrainedCNN-like model.
    - baseline: the image that means "nothing" (broadcastable to X); None is all zeros, the mean image.
    - steps: number of intervals of the trapezoid rule (steps + 1 gradients per image).

    Returns the attributions, (N, C, H, W).
    """
    X = np.asarray(X, dtype=model.dtype)
    check_labels(X, y)
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    baseline = np.zeros_like(X) if baseline is None else np.broadcast_to(baseline, X.shape).astype(X.dtype)
    attributions = None
    ###########################################################################
    # TODO: Sum the gradients of the class scores (class_score_gradient) at   #
    # the points baseline + (k / steps) * (X - baseline), k = 0, ..., steps,  #
    # with weight 1/2 for the two ends and 1 for the others; divide the sum   #
    # by steps to get the path average, and multiply it by X - baseline.      #
    # One gradient call per k handles all N images.                           #
    ###########################################################################
    # *****START OF YOUR CODE*****
    path_sum = np.zeros_like(X)
    for k in range(steps + 1):
        weight = 0.5 if k in (0, steps) else 1.0
        path_sum += weight * class_score_gradient(baseline + (k / steps) * (X - baseline), y, model)
    attributions = (X - baseline) * path_sum / steps
    # *****END OF YOUR CODE*****
    return attributions


def grad_cam(X, y, model, layer, upsample=True):
    """
    Grad-CAM at the output of a conv layer: its channels weighted by how much they raise the class score.

    With A the activations (N, K, h, w) of `layer` and dA the gradient of the score of class y with
    respect to them, the weight of channel k is the spatial mean of dA[:, k], and the map is
    relu(sum_k weight_k A[:, k]): the parts of the layer's picture that speak for the class.

    Inputs:
    - X: images (N, C, H, W), mean subtracted.
    - y: labels (N,).
    - model: a PretrainedCNN-like model.
    - layer: the index of the layer whose output is used (`model.forward(X, end=layer)`); it must be a
      spatial map (N, K, h, w) and not the last layer.
    - upsample: resize the maps bilinearly to the image size (H, W).

    Returns the maps, (N, H, W) with upsample, else (N, h, w).
    """
    X = np.asarray(X, dtype=model.dtype)
    check_labels(X, y)
    activations, _ = model.forward(X, end=layer, mode="test")
    if activations.ndim != 4:
        raise ValueError(
            f"grad_cam needs a layer with a spatial map (N, K, h, w); layer {layer} gives shape "
            f"{activations.shape}: pick a conv layer"
        )
    cam = None
    ###########################################################################
    # TODO: Run the rest of the network on the activations, from layer + 1    #
    # to the scores (model.forward with start=layer + 1, test mode), and      #
    # backward the one-hot upstream gradient of class y (one_hot) to get dA,  #
    # the gradient with respect to the activations. The channel weights are   #
    # the spatial means of dA (N, K, 1, 1); the map (N, h, w) is the ReLU of  #
    # the weighted sum of the activation channels.                            #
    ###########################################################################
    # *****START OF YOUR CODE*****
    scores, cache = model.forward(activations, start=layer + 1, mode="test")
    dA, _ = model.backward(one_hot(scores, y), cache)
    weights = dA.mean(axis=(2, 3), keepdims=True)
    cam = np.maximum((weights * activations).sum(axis=1), 0)
    # *****END OF YOUR CODE*****
    if cam is None or not upsample:  # None: not written yet
        return cam
    return resize_bilinear(cam, *X.shape[2:])


def guided_backprop(X, y, model):
    """
    Guided backpropagation: the gradient of the score of class y, where every ReLU's backward also zeroes
    the negative upstream gradients (only evidence for the class flows back).

    Inputs: X (N, C, H, W), y (N,), model whose backward takes guided=True.

    Returns the maps, (N, C, H, W).
    """
    return class_score_gradient(X, y, model, guided=True)


def guided_grad_cam(X, y, model, layer):
    """Guided Grad-CAM: guided backpropagation (N, C, H, W) masked by the upsampled Grad-CAM map."""
    return guided_backprop(X, y, model) * grad_cam(X, y, model, layer)[:, None]


def pixel_importance(attribution, image_shape):
    """
    One importance per pixel, (N, H, W): a map (N, H, W) as it is, a per-channel attribution
    (N, C, H, W) summed over channels in absolute value.
    """
    attribution = np.asarray(attribution)
    N, C, H, W = image_shape
    if attribution.shape == (N, C, H, W):
        return np.abs(attribution).sum(axis=1)
    if attribution.shape != (N, H, W):
        raise ValueError(
            f"expected an attribution of shape (N, H, W) = {(N, H, W)} or (N, C, H, W) = {(N, C, H, W)} "
            f"for images {tuple(image_shape)}, got {attribution.shape}"
        )
    return attribution


def class_probability(X, y, model):
    """The softmax probability of class y[i] for image i, (N,)."""
    scores = model.loss(X)
    scores = scores - scores.max(axis=1, keepdims=True)
    probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    return probabilities[np.arange(len(y)), y]


def probability_curve(X, y, model, attribution, steps=20, mode="deletion"):
    """
    The softmax probability of class y while the pixels change, most attributed first, in `steps` equal
    parts (Petsiuk et al. 2018): from the image to a strongly blurred copy of it (mode 'deletion'), or
    from that blurred copy to the image ('insertion').

    Inputs:
    - X: images (N, C, H, W); y: labels (N,); model: a PretrainedCNN-like model.
    - attribution: (N, H, W), or (N, C, H, W) summed over channels in absolute value.
    - steps: the pixels change in this many equal parts.
    - mode: 'deletion' or 'insertion'.

    Returns the probabilities (N, steps + 1), at 0, 1/steps, ..., 1 of the pixels changed.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    X = np.asarray(X, dtype=model.dtype)
    y = check_labels(X, y)
    N, C, H, W = X.shape
    importance = pixel_importance(attribution, X.shape).reshape(N, H * W)
    # rank[i, p]: 0 for the most important pixel of image i, H*W - 1 for the least important one
    rank = np.empty((N, H * W), dtype=np.int64)
    np.put_along_axis(rank, np.argsort(-importance, axis=1, kind="stable"), np.arange(H * W)[None], axis=1)
    rank = rank.reshape(N, 1, H, W)
    sigma = BLUR_SIGMA_FRACTION * max(H, W)
    blurred = ndimage.gaussian_filter(X, sigma=(0, 0, sigma, sigma), mode="nearest")
    start, end = (X, blurred) if mode == "deletion" else (blurred, X)
    curve = []
    for k in range(steps + 1):
        changed = rank < round(k * H * W / steps)
        curve.append(class_probability(np.where(changed, end, start), y, model))
    return np.stack(curve, axis=1)


def deletion_score(X, y, model, attribution, steps=20):
    """
    Deletion score (Petsiuk et al. 2018): the area under the softmax probability of class y while the
    pixels, most attributed first, are replaced by those of a strongly blurred copy of the image.

    Inputs:
    - X: images (N, C, H, W); y: labels (N,); model: a PretrainedCNN-like model.
    - attribution: (N, H, W), or (N, C, H, W) summed over channels in absolute value.
    - steps: the pixels change in this many equal parts.

    Returns (N,) scores in [0, 1]; lower is better (the attribution found what the model needs).
    """
    curve = probability_curve(X, y, model, attribution, steps, "deletion")
    return np.trapezoid(curve, dx=1 / steps, axis=1)


def insertion_score(X, y, model, attribution, steps=20):
    """
    Insertion score (Petsiuk et al. 2018): the area under the softmax probability of class y while the
    pixels, most attributed first, move from a strongly blurred copy of the image to the image.

    Inputs and returns as deletion_score; higher is better.
    """
    curve = probability_curve(X, y, model, attribution, steps, "insertion")
    return np.trapezoid(curve, dx=1 / steps, axis=1)


def rank_correlation(maps_a, maps_b):
    """
    Spearman rank correlation of two batches of maps, image by image.

    Inputs: maps_a, maps_b of the same shape (N, ...).

    Returns (N,) correlations in [-1, 1]; 0 where one of the two maps is constant (no ranking).
    """
    maps_a, maps_b = np.asarray(maps_a), np.asarray(maps_b)
    if maps_a.shape != maps_b.shape:
        raise ValueError(
            f"expected two batches of maps of the same shape, got {maps_a.shape} and {maps_b.shape}"
        )
    N = maps_a.shape[0]
    ranks_a = stats.rankdata(maps_a.reshape(N, -1), axis=1)
    ranks_b = stats.rankdata(maps_b.reshape(N, -1), axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(ranks_a, axis=1) * np.linalg.norm(ranks_b, axis=1)
    return np.where(norms > 0, (ranks_a * ranks_b).sum(axis=1) / np.maximum(norms, 1e-300), 0.0)


def randomization_check(X, y, model, method, seed=None):
    """
    The cascading model-randomisation sanity check (Adebayo et al. 2018).

    For each layer L from the top down, the layers L and above of a copy of the model get fresh random
    weights (the model's own initialisation), and the maps of `method` on that copy are compared with the
    maps on the trained model. An explanation of what the model learned should drift away as more of
    the model is randomised; one that stays (an edge detector) explains the image, not the model.

    Inputs:
    - X: images (N, C, H, W); y: labels (N,).
    - model: the trained model; it is left unchanged (it needs num_layers and reinitialize_layer).
    - method: a callable method(X, y, model) -> maps, e.g. saliency or lambda X, y, m: grad_cam(X, y, m, 6).
    - seed: seed of the random weights.

    Returns a dict {L: (N,) Spearman rank correlations}, L from num_layers - 1 down to 0; key L means
    "randomised from layer L up", the lowest key all layers.
    """
    rng = np.random.default_rng(seed)
    trained_maps = method(X, y, model)
    randomized = copy.deepcopy(model)
    correlations = {}
    for layer in reversed(range(model.num_layers)):
        randomized.reinitialize_layer(layer, seed=int(rng.integers(1 << 31)))
        correlations[layer] = rank_correlation(trained_maps, method(X, y, randomized))
    return correlations


def pointing_game(maps, boxes):
    """
    The pointing game: does each map put its maximum inside the item's bounding box?

    Inputs:
    - maps: (N, H, W) attribution maps.
    - boxes: (N, 4) int boxes x0, y0, x1, y1 (inclusive), e.g. from load_tiny_imagenet_val_boxes.

    Returns a bool array (N,); its mean is the hit rate (chance level: the mean box area share).
    """
    maps, boxes = np.asarray(maps), np.asarray(boxes)
    if maps.ndim != 3 or boxes.shape != (maps.shape[0], 4):
        raise ValueError(f"expected maps (N, H, W) and boxes (N, 4), got {maps.shape} and {boxes.shape}")
    rows, cols = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
    x0, y0, x1, y1 = boxes.T
    return (x0 <= cols) & (cols <= x1) & (y0 <= rows) & (rows <= y1)
