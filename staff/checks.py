"""The grader's hidden checks: fresh random inputs, and how each answer is judged.

A Check names the jobs to run on the submission (inside the sandbox, in one process per check) and on
the reference (in a separate trusted process), and a judge that compares the two as plain arrays, here,
in the grader. Gradients are judged against numeric gradients of the *reference* forward pass on the
same inputs, so a submission cannot pass by being consistent with its own wrong forward pass. A check
made of several arrays gives credit per array. Behaviour checks: the overfit check hands the trained
parameters to a trusted reference process, which computes their loss; the fooling check classifies the
returned image with the master's CNN here (infrastructure, no student code); the image generators draw
their noise and jitter from a seed, so their images are compared with the reference's.

Points: Q1 RNN captioning 40, Q2 LSTM captioning 35, Q3 image gradients 10, Q4 image generation 15.
"""

from dataclasses import dataclass, field

import numpy as np

from asgn3.notebook_checks import rel_error
from staff.sandbox import Limits

QUESTIONS = {
    "Q1": ("RNN captioning", 40),
    "Q2": ("LSTM captioning", 35),
    "Q3": ("image gradients", 10),
    "Q4": ("image generation", 15),
}
VALUE_TOL = 1e-6  # submission vs reference, both float64: a correct answer is near 1e-12
GRAD_TOL = 1e-5  # analytic vs centered-difference numeric gradient (h=1e-5) in float64


@dataclass
class Job:
    """One call for the runner (staff/runner.py): a task name, its options (JSON) and input arrays."""

    task: str
    options: dict
    arrays: dict


@dataclass
class Outcome:
    """What a job produced: ok, the arrays (loaded with allow_pickle=False), or why it failed."""

    ok: bool
    arrays: dict = field(default_factory=dict)
    error: str = ""
    missing: list = field(default_factory=list)


@dataclass
class Check:
    """A hidden check: jobs for the submission and the reference, and judge(ctx) -> (fraction, text).

    ctx.student[i] and ctx.reference[i] are the Outcomes of the jobs; ctx.evaluate(jobs) runs more jobs
    in the trusted process (to evaluate what the submission returned).
    """

    question: str
    name: str
    points: float
    student: list
    reference: list
    judge: object
    limits: Limits = field(default_factory=Limits)


def job_modules(job):
    """The student modules a job imports (to skip it when one of them does not even import)."""
    if job.task in ("call", "numgrad"):
        return {job.options["module"]}
    if job.task.startswith("captioning"):
        return {"asgn3.classifiers.rnn"}
    if job.task == "cnn":
        return {"asgn3.image_gradients"}
    return set()


class Failed(Exception):
    """A judge's verdict that the check failed, with the reason."""


def value(outcome, key, what):
    """The array `key` of a submission's outcome, or Failed naming why it is not there."""
    if not outcome.ok:
        raise Failed(f"{what} failed: {outcome.error}")
    if key in outcome.missing:
        raise Failed(f"{what}: {key} is None: not implemented yet (still the stub?)")
    if key not in outcome.arrays:
        raise Failed(f"{what} did not return {key}")
    return outcome.arrays[key]


def gradient_error(got, want):
    """Largest relative error of a gradient, each entry relative to max(|got| + |want|, 1e-4 * scale).

    Plain elementwise relative error is noisy on entries that are almost zero (the centered difference
    has an absolute error near 1e-10); measuring those against a small fraction of the gradient's scale
    keeps the check strict on everything that matters.
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    floor = max(1e-4 * float(np.max(np.abs(want), initial=0.0)), 1e-8)
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(got) + np.abs(want), floor), initial=0.0))


def compare(name, got, want, tol, metric=None):
    """One line comparing a submission's array with the expected one; Failed on a mismatch.

    metric: the error function (default the notebooks' rel_error; gradient_error for gradients).
    """
    got = np.asarray(got)
    if got.shape != np.shape(want):
        raise Failed(f"{name}: expected shape {np.shape(want)}, got {got.shape}")
    if not np.all(np.isfinite(got)):
        raise Failed(f"{name}: contains nan or inf")
    error = (metric or rel_error)(got.astype(np.float64), want)
    if not error < tol:
        raise Failed(f"{name}: relative error {error:.2e} (needs < {tol:.0e})")
    return f"{name}: relative error {error:.2e} < {tol:.0e} OK"


def all_or_fraction(lines_and_failures, total):
    """Judge a list of per-array results: (fraction passed, text)."""
    passed = sum(1 for ok, _ in lines_and_failures if ok)
    return passed / total, "\n".join(text for _, text in lines_and_failures)


def compare_many(pairs, tol, metric=None):
    """Compare (name, got_fn, want) triples, collecting every result; returns (fraction, text)."""
    results = []
    for name, got, want in pairs:
        try:
            results.append((True, compare(name, got(), want, tol, metric)))
        except Failed as failure:
            results.append((False, str(failure)))
    return all_or_fraction(results, len(pairs))


# -- building blocks ---------------------------------------------------------------------------------


def call_job(module, forward, arrays, inputs, fwd_outputs, backward=None, douts=(), bwd_outputs=(), **kw):
    """A runner 'call' job (see staff/runner.py task_call)."""
    options = {
        "module": module,
        "forward": forward,
        "inputs": list(inputs),
        "fwd_outputs": list(fwd_outputs),
        "backward": backward,
        "douts": list(douts),
        "bwd_outputs": list(bwd_outputs),
        **kw,
    }
    return Job("call", options, arrays)


def numgrad_job(module, forward, arrays, inputs, fwd_outputs, douts, wrt):
    """A runner 'numgrad' job: numeric gradients of sum <out, dout> of the reference forward."""
    options = {
        "module": module,
        "forward": forward,
        "inputs": list(inputs),
        "fwd_outputs": list(fwd_outputs),
        "douts": dict(douts),
        "wrt": list(wrt),
    }
    return Job("numgrad", options, arrays)


def values_check(question, points, module, forward, arrays, inputs, outputs, tol=VALUE_TOL, **kw):
    """Forward outputs of the submission compared with the reference's on the same fresh inputs."""
    job = call_job(module, forward, arrays, inputs, outputs, **kw)

    def judge(ctx):
        keys = [key for key in outputs if key]
        reference = ctx.reference[0].arrays
        return compare_many(
            [
                (f"{forward} {key}", lambda key=key: value(ctx.student[0], key, forward), reference[key])
                for key in keys
            ],
            tol,
        )

    return Check(question, f"{forward} values", points, [job], [job], judge)


def gradients_check(question, points, module, forward, backward, arrays, inputs, fwd_outputs, douts, grads):
    """The submission's backward pass against numeric gradients of the reference forward pass.

    douts: {forward output: upstream array name}; grads: [(backward output name or None, input name)].
    """
    student = call_job(
        module,
        forward,
        arrays,
        inputs,
        [*fwd_outputs, None],
        backward=backward,
        douts=list(douts.values()),
        bwd_outputs=[g for g, _ in grads],
    )
    reference = numgrad_job(module, forward, arrays, inputs, fwd_outputs, douts, [x for g, x in grads if g])

    def judge(ctx):
        numeric = ctx.reference[0].arrays
        return compare_many(
            [
                (f"{backward} {g}", lambda g=g: value(ctx.student[0], g, backward), numeric[f"num_{x}"])
                for g, x in grads
                if g
            ],
            GRAD_TOL,
            gradient_error,
        )

    return Check(question, f"{backward} gradients", points, [student], [reference], judge)


def _normal(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


# -- Q1 and Q2: the recurrent layers ------------------------------------------------------------------

RNN = "asgn3.rnn_layers"


def step_inputs(rng, gates, N=3, D=5, H=4):
    """Fresh inputs of a recurrent step with `gates` blocks of H columns (1: RNN, 4: LSTM)."""
    return {
        "x": _normal(rng, N, D),
        "prev_h": _normal(rng, N, H),
        "prev_c": _normal(rng, N, H),
        "Wx": _normal(rng, D, gates * H, scale=0.5),
        "Wh": _normal(rng, H, gates * H, scale=0.5),
        "b": _normal(rng, gates * H, scale=0.3),
        "dnext_h": _normal(rng, N, H),
        "dnext_c": _normal(rng, N, H),
    }


def sequence_inputs(rng, gates, N=2, T=4, D=5, H=4):
    """Fresh inputs of a recurrent layer over T steps."""
    return {
        "x": _normal(rng, N, T, D),
        "h0": _normal(rng, N, H),
        "Wx": _normal(rng, D, gates * H, scale=0.5),
        "Wh": _normal(rng, H, gates * H, scale=0.5),
        "b": _normal(rng, gates * H, scale=0.3),
        "dh": _normal(rng, N, T, H),
    }


def rnn_layer_checks(rng):
    """Q1: the vanilla RNN step and sequence, embeddings, temporal affine and softmax loss (28 points)."""
    step = step_inputs(rng, 1)
    seq = sequence_inputs(rng, 1)
    V, D = 7, 4
    embed = {"x": rng.integers(0, V, size=(3, 5)), "W": _normal(rng, V, D), "dout": _normal(rng, 3, 5, D)}
    embed["x"][0, :3] = 1  # repeated words must accumulate
    affine = {
        "x": _normal(rng, 2, 3, 4),
        "w": _normal(rng, 4, 5),
        "b": _normal(rng, 5),
        "dout": _normal(rng, 2, 3, 5),
    }
    N, T, V = 4, 5, 6
    mask = rng.random((N, T)) < 0.7
    mask[0, 0] = True
    softmax = {
        "x": _normal(rng, N, T, V),
        "y": rng.integers(0, V, size=(N, T)),
        "mask": mask,
        "one": np.ones(()),
    }
    step_in = ["x", "prev_h", "Wx", "Wh", "b"]
    seq_in = ["x", "h0", "Wx", "Wh", "b"]
    return [
        values_check("Q1", 3, RNN, "rnn_step_forward", step, step_in, ["next_h", None]),
        gradients_check(
            "Q1",
            4,
            RNN,
            "rnn_step_forward",
            "rnn_step_backward",
            step,
            step_in,
            ["next_h"],
            {"next_h": "dnext_h"},
            [("dx", "x"), ("dprev_h", "prev_h"), ("dWx", "Wx"), ("dWh", "Wh"), ("db", "b")],
        ),
        values_check("Q1", 4, RNN, "rnn_forward", seq, seq_in, ["h", None]),
        gradients_check(
            "Q1",
            5,
            RNN,
            "rnn_forward",
            "rnn_backward",
            seq,
            seq_in,
            ["h"],
            {"h": "dh"},
            [("dx", "x"), ("dh0", "h0"), ("dWx", "Wx"), ("dWh", "Wh"), ("db", "b")],
        ),
        values_check("Q1", 2, RNN, "word_embedding_forward", embed, ["x", "W"], ["out", None]),
        gradients_check(
            "Q1",
            3,
            RNN,
            "word_embedding_forward",
            "word_embedding_backward",
            embed,
            ["x", "W"],
            ["out"],
            {"out": "dout"},
            [("dW", "W")],
        ),
        merge(
            "Q1",
            "temporal_affine forward and backward",
            3,
            values_check("Q1", 1, RNN, "temporal_affine_forward", affine, ["x", "w", "b"], ["out", None]),
            gradients_check(
                "Q1",
                1,
                RNN,
                "temporal_affine_forward",
                "temporal_affine_backward",
                affine,
                ["x", "w", "b"],
                ["out"],
                {"out": "dout"},
                [("dx", "x"), ("dw", "w"), ("db", "b")],
            ),
        ),
        softmax_loss_check(softmax),
    ]


def merge(question, name, points, *checks):
    """One check made of several: their jobs run in one process, the fraction is the mean of theirs."""
    student, reference, spans = [], [], []
    for check in checks:
        spans.append((check, len(student), len(reference)))
        student += check.student
        reference += check.reference

    def judge(ctx):
        fractions, texts = [], []
        for check, s, r in spans:
            part = ctx.view(s, len(check.student), r, len(check.reference))
            fraction, text = run_judge(check, part)
            fractions.append(fraction)
            texts.append(text)
        return sum(fractions) / len(fractions), "\n".join(texts)

    return Check(question, name, points, student, reference, judge)


def run_judge(check, ctx):
    """A judge's (fraction, text), turning Failed into (0, reason)."""
    try:
        return check.judge(ctx)
    except Failed as failure:
        return 0.0, str(failure)


def softmax_loss_check(arrays):
    """temporal_softmax_loss: the loss against the reference, dx against the numeric gradient."""
    inputs = ["x", "y", "mask"]
    student = call_job(RNN, "temporal_softmax_loss", arrays, inputs, ["loss", "dx"])
    reference = [
        call_job(RNN, "temporal_softmax_loss", arrays, inputs, ["loss", None]),
        numgrad_job(RNN, "temporal_softmax_loss", arrays, inputs, ["loss", None], {"loss": "one"}, ["x"]),
    ]

    def judge(ctx):
        return compare_many(
            [
                (
                    "temporal_softmax_loss loss",
                    lambda: value(ctx.student[0], "loss", "temporal_softmax_loss"),
                    ctx.reference[0].arrays["loss"],
                ),
                (
                    "temporal_softmax_loss dx",
                    lambda: value(ctx.student[0], "dx", "temporal_softmax_loss"),
                    ctx.reference[1].arrays["num_x"],
                ),
            ],
            GRAD_TOL,
            gradient_error,
        )

    return Check("Q1", "temporal_softmax_loss loss and dx", 4, [student], reference, judge)


def lstm_layer_checks(rng):
    """Q2: the stable sigmoid, the LSTM step and sequence (25 points)."""
    step = step_inputs(rng, 4)
    seq = sequence_inputs(rng, 4)
    sig = {"x": np.concatenate([_normal(rng, 20, scale=3.0), [-1000.0, -710.0, 710.0, 1000.0, 0.0]])}
    step_in = ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]
    seq_in = ["x", "h0", "Wx", "Wh", "b"]
    return [
        values_check("Q2", 3, RNN, "sigmoid", sig, ["x"], ["out"], errstate={"over": "raise"}),
        values_check("Q2", 5, RNN, "lstm_step_forward", step, step_in, ["next_h", "next_c", None]),
        gradients_check(
            "Q2",
            6,
            RNN,
            "lstm_step_forward",
            "lstm_step_backward",
            step,
            step_in,
            ["next_h", "next_c"],
            {"next_h": "dnext_h", "next_c": "dnext_c"},
            [
                ("dx", "x"),
                ("dprev_h", "prev_h"),
                ("dprev_c", "prev_c"),
                ("dWx", "Wx"),
                ("dWh", "Wh"),
                ("db", "b"),
            ],
        ),
        values_check("Q2", 5, RNN, "lstm_forward", seq, seq_in, ["h", None]),
        gradients_check(
            "Q2",
            6,
            RNN,
            "lstm_forward",
            "lstm_backward",
            seq,
            seq_in,
            ["h"],
            {"h": "dh"},
            [("dx", "x"), ("dh0", "h0"), ("dWx", "Wx"), ("dWh", "Wh"), ("db", "b")],
        ),
    ]


# -- Q1 and Q2: the captioning model ------------------------------------------------------------------


def vocabulary(size):
    """A word_to_idx with the four special tokens first, then `size - 4` words."""
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(size - 4)]
    return {word: index for index, word in enumerate(words)}


def random_captions(rng, N, length, V):
    """(N, length) captions: <START>, random words, <END>, then <NULL> padding of random lengths."""
    captions = np.zeros((N, length), dtype=np.int64)
    captions[:, 0] = 1
    for n in range(N):
        words = int(rng.integers(1, length - 1))
        captions[n, 1 : 1 + words] = rng.integers(3, V, size=words)
        captions[n, 1 + words] = 2
    return captions


def captioning_params(rng, sizes, cell_type):
    """Fresh parameters of a CaptioningRNN (names and shapes as in the SPEC), scaled like its init."""
    V, D, W, H = sizes["V"], sizes["input_dim"], sizes["wordvec_dim"], sizes["hidden_dim"]
    k = 4 if cell_type == "lstm" else 1
    shapes = {
        "W_embed": (V, W),
        "W_proj": (D, H),
        "b_proj": (H,),
        "Wx": (W, k * H),
        "Wh": (H, k * H),
        "b": (k * H,),
        "W_vocab": (H, V),
        "b_vocab": (V,),
    }
    return {
        f"param_{key}": rng.standard_normal(shape) / np.sqrt(shape[0] if len(shape) > 1 else 4)
        for key, shape in shapes.items()
    }


def model_options(sizes, cell_type, **extra):
    return {
        "word_to_idx": vocabulary(sizes["V"]),
        "input_dim": sizes["input_dim"],
        "wordvec_dim": sizes["wordvec_dim"],
        "hidden_dim": sizes["hidden_dim"],
        "cell_type": cell_type,
        **extra,
    }


def captioning_checks(rng, question, cell_type, points):
    """CaptioningRNN with the given cell: loss value, gradients, greedy sampling, overfitting."""
    sizes = {"V": 9, "input_dim": 5, "wordvec_dim": 4, "hidden_dim": 6}
    N = 3
    arrays = {
        "features": _normal(rng, N, sizes["input_dim"]),
        "captions": random_captions(rng, N, 6, sizes["V"]),
        **captioning_params(rng, sizes, cell_type),
    }
    options = model_options(sizes, cell_type)
    loss_job = Job("captioning_loss", options, arrays)
    params = [key[len("param_") :] for key in arrays if key.startswith("param_")]
    numgrad = Job("captioning_numgrad", {**options, "wrt": params}, arrays)
    label = f"CaptioningRNN({cell_type!r})"

    def judge_loss(ctx):
        got = value(ctx.student[0], "loss", f"{label}.loss")
        return 1.0, compare(f"{label}.loss loss", got, ctx.reference[0].arrays["loss"], VALUE_TOL)

    def judge_grads(ctx):
        return compare_many(
            [
                (
                    f"{label}.loss grads[{key!r}]",
                    lambda key=key: value(ctx.student[0], f"grad_{key}", f"{label}.loss"),
                    ctx.reference[0].arrays[f"num_{key}"],
                )
                for key in params
            ],
            GRAD_TOL,
            gradient_error,
        )

    sample_arrays = {
        "features": _normal(rng, 4, sizes["input_dim"]) * 2,
        **captioning_params(rng, sizes, cell_type),
    }
    # Like a trained model, never predict <NULL> (the stub's captions are all <NULL>: they must not match)
    sample_arrays["param_b_vocab"][0] = -10.0
    sample_job = Job("captioning_sample", {**options, "max_length": 7}, sample_arrays)

    def judge_sample(ctx):
        got = np.asarray(value(ctx.student[0], "captions", f"{label}.sample"))
        want = ctx.reference[0].arrays["captions"]
        if got.shape != want.shape:
            raise Failed(f"{label}.sample: expected captions of shape {want.shape}, got {got.shape}")
        lines = []
        for row, (g, w) in enumerate(zip(got, want, strict=True)):
            end = int(np.argmax(w == 2)) + 1 if np.any(w == 2) else len(w)  # compare up to <END>
            if not np.array_equal(g[:end], w[:end]):
                lines.append(f"row {row}: expected {w[:end].tolist()}, got {g[:end].tolist()}")
        if lines:
            raise Failed(f"{label}.sample greedy captions differ from the reference:\n" + "\n".join(lines))
        return 1.0, f"{label}.sample: the {len(want)} greedy captions match the reference"

    return [
        Check(question, f"{label}.loss value", points[0], [loss_job], [loss_job], judge_loss),
        Check(question, f"{label}.loss gradients", points[1], [loss_job], [numgrad], judge_grads),
        Check(question, f"{label}.sample (greedy)", points[2], [sample_job], [sample_job], judge_sample),
        overfit_check(rng, question, cell_type, points[3]),
    ]


OVERFIT = {"iterations": 120, "learning_rate": 2e-2}


def overfit_check(rng, question, cell_type, points):
    """Train the submission's model on 16 random captions; the reference evaluates the trained params."""
    sizes = {"V": 12, "input_dim": 8, "wordvec_dim": 16, "hidden_dim": 32}
    data = {
        "features": _normal(rng, 16, sizes["input_dim"]),
        "captions": random_captions(rng, 16, 8, sizes["V"]),
    }
    options = model_options(sizes, cell_type, seed=int(rng.integers(1 << 30)), **OVERFIT)
    train = Job("captioning_overfit", options, data)
    label = f"CaptioningRNN({cell_type!r}) overfit"

    def judge(ctx):
        reference_loss = float(ctx.reference[0].arrays["final_loss"])
        initial_loss = float(ctx.reference[0].arrays["initial_loss"])
        trained = {key: val for key, val in ctx.student[0].arrays.items() if key.startswith("param_")}
        if not ctx.student[0].ok:
            raise Failed(f"{label}: training failed: {ctx.student[0].error}")
        evaluation = ctx.evaluate(
            [Job("captioning_loss", model_options(sizes, cell_type), {**data, **trained})]
        )[0]
        if not evaluation.ok:
            raise Failed(f"{label}: the trained parameters cannot be evaluated: {evaluation.error}")
        loss = float(evaluation.arrays["loss"])
        bound = max(2 * reference_loss, 0.05 * initial_loss)
        text = (
            f"{label}: loss of the trained parameters {loss:.3g} on the training captions "
            f"(from {initial_loss:.3g} at initialisation; the reference reaches {reference_loss:.3g}; "
            f"needs < {bound:.3g})"
        )
        if not loss < bound:
            raise Failed(text)
        return 1.0, text + " OK"

    return Check(
        question, f"{label}", points, [train], [train], judge, Limits(cpu_seconds=60, wall_seconds=90)
    )


# -- Q3 and Q4: image gradients on a small fixed-weight CNN -------------------------------------------

CNN_ARCH = {
    "num_classes": 10,
    "input_size": 64,
    "num_filters": [8, 16, 16],
    "filter_sizes": [5, 3, 3],
    "strides": [2, 2, 2],
    "pads": [2, 1, 1],
    "hidden_dim": 32,
}


def cnn_params(rng):
    """Fresh He-initialised weights of the small CNN, as arrays param_<name>."""
    from asgn3.classifiers.pretrained_cnn import PretrainedCNN

    model = PretrainedCNN(dtype=np.float64, seed=int(rng.integers(1 << 30)), **CNN_ARCH)
    return {f"param_{key}": value for key, value in model.params.items()}


def trusted_cnn(arrays):
    """The small CNN in this (trusted) process: infrastructure code of the master, never the submission."""
    from asgn3.classifiers.pretrained_cnn import PretrainedCNN

    model = PretrainedCNN(dtype=np.float64, **CNN_ARCH)
    model.params = {key[len("param_") :]: value for key, value in arrays.items() if key.startswith("param_")}
    return model


def image_shape_ok(name, image, shape):
    image = np.asarray(image)
    if image.shape != shape:
        raise Failed(f"{name}: expected an image of shape {shape}, got {image.shape}")
    if not np.all(np.isfinite(image)):
        raise Failed(f"{name}: the image contains nan or inf")
    return image.astype(np.float64)


def cnn_job(arrays, function, inputs, **kwargs):
    """A runner 'cnn' job calling asgn3.image_gradients.<function>(*inputs, model, **kwargs)."""
    options = {"arch": CNN_ARCH, "action": "call", "function": function, "inputs": inputs, "kwargs": kwargs}
    return Job("cnn", options, arrays)


def foolable_image(rng, model):
    """A fresh image and a target class (among the 3rd to 6th most likely) that the master's
    make_fooling_image reaches within its 100 steps with a small change: a fair task on this random CNN,
    where a few images are much harder to fool than the others."""
    from asgn3.image_gradients import make_fooling_image

    for _ in range(20):
        X = _normal(rng, 1, 3, 64, 64, scale=60.0)
        target = int(np.argsort(model.loss(X)[0])[::-1][rng.integers(2, 6)])
        fooled = make_fooling_image(X, target, model)
        if np.argmax(model.loss(fooled)[0]) == target and np.linalg.norm(fooled - X) < 0.1 * np.linalg.norm(
            X
        ):
            return X, target
    raise RuntimeError("no foolable image found for the hidden fooling check (a grader bug)")


def image_gradient_checks(rng):
    """Q3: saliency maps against the reference (5), a fooling image that fools the model (5)."""
    params = cnn_params(rng)
    saliency = {**params, "X": _normal(rng, 2, 3, 64, 64, scale=60.0), "y": rng.integers(0, 10, size=2)}
    saliency_job = cnn_job(saliency, "compute_saliency_maps", ["X", "y"])

    def judge_saliency(ctx):
        got = value(ctx.student[0], "out", "compute_saliency_maps")
        return 1.0, compare("compute_saliency_maps", got, ctx.reference[0].arrays["out"], VALUE_TOL)

    model = trusted_cnn(params)
    X, target = foolable_image(rng, model)
    fooling = {**params, "X": X}
    fooling_job = cnn_job(fooling, "make_fooling_image", ["X", target])

    def judge_fooling(ctx):
        image = image_shape_ok(
            "make_fooling_image", value(ctx.student[0], "out", "make_fooling_image"), X.shape
        )
        predicted = int(np.argmax(model.loss(image)[0]))
        change = np.linalg.norm(image - X) / np.linalg.norm(X)
        text = (
            f"make_fooling_image: the model predicts class {predicted} for the image (target {target}); "
            f"relative change of the image {change:.3f} (needs < 0.2)"
        )
        if predicted != target or not change < 0.2:
            raise Failed(text)
        return 1.0, text + " OK"

    return [
        Check("Q3", "compute_saliency_maps values", 5, [saliency_job], [saliency_job], judge_saliency),
        Check("Q3", "make_fooling_image fools the model", 5, [fooling_job], [], judge_fooling),
    ]


# -- putting the checks together ----------------------------------------------------------------------


class Context:
    """What a judge sees: the Outcomes of its jobs, and evaluate(jobs) for more trusted runs."""

    def __init__(self, student, reference, evaluate):
        self.student, self.reference, self.evaluate = student, reference, evaluate

    def view(self, s, n, r, m):
        """The context of a part of a merged check: its own slices of the outcomes."""
        return Context(self.student[s : s + n], self.reference[r : r + m], self.evaluate)


def build_checks(rng, only=None):
    """Every hidden check with fresh inputs from rng, filtered by `only` (question ids or name parts).

    Inputs:
    - rng: a numpy Generator (fresh seed per grading run).
    - only: None for all, or a list of 'Q1'..'Q4' and/or substrings of check names.

    Returns a list of Check; the points of each question add up to the QUESTIONS table.
    """
    builders = [
        ("Q1", lambda: rnn_layer_checks(rng) + captioning_checks(rng, "Q1", "rnn", (3, 4, 2, 3))),
        ("Q2", lambda: lstm_layer_checks(rng) + captioning_checks(rng, "Q2", "lstm", (2, 4, 2, 2))),
        ("Q3", lambda: image_gradient_checks(rng)),
        ("Q4", lambda: image_generation_checks(rng)),
    ]
    checks = []
    for question, build in builders:
        built = build()  # always build, so a given seed gives the same inputs whatever `only` is
        checks += [c for c in built if not only or question in only or any(o in c.name for o in only)]
    return checks


def image_generation_checks(rng):
    """Q4: class visualization, feature inversion, DeepDream (5 points each).

    The three share their random draws (initial noise, jitter) through a seed, and the plumbing around
    the student's step is the master's: with the same seed, a correct step gives the reference's image.
    A few steps on the small CNN, with clipping to the pixel range of a flat mean image.
    """
    params = cnn_params(rng)
    mean = np.full((3, 64, 64), float(rng.uniform(100, 140)))
    X = _normal(rng, 1, 3, 64, 64, scale=50.0)
    layer = int(rng.integers(1, 3))
    features, _ = trusted_cnn(params).forward(X, end=layer)
    common = {"show_every": 0, "verbose": False, "seed": int(rng.integers(1 << 30))}
    jobs = {
        "create_class_visualization": cnn_job(
            {**params, "mean_image": mean},
            "create_class_visualization",
            [int(rng.integers(10))],
            learning_rate=100.0,
            num_iterations=8,
            **common,
        ),
        "invert_features": cnn_job(
            {**params, "mean_image": mean, "target_feats": features},
            "invert_features",
            ["target_feats", layer],
            learning_rate=1e-2,
            num_iterations=8,
            **common,
        ),
        "deepdream": cnn_job(
            {**params, "mean_image": mean, "X": X},
            "deepdream",
            ["X", layer],
            learning_rate=5.0,
            num_iterations=6,
            **common,
        ),
    }
    checks = []
    for name, job in jobs.items():
        job.options["array_kwargs"] = {"mean_image": "mean_image"}

        def judge(ctx, name=name):
            got = image_shape_ok(name, value(ctx.student[0], "out", name), (1, 3, 64, 64))
            return 1.0, compare(f"{name} image", got, ctx.reference[0].arrays["out"], GRAD_TOL)

        checks.append(Check("Q4", f"{name} (same seed as the reference)", 5, [job], [job], judge))
    return checks
