"""Q2 LSTM captioning (35 points): the stable sigmoid, the LSTM step and sequence (25), and
CaptioningRNN('lstm') (10)."""

import numpy as np

from staff.judging import gradients_check, normal, values_check
from staff.questions.recurrent import RNN, captioning_checks, sequence_inputs, step_inputs

STEP_INPUTS = ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]
SEQUENCE_INPUTS = ["x", "h0", "Wx", "Wh", "b"]
STEP_GRADS = [
    ("dx", "x"),
    ("dprev_h", "prev_h"),
    ("dprev_c", "prev_c"),
    ("dWx", "Wx"),
    ("dWh", "Wh"),
    ("db", "b"),
]


def checks(rng):
    """The table of Q2's checks, with fresh inputs from rng."""
    step = step_inputs(rng, 4)
    seq = sequence_inputs(rng, 4)
    sig = {"x": np.concatenate([normal(rng, 20, scale=3.0), [-1000.0, -710.0, 710.0, 1000.0, 0.0]])}
    return [
        values_check("Q2", 3, RNN, "sigmoid", sig, ["x"], ["out"], errstate={"over": "raise"}),
        values_check("Q2", 5, RNN, "lstm_step_forward", step, STEP_INPUTS, ["next_h", "next_c", None]),
        gradients_check(
            "Q2",
            6,
            RNN,
            "lstm_step_forward",
            "lstm_step_backward",
            step,
            STEP_INPUTS,
            ["next_h", "next_c"],
            {"next_h": "dnext_h", "next_c": "dnext_c"},
            STEP_GRADS,
        ),
        values_check("Q2", 5, RNN, "lstm_forward", seq, SEQUENCE_INPUTS, ["h", None]),
        gradients_check(
            "Q2",
            6,
            RNN,
            "lstm_forward",
            "lstm_backward",
            seq,
            SEQUENCE_INPUTS,
            ["h"],
            {"h": "dh"},
            [("dx", "x"), ("dh0", "h0"), ("dWx", "Wx"), ("dWh", "Wh"), ("db", "b")],
        ),
        *captioning_checks(rng, "Q2", "lstm", (2, 4, 2, 2)),
    ]
