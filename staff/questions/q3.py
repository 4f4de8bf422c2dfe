"""Q3 image gradients (10 points): saliency maps against the reference (5), a fooling image that fools
the model (5)."""

import numpy as np

from staff.judging import VALUES, Failed, HiddenCheck, compare, image_shape_ok, normal, value, verdict
from staff.protocol import Job
from staff.questions.cnn import call_on_cnn, cnn_options, scores_on_cnn


def checks(rng):
    """The table of Q3's checks, with fresh inputs from rng."""
    return [saliency_check(rng), fooling_check(rng)]


def saliency_check(rng):
    init_seed = int(rng.integers(1 << 30))
    arrays = {"X": normal(rng, 2, 3, 64, 64, scale=60.0), "y": rng.integers(0, 10, size=2)}
    job = call_on_cnn(init_seed, arrays, "compute_saliency_maps", ["X", "y"])

    def judge(ctx):
        got = value(ctx.student[0], "out", "compute_saliency_maps")
        return 1.0, compare("compute_saliency_maps", got, [(VALUES, ctx.reference[0].arrays["out"])])

    return HiddenCheck("Q3", "compute_saliency_maps values", 5, [job], [job], judge)


def fooling_check(rng):
    """The reference first finds an image and a target it can fool within its 100 steps (a fair task on
    this random CNN, where a few images are much harder to fool than others); the submission must make
    the model predict the target with a small change of that image, as the trusted model judges."""
    init_seed = int(rng.integers(1 << 30))
    prepare = Job("cnn", cnn_options(init_seed, action="foolable", seed=int(rng.integers(1 << 30))), {})

    def student(reference):
        X, target = reference[0].arrays["X"], int(reference[0].arrays["target"])
        return [call_on_cnn(init_seed, {"X": X}, "make_fooling_image", ["X", target])]

    def judge(ctx):
        X, target = ctx.reference[0].arrays["X"], int(ctx.reference[0].arrays["target"])
        image = image_shape_ok(
            "make_fooling_image", value(ctx.student[0], "out", "make_fooling_image"), X.shape
        )
        scored = ctx.evaluate([scores_on_cnn(init_seed, image)])[0]
        predicted = int(np.argmax(scored.arrays["scores"][0]))
        change = np.linalg.norm(image - X) / np.linalg.norm(X)
        fooled = predicted == target
        changed_little, line = verdict("make_fooling_image", "relative change of the image", change, 0.2)
        text = (
            f"make_fooling_image: the model predicts class {predicted} for the image (target {target}) "
            f"{'OK' if fooled else 'FAIL'}\n{line}"
        )
        if not (fooled and changed_little):
            raise Failed(text)
        return 1.0, text

    return HiddenCheck("Q3", "make_fooling_image fools the model", 5, student, [prepare], judge)
