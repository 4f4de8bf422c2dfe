"""Q4 image generation (15 points): class visualization, feature inversion, DeepDream (5 each).

The three draw their random numbers (initial noise, jitter) from a seed, and the plumbing around the
student's step is the master's: with the same seed, a correct step gives the reference's image. A few
steps on the small CNN, with clipping to the pixel range of a flat mean image.
"""

import numpy as np

from staff.judging import GRAD_TOL, HiddenCheck, compare, image_shape_ok, normal, value
from staff.questions.cnn import call_on_cnn


def checks(rng):
    """The table of Q4's checks, with fresh inputs from rng."""
    init_seed = int(rng.integers(1 << 30))
    mean = np.full((3, 64, 64), float(rng.uniform(100, 140)))
    X = normal(rng, 1, 3, 64, 64, scale=50.0)
    layer = int(rng.integers(1, 3))
    common = {"show_every": 0, "verbose": False, "seed": int(rng.integers(1 << 30))}
    means = {"mean_image": "mean_image"}
    jobs = {
        "create_class_visualization": call_on_cnn(
            init_seed,
            {"mean_image": mean},
            "create_class_visualization",
            [int(rng.integers(10))],
            means,
            learning_rate=100.0,
            num_iterations=8,
            **common,
        ),
        # the target features are X's at `layer`, computed by the runner with the master's model
        "invert_features": call_on_cnn(
            init_seed,
            {"mean_image": mean, "X": X},
            "invert_features",
            ["target_feats", layer],
            means,
            learning_rate=1e-2,
            num_iterations=8,
            step="gd",  # the plain step shows the gradient's scale too (Adam, the default, hides it)
            **common,
        ),
        "deepdream": call_on_cnn(
            init_seed,
            {"mean_image": mean, "X": X},
            "deepdream",
            ["X", layer],
            means,
            learning_rate=5.0,
            num_iterations=6,
            **common,
        ),
    }
    jobs["invert_features"].options["features_of"] = {"name": "target_feats", "X": "X", "layer": layer}
    return [image_check(name, job) for name, job in jobs.items()]


def image_check(name, job):
    """The submission's image against the reference's, from the same seed."""

    def judge(ctx):
        got = image_shape_ok(name, value(ctx.student[0], "out", name), (1, 3, 64, 64))
        return 1.0, compare(f"{name} image", got, ctx.reference[0].arrays["out"], GRAD_TOL)

    return HiddenCheck("Q4", f"{name} (same seed as the reference)", 5, [job], [job], judge)
