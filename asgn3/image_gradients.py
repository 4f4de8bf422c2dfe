"""Image gradients of a trained CNN: saliency maps, fooling images, class visualization, feature
inversion and DeepDream (questions 3 and 4).

All five need one thing from the model: the gradient of some function of its activations with respect
to the input image. `model.forward(X, end=layer)` runs the network up to a layer and
`model.backward(dout, cache)` returns dX, the gradient of sum(dout * activations) with respect to X.
Images are (N, 3, H, W) arrays with the mean image subtracted (see image_utils.preprocess_image).

The iterative methods share their plumbing, kept outside the student code: random jitter (the image is
rolled by a few pixels before each step and rolled back after it), clipping to the valid pixel range,
periodic blurring, a progress bar, and a display every `show_every` steps. A display goes to
`callback(t, X)` when one is given, else to matplotlib when it runs interactively (a notebook); show_every=0
turns displays off.
"""

import sys

import numpy as np
from tqdm.auto import tqdm

from asgn3.image_utils import blur_image, deprocess_image, resize_bilinear
from asgn3.optim import adam

# The step rules of ImageStep, with their default learning rates (adam and normalized: pixel levels).
STEP_RULES = {"gd": 10000.0, "normalized": 2.0, "adam": 3.0}


def compute_saliency_maps(X, y, model):
    """
    Saliency maps: how much each pixel changes the score of the correct class.

    Inputs:
    - X: images (N, 3, H, W).
    - y: labels (N,), integers in [0, C).
    - model: a PretrainedCNN.

    Returns an array of shape (N, H, W): the absolute value of the gradient of the unnormalized score
    of class y[i] with respect to image i (test mode), maximised over the three channels.
    """
    saliency = None
    ###########################################################################
    # TODO: Compute the saliency maps of X. Run the model forward in 'test'   #
    # mode to the scores (N, C); the upstream gradient is 1 at the score of   #
    # the correct class of each image and 0 elsewhere; backward gives dX      #
    # (N, 3, H, W); the saliency is the max over channels of |dX|.            #
    ###########################################################################
    # *****START OF YOUR CODE*****
    scores, cache = model.forward(X, mode="test")
    dscores = np.zeros_like(scores)
    dscores[np.arange(scores.shape[0]), y] = 1
    dX, _ = model.backward(dscores, cache)
    saliency = np.abs(dX).max(axis=1)
    # *****END OF YOUR CODE*****
    return saliency


def make_fooling_image(X, target_y, model, learning_rate=10.0, max_iterations=100, objective="score"):
    """
    Change an image a little, until the model classifies it as target_y.

    Inputs:
    - X: one image (1, 3, H, W); not modified.
    - target_y: the class the model should predict, an integer in [0, C).
    - model: a PretrainedCNN.
    - learning_rate: length (L2 norm over the whole image) of each step.
    - max_iterations: give up after this many steps (usually fewer than 100 are needed).
    - objective: 'score' ascends the unnormalized score of target_y (the classic method);
      'log_softmax' ascends its log-probability, which also pushes the other scores down and fools
      the model more reliably when a similar class rises together with the target.

    Returns the fooling image (1, 3, H, W): the model predicts target_y for it unless max_iterations
    steps were not enough.
    """
    if objective not in ("score", "log_softmax"):
        raise ValueError(f"objective must be 'score' or 'log_softmax', got {objective!r}")
    X_fooling = None
    ###########################################################################
    # TODO: Starting from a copy of X, do gradient ascent: at each step run   #
    # forward (test mode), stop as soon as target_y has the highest score,    #
    # else backward an upstream gradient dscores (1, C) and step along the    #
    # normalized gradient:                                                    #
    #     X_fooling += learning_rate * dX / ||dX||                            #
    # Normalizing makes the step length independent of the gradient's scale. #
    # For objective 'score', dscores is 1 at target_y and 0 elsewhere; for    #
    # 'log_softmax' it is the gradient of log softmax(scores)[target_y]:      #
    # that one-hot vector minus the softmax probabilities.                    #
    ###########################################################################
    # *****START OF YOUR CODE*****
    X_fooling = np.array(X, dtype=model.dtype)
    for _ in range(max_iterations):
        scores, cache = model.forward(X_fooling, mode="test")
        if scores[0].argmax() == target_y:
            break
        dscores = np.zeros_like(scores)
        dscores[0, target_y] = 1
        if objective == "log_softmax":
            probs = np.exp(scores - scores.max())
            dscores -= probs / probs.sum()
        dX, _ = model.backward(dscores, cache)
        X_fooling += learning_rate * dX / np.linalg.norm(dX)
    # *****END OF YOUR CODE*****
    return X_fooling


def create_class_visualization(
    target_y,
    model,
    learning_rate=10000,
    blur_every=1,
    l2_reg=1e-6,
    max_jitter=4,
    num_iterations=100,
    show_every=25,
    mean_image=None,
    seed=None,
    callback=None,
    verbose=True,
):
    """
    Generate an image that the model scores highly as target_y, starting from random noise.

    Gradient ascent on s_y(I) - l2_reg * ||I||^2, with jitter, clipping and blurring as regularizers.

    Inputs:
    - target_y: the class to visualize, an integer in [0, C).
    - model: a PretrainedCNN; the image has its input size.
    - learning_rate: step size of the (unnormalized) gradient ascent.
    - blur_every: blur the image every blur_every steps (0: never).
    - l2_reg: strength of the L2 penalty on the image.
    - max_jitter: largest roll, in pixels, in each direction.
    - num_iterations: number of steps.
    - show_every: display every show_every steps (0: never).
    - mean_image: the mean image (3, H, W) subtracted from the model's inputs: pixels are clipped to
      [0, 255] once it is added back, and displays add it. None: no clipping.
    - seed: seed of the initial noise and of the jitter.
    - callback: optional f(t, X) that takes the displays instead of matplotlib.
    - verbose: show a progress bar.

    Returns the image (1, 3, H, W), mean subtracted.
    """
    rng = np.random.default_rng(seed)
    size = model.input_size
    X = rng.standard_normal((1, 3, size, size)).astype(model.dtype)
    for t in tqdm(range(num_iterations), desc=f"class {target_y}", disable=not verbose, leave=False):
        ox, oy = rng.integers(-max_jitter, max_jitter + 1, size=2)
        X = jitter(X, ox, oy)
        #######################################################################
        # TODO: One step of gradient ascent on s_y(X) - l2_reg * ||X||^2:     #
        # forward X (test mode) to the scores, backward an upstream gradient  #
        # that is 1 at target_y, add the gradient of the L2 penalty           #
        # (-2 * l2_reg * X) and update X in place with the learning rate.     #
        #######################################################################
        # *****START OF YOUR CODE*****
        scores, cache = model.forward(X, mode="test")
        dscores = np.zeros_like(scores)
        dscores[0, target_y] = 1
        dX, _ = model.backward(dscores, cache)
        X += learning_rate * (dX - 2 * l2_reg * X)
        # *****END OF YOUR CODE*****
        X = jitter(X, -ox, -oy)
        if blur_every > 0 and t % blur_every == 0:
            X = blur_image(X)
        X = clip_to_pixel_range(X, mean_image)
        show(t, X, num_iterations, show_every, callback, mean_image, f"class {target_y}")
    return X


def invert_features(
    target_feats,
    layer,
    model,
    learning_rate=None,
    num_iterations=500,
    l2_reg=1e-7,
    blur_every=0,
    show_every=50,
    mean_image=None,
    image_size=None,
    seed=None,
    callback=None,
    verbose=True,
    step=None,
    tv_reg=3.0,
):
    """
    Find an image whose features at `layer` match target_feats, starting from random noise.

    Gradient descent on ||phi(I) - target_feats||^2 + l2_reg * ||I||^2 + a total-variation penalty
    (see total_variation) weighted by tv_reg * ||target_feats||^2, with clipping and optional blurring.
    The default step (Adam, learning rate in pixel levels) does not depend on the scale of the model's
    gradients, so the defaults work on any model; step='gd' with learning_rate=10000, tv_reg=0 and
    blur_every=1 is the classic method (a call that gives a learning_rate but no step is taken for a
    classic one: its steps are 'gd').

    Inputs:
    - target_feats: features of one image at `layer`, e.g. (1, F, H', W').
    - layer: index of the model layer the features come from.
    - model: a PretrainedCNN.
    - learning_rate: step size of the step rule (None: STEP_RULES' default for it, in pixel levels).
    - num_iterations: number of steps.
    - l2_reg: strength of the L2 penalty on the image.
    - blur_every: blur the image every blur_every steps (0: never).
    - show_every: display every show_every steps (0: never).
    - mean_image, seed, callback, verbose: as in create_class_visualization.
    - image_size: side of the image to reconstruct (default the model's input size).
    - step: 'adam', 'normalized' or 'gd' (see ImageStep); None: 'gd' when a learning_rate is given,
      else 'adam'.
    - tv_reg: weight of the total-variation penalty, relative to the size of the target features.
    The initial noise, the default learning rates and the total variation are measured in pixel levels,
    whose size in the model's input units is pixel_level(model).

    Returns the image (1, 3, H, W), mean subtracted.
    """
    rng = np.random.default_rng(seed)
    size = model.input_size if image_size is None else image_size
    level = pixel_level(model)
    X = (level * rng.standard_normal((1, 3, size, size))).astype(model.dtype)
    if step is None:
        step = "adam" if learning_rate is None else "gd"
    descend = ImageStep(step, learning_rate, level)
    tv_weight = tv_reg * float(np.sum(np.square(target_feats)))
    for t in tqdm(range(num_iterations), desc=f"invert layer {layer}", disable=not verbose, leave=False):
        dX = None
        #######################################################################
        # TODO: The gradient dX of the loss                                   #
        #     ||phi(X) - target_feats||^2 + l2_reg * ||X||^2                  #
        # with respect to X, where phi(X) = model.forward(X, end=layer) in    #
        # test mode: the upstream gradient of the first term is               #
        # 2 (phi(X) - target_feats). (The step itself is taken below.)        #
        #######################################################################
        # *****START OF YOUR CODE*****
        feats, cache = model.forward(X, end=layer, mode="test")
        dX, _ = model.backward(2 * (feats - target_feats), cache)
        dX = dX + 2 * l2_reg * X
        # *****END OF YOUR CODE*****
        if dX is None:  # not written yet
            return None
        if tv_weight:
            dX = dX + tv_weight * total_variation(X, level)[1]
        X = descend(X, -dX)
        if blur_every > 0 and t % blur_every == 0:
            X = blur_image(X)
        X = clip_to_pixel_range(X, mean_image)
        show(t, X, num_iterations, show_every, callback, mean_image, f"layer {layer}")
    return X


def deepdream(
    X,
    layer,
    model,
    learning_rate=5.0,
    max_jitter=16,
    num_iterations=100,
    show_every=25,
    mean_image=None,
    seed=None,
    callback=None,
    verbose=True,
    num_octaves=1,
    octave_scale=1.4,
):
    """
    DeepDream: amplify whatever the model sees at `layer` in an image.

    Gradient ascent on 1/2 ||phi(X)||^2, the energy of the activations at `layer`, with jitter and
    clipping. The image may be larger than the model's input size when `layer` is a conv block.
    With octaves, the dream starts on the image shrunk num_octaves - 1 times by octave_scale; the detail
    dreamt at each scale is enlarged and added to the image at the next one, so that the patterns grow
    at several sizes instead of only at the size of the layer's receptive field.

    Inputs:
    - X: the starting image (1, 3, H, W), mean subtracted; not modified.
    - layer: index of the model layer whose activations are amplified.
    - model: a PretrainedCNN.
    - learning_rate: step size, relative to the mean absolute gradient.
    - max_jitter: largest roll, in pixels, in each direction.
    - num_iterations: number of steps at each octave.
    - show_every: display every show_every steps (0: never).
    - mean_image, seed, callback, verbose: as in create_class_visualization (for an image of another
      size than the mean image, its per-channel mean is used).
    - num_octaves: number of scales (1: the classic DeepDream, at the image's size only).
    - octave_scale: ratio of the sides of two consecutive scales (> 1).

    Returns the dreamed image (1, 3, H, W), mean subtracted.
    """
    if int(num_octaves) < 1 or not octave_scale > 1:
        raise ValueError(f"need num_octaves >= 1 and octave_scale > 1; got {num_octaves}, {octave_scale}")
    rng = np.random.default_rng(seed)
    original = np.array(X, dtype=model.dtype)
    height, width = original.shape[2:]
    detail = np.zeros_like(original)
    total_steps = num_octaves * num_iterations
    for octave in reversed(range(num_octaves)):
        size = (round(height / octave_scale**octave), round(width / octave_scale**octave))
        base = resize_bilinear(original, *size)
        X = base + resize_bilinear(detail, *size)
        for step in tqdm(
            range(num_iterations), desc=f"dream layer {layer}", disable=not verbose, leave=False
        ):
            ox, oy = rng.integers(-max_jitter, max_jitter + 1, size=2)
            X = jitter(X, ox, oy)
            ###################################################################
            # TODO: One step of DeepDream: forward X (test mode) to `layer`,  #
            # then backward with the activations themselves as the upstream   #
            # gradient (the gradient of 1/2 ||phi(X)||^2). Update X in place  #
            # with the gradient normalized by its mean absolute value:        #
            #     X += learning_rate * dX / mean(|dX|)                        #
            ###################################################################
            # *****START OF YOUR CODE*****
            activations, cache = model.forward(X, end=layer, mode="test")
            dX, _ = model.backward(activations, cache)
            X += learning_rate * dX / max(np.abs(dX).mean(), 1e-12)
            # *****END OF YOUR CODE*****
            X = jitter(X, -ox, -oy)
            X = clip_to_pixel_range(X, mean_image)
            t = (num_octaves - 1 - octave) * num_iterations + step
            show(t, X, total_steps, show_every, callback, mean_image, f"dream layer {layer}")
        detail = X - base
    return X


class ImageStep:
    """
    One step of gradient ascent on an image by a rule: `X = step(X, dX)` moves X along dX (pass -dX to
    descend). The rules (STEP_RULES holds each one's default learning rate):
    - 'gd': X + learning_rate * dX, the classic step; its size follows the scale of the model's gradients.
    - 'normalized': X + learning_rate * dX / mean(|dX|): about learning_rate pixel levels per step.
    - 'adam': Adam (asgn3.optim.adam) on dX, also about learning_rate pixel levels per step at first,
      then smaller where the gradient keeps changing sign.
    learning_rate None takes the rule's default, for 'normalized' and 'adam' in pixel levels of size
    `level` (see pixel_level).
    """

    def __init__(self, rule, learning_rate=None, level=1.0):
        if rule not in STEP_RULES:
            raise ValueError(f"step must be one of {', '.join(map(repr, STEP_RULES))}; got {rule!r}")
        self.rule = rule
        if learning_rate is None:
            learning_rate = STEP_RULES[rule] * (1.0 if rule == "gd" else level)
        self.learning_rate = float(learning_rate)
        # a tiny epsilon: the gradients of some models are themselves tiny (1e-6), the step must not shrink
        self.adam_config = {"learning_rate": self.learning_rate, "epsilon": 1e-12}

    def __call__(self, X, dX):
        if self.rule == "gd":
            return X + self.learning_rate * dX
        if self.rule == "normalized":
            return X + self.learning_rate * dX / max(float(np.abs(dX).mean()), 1e-12)
        next_X, self.adam_config = adam(X, -dX, self.adam_config)  # adam descends
        return next_X.astype(X.dtype, copy=False)


def pixel_level(model):
    """
    The size of one pixel level (1/255 of the pixel range) in the model's inputs: the model's attribute
    `pixel_level` when it has one (e.g. 1/128 for inputs (pixel - 127) / 128), else 1 (the kit's
    PretrainedCNN takes pixel values minus the mean image).
    """
    return float(getattr(model, "pixel_level", 1.0))


def total_variation(X, level=1.0):
    """
    The total-variation penalty of images (N, C, H, W), and its gradient.

    V(X) = mean over neighbouring pixel pairs (right and down) of their squared difference, in units of
    the full pixel range (255 levels of size `level`): 0 for a flat image, near 1 when neighbours jump
    from black to white.

    Returns a tuple of:
    - V: a float.
    - dV: its gradient with respect to X, of the shape of X.
    """
    X = np.asarray(X)
    down, right = np.diff(X, axis=2), np.diff(X, axis=3)
    scale = (down.size + right.size) * (255.0 * level) ** 2
    dV = np.zeros_like(X)
    dV[:, :, 1:] += down
    dV[:, :, :-1] -= down
    dV[:, :, :, 1:] += right
    dV[:, :, :, :-1] -= right
    value = (np.sum(np.square(down)) + np.sum(np.square(right))) / scale
    return float(value), (2 / scale) * dV


def jitter(X, ox, oy):
    """Roll images (N, C, H, W) by ox pixels to the right and oy pixels down (wrapping around)."""
    return np.roll(X, (int(oy), int(ox)), axis=(2, 3))


def mean_for(X, mean_image):
    """The mean image for X (1, 3, H, W): mean_image itself at its own size, else its per-channel mean."""
    mean_image = np.asarray(mean_image, dtype=X.dtype)
    if mean_image.shape[1:] == X.shape[2:]:
        return mean_image
    return mean_image.mean(axis=(1, 2), keepdims=True)


def clip_to_pixel_range(X, mean_image):
    """Clip mean-subtracted images so that the pixels lie in [0, 255] once the mean is added back."""
    if mean_image is None:
        return X
    mean = mean_for(X, mean_image)
    return np.clip(X, -mean, 255.0 - mean)


def show(t, X, num_iterations, show_every, callback=None, mean_image=None, title=""):
    """
    Display the image of step t every show_every steps and at the last step.

    The display goes to callback(t, X) when there is one, else to matplotlib when pyplot is in use
    interactively (a notebook, or plt.ion()); show_every=0 turns displays off.
    """
    if show_every <= 0 or (t % show_every != 0 and t != num_iterations - 1):
        return
    if callback is not None:
        callback(t, X.copy())
        return
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None or not (plt.isinteractive() or "inline" in plt.get_backend()):
        return
    if mean_image is None:
        img = deprocess_image(X, None, mean="none", renorm=True)
    else:
        img = deprocess_image(X + mean_for(X, mean_image), None, mean="none")
    plt.imshow(img)
    plt.title(f"{title}, step {t + 1}/{num_iterations}")
    plt.axis("off")
    plt.gcf().set_size_inches(3, 3)
    plt.show()
