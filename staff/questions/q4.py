"""Q4 image generation (15 points): class visualization, feature inversion, DeepDream (5 each).

The three draw their random numbers (initial noise, jitter) from a seed, and the plumbing around the
student's step is the master's: with the same seed, a correct step gives the reference's image. A few
steps on the small CNN, with clipping to the pixel range of a flat mean image.
"""

import numpy as np

from staff.judging import IMAGES, HiddenCheck, compare, image_shape_ok, normal, value
from staff.questions.cnn import call_on_cnn

GD = {"step": "gd"}


def checks(rng):
    """The table of Q4's checks, with fresh inputs from rng."""
    init_seed = int(rng.integers(1 << 30))
    arrays = {
        "mean_image": np.full((3, 64, 64), float(rng.uniform(100, 140))),
        "X": normal(rng, 1, 3, 64, 64, scale=50.0),
    }
    layer, target, seed = int(rng.integers(1, 3)), int(rng.integers(10)), int(rng.integers(1 << 30))
    table = [  # function, its inputs (array names or values), its keyword arguments
        ("create_class_visualization", [target], {"learning_rate": 100.0, "num_iterations": 8}),
        # the plain step "gd" shows the gradient's scale too (Adam, the default, hides it)
        ("invert_features", ["target_feats", layer], {"learning_rate": 1e-2, "num_iterations": 8, **GD}),
        ("deepdream", ["X", layer], {"learning_rate": 5.0, "num_iterations": 6}),
    ]
    checks = []
    for function, inputs, kwargs in table:
        job = call_on_cnn(
            init_seed,
            arrays,
            function,
            inputs,
            {"mean_image": "mean_image"},
            show_every=0,
            verbose=False,
            seed=seed,
            **kwargs,
        )
        checks.append(image_check(function, job))
    # the inversion's target features are X's at `layer`, computed by the runner with the master's model
    checks[1].student[0].options["features_of"] = {"name": "target_feats", "X": "X", "layer": layer}
    return checks


def image_check(name, job):
    """The submission's image against the reference's, from the same seed."""

    def judge(ctx):
        got = image_shape_ok(name, value(ctx.student[0], "out", name), (1, 3, 64, 64))
        return 1.0, compare(f"{name} image", got, [(IMAGES, ctx.reference[0].arrays["out"])])

    return HiddenCheck("Q4", f"{name} (same seed as the reference)", 5, [job], [job], judge)
