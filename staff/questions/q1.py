"""Q1 RNN captioning (40 points): the vanilla RNN step and sequence, word embeddings, the temporal
affine layer and softmax loss (28), and CaptioningRNN('rnn') (12)."""

import numpy as np

from staff.judging import (
    ANALYTIC,
    NUMERIC,
    VALUES,
    HiddenCheck,
    call_job,
    compare_many,
    gradients_check,
    merge,
    normal,
    numgrad_job,
    value,
    values_check,
)
from staff.questions.recurrent import RNN, captioning_checks, sequence_inputs, step_inputs

STEP_INPUTS = ["x", "prev_h", "Wx", "Wh", "b"]
SEQUENCE_INPUTS = ["x", "h0", "Wx", "Wh", "b"]


def checks(rng):
    """The table of Q1's checks, with fresh inputs from rng."""
    step = step_inputs(rng, 1)
    seq = sequence_inputs(rng, 1)
    V, D = 7, 4
    embed = {"x": rng.integers(0, V, size=(3, 5)), "W": normal(rng, V, D), "dout": normal(rng, 3, 5, D)}
    embed["x"][0, :3] = 1  # repeated words must accumulate
    affine = {
        "x": normal(rng, 2, 3, 4),
        "w": normal(rng, 4, 5),
        "b": normal(rng, 5),
        "dout": normal(rng, 2, 3, 5),
    }
    return [
        values_check("Q1", 3, RNN, "rnn_step_forward", step, STEP_INPUTS, ["next_h", None]),
        gradients_check(
            "Q1",
            4,
            RNN,
            "rnn_step_forward",
            "rnn_step_backward",
            step,
            STEP_INPUTS,
            ["next_h"],
            {"next_h": "dnext_h"},
            [("dx", "x"), ("dprev_h", "prev_h"), ("dWx", "Wx"), ("dWh", "Wh"), ("db", "b")],
        ),
        values_check("Q1", 4, RNN, "rnn_forward", seq, SEQUENCE_INPUTS, ["h", None]),
        gradients_check(
            "Q1",
            5,
            RNN,
            "rnn_forward",
            "rnn_backward",
            seq,
            SEQUENCE_INPUTS,
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
        softmax_loss_check(rng),
        *captioning_checks(rng, "Q1", "rnn", (3, 4, 2, 3)),
    ]


def softmax_loss_check(rng, N=4, T=5, V=6):
    """temporal_softmax_loss: the loss against the reference, dx against the numeric gradient."""
    mask = rng.random((N, T)) < 0.7
    mask[0, 0] = True
    arrays = {
        "x": normal(rng, N, T, V),
        "y": rng.integers(0, V, size=(N, T)),
        "mask": mask,
        "one": np.ones(()),
    }
    inputs = ["x", "y", "mask"]
    job = call_job(RNN, "temporal_softmax_loss", arrays, inputs, ["loss", "dx"])
    numeric = numgrad_job(
        RNN, "temporal_softmax_loss", arrays, inputs, ["loss", None], {"loss": "one"}, ["x"]
    )

    def judge(ctx):
        reference, numeric = ctx.reference[0].arrays, ctx.reference[1].arrays
        return compare_many(
            [
                (
                    "temporal_softmax_loss loss",
                    lambda: value(ctx.student[0], "loss", "temporal_softmax_loss"),
                    [(VALUES, reference["loss"])],
                ),
                (
                    "temporal_softmax_loss dx",
                    lambda: value(ctx.student[0], "dx", "temporal_softmax_loss"),
                    [(ANALYTIC, reference["dx"]), (NUMERIC, numeric["num_x"])],
                ),
            ]
        )

    return HiddenCheck("Q1", "temporal_softmax_loss loss and dx", 4, [job], [job, numeric], judge)
