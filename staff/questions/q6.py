"""Q6 attribution (10 points, extra credit): SmoothGrad (3), Integrated Gradients (4) and Grad-CAM (3)
against the reference on the small CNN, with the same inputs and the same noise seed, in float64 (the
values bound of Q1-Q4, staff/judging.py VALUES)."""

from staff.judging import VALUES, HiddenCheck, compare, normal, value
from staff.questions.cnn import call_on_cnn

ATTRIBUTION = "asgn3.attribution"


def checks(rng):
    """The table of Q6's checks, with fresh inputs from rng."""
    return [smoothgrad_check(rng), integrated_gradients_check(rng), grad_cam_check(rng)]


def images_and_labels(rng, n=3):
    return {"X": normal(rng, n, 3, 64, 64, scale=60.0), "y": rng.integers(0, 10, size=n)}


def values_check(name, points, job):
    """The submission's output of job against the reference's, value by value."""

    def judge(ctx):
        got = value(ctx.student[0], "out", name)
        return 1.0, compare(f"{name} values", got, [(VALUES, ctx.reference[0].arrays["out"])])

    return HiddenCheck("Q6", f"{name} values", points, [job], [job], judge)


def smoothgrad_check(rng):
    init_seed = int(rng.integers(1 << 30))
    options = dict(num_samples=3, noise_level=0.1, seed=int(rng.integers(1 << 30)))
    job = call_on_cnn(
        init_seed, images_and_labels(rng), "smoothgrad", ["X", "y"], module=ATTRIBUTION, **options
    )
    return values_check("smoothgrad", 3, job)


def integrated_gradients_check(rng):
    init_seed = int(rng.integers(1 << 30))
    arrays = {**images_and_labels(rng), "baseline": normal(rng, 1, 3, 64, 64, scale=20.0)}
    job = call_on_cnn(
        init_seed,
        arrays,
        "integrated_gradients",
        ["X", "y"],
        array_kwargs={"baseline": "baseline"},
        module=ATTRIBUTION,
        steps=int(rng.integers(3, 7)),
    )
    return values_check("integrated_gradients", 4, job)


def grad_cam_check(rng):
    """Grad-CAM's own map (upsample=False: the resizing is the master's) at a random conv layer."""
    init_seed = int(rng.integers(1 << 30))
    layer = int(rng.integers(0, 3))
    job = call_on_cnn(
        init_seed,
        images_and_labels(rng),
        "grad_cam",
        ["X", "y"],
        module=ATTRIBUTION,
        layer=layer,
        upsample=False,
    )
    return values_check("grad_cam", 3, job)
