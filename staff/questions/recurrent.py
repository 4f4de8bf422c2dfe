"""Inputs and checks shared by Q1 (vanilla RNN) and Q2 (LSTM): recurrent inputs, the captioning model.

The model checks: the loss value against the reference, its gradients against numeric gradients of the
reference loss, greedy sampling against the reference's captions, and an overfit run whose trained
parameters the reference evaluates.
"""

import numpy as np

from staff.judging import (
    ANALYTIC,
    NUMERIC,
    VALUES,
    Failed,
    HiddenCheck,
    arrays_like,
    compare,
    compare_many,
    normal,
    value,
    verdict,
)
from staff.protocol import Job
from staff.sandbox import Limits

RNN = "asgn3.rnn_layers"
MODEL = "asgn3.classifiers.rnn"
OVERFIT = {"iterations": 120, "learning_rate": 2e-2}


def step_inputs(rng, gates, N=3, D=5, H=4):
    """Fresh inputs of a recurrent step with `gates` blocks of H columns (1: RNN, 4: LSTM)."""
    return {
        "x": normal(rng, N, D),
        "prev_h": normal(rng, N, H),
        "prev_c": normal(rng, N, H),
        "Wx": normal(rng, D, gates * H, scale=0.5),
        "Wh": normal(rng, H, gates * H, scale=0.5),
        "b": normal(rng, gates * H, scale=0.3),
        "dnext_h": normal(rng, N, H),
        "dnext_c": normal(rng, N, H),
    }


def sequence_inputs(rng, gates, N=2, T=4, D=5, H=4):
    """Fresh inputs of a recurrent layer over T steps."""
    return {
        "x": normal(rng, N, T, D),
        "h0": normal(rng, N, H),
        "Wx": normal(rng, D, gates * H, scale=0.5),
        "Wh": normal(rng, H, gates * H, scale=0.5),
        "b": normal(rng, gates * H, scale=0.3),
        "dh": normal(rng, N, T, H),
    }


def vocabulary(size):
    """A word_to_idx with the four special tokens first, then `size - 4` words."""
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(size - 4)]
    return {word: index for index, word in enumerate(words)}


def random_captions(rng, N, length, V):
    """(N, length) captions: <START>, random words, <END>, then <NULL> padding of random lengths."""
    captions = np.zeros((N, length), dtype=np.int64)
    captions[:, 0] = 1
    lengths = rng.integers(1, length - 1, size=N)
    words = rng.integers(3, V, size=(N, length))
    position = np.arange(length)
    inside = (position >= 1) & (position[None, :] <= lengths[:, None])
    captions[inside] = words[inside]
    captions[np.arange(N), 1 + lengths] = 2
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
    """The runner's options for a CaptioningRNN of these sizes."""
    return {
        "module": MODEL,
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
        "features": normal(rng, N, sizes["input_dim"]),
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
        return 1.0, compare(f"{label}.loss loss", got, [(VALUES, ctx.reference[0].arrays["loss"])])

    def judge_grads(ctx):
        analytic, numeric = ctx.reference[0].arrays, ctx.reference[1].arrays
        return compare_many(
            [
                (
                    f"{label}.loss grads[{key!r}]",
                    lambda key=key: value(ctx.student[0], f"grad_{key}", f"{label}.loss"),
                    [(ANALYTIC, analytic[f"grad_{key}"]), (NUMERIC, numeric[f"num_{key}"])],
                )
                for key in params
            ]
        )

    sample_arrays = {
        "features": normal(rng, 4, sizes["input_dim"]) * 2,
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
        HiddenCheck(question, f"{label}.loss value", points[0], [loss_job], [loss_job], judge_loss),
        HiddenCheck(
            question, f"{label}.loss gradients", points[1], [loss_job], [loss_job, numgrad], judge_grads
        ),
        HiddenCheck(
            question, f"{label}.sample (greedy)", points[2], [sample_job], [sample_job], judge_sample
        ),
        overfit_check(rng, question, cell_type, points[3]),
    ]


def overfit_check(rng, question, cell_type, points):
    """Train the submission's model on 16 random captions; the reference evaluates the trained params."""
    sizes = {"V": 12, "input_dim": 8, "wordvec_dim": 16, "hidden_dim": 32}
    data = {
        "features": normal(rng, 16, sizes["input_dim"]),
        "captions": random_captions(rng, 16, 8, sizes["V"]),
    }
    options = model_options(sizes, cell_type, seed=int(rng.integers(1 << 30)), **OVERFIT)
    train = Job("captioning_overfit", options, data)
    label = f"CaptioningRNN({cell_type!r}) overfit"

    def judge(ctx):
        reference_loss = float(ctx.reference[0].arrays["final_loss"])
        initial_loss = float(ctx.reference[0].arrays["initial_loss"])
        expected = {key: val for key, val in ctx.reference[0].arrays.items() if key.startswith("param_")}
        trained = arrays_like(ctx.student[0], expected, f"{label}: training")
        evaluation = ctx.evaluate(
            [Job("captioning_loss", model_options(sizes, cell_type), {**data, **trained})]
        )[0]
        if not evaluation.ok:
            raise Failed(f"{label}: the trained parameters cannot be evaluated: {evaluation.error}")
        loss = float(evaluation.arrays["loss"])
        # the trained loss may exceed the reference's by 100% (or reach 5% of the initial loss)
        allowed = max(2 * reference_loss, 0.05 * initial_loss) / reference_loss - 1
        passed, line = verdict(label, "excess loss over the reference's", loss / reference_loss - 1, allowed)
        text = (
            f"{line}\n{label}: loss of the trained parameters {loss:.3g} on the training captions, "
            f"from {initial_loss:.3g} at initialisation; the reference reaches {reference_loss:.3g}"
        )
        if not passed:
            raise Failed(text)
        return 1.0, text

    limits = Limits(cpu_seconds=60, wall_seconds=90)
    return HiddenCheck(question, label, points, [train], [train], judge, limits)
