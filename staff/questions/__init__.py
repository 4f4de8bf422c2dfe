"""The hidden checks, one file per question of the manifest (asgn3/assignment.py): `q1.py` for "Q1"...

Each question file has `checks(rng) -> [HiddenCheck]` (staff/judging.py): the question's table of checks with
fresh inputs drawn from rng, their points adding up to the question's points in the manifest. Helper
modules shared by several questions (recurrent.py, cnn.py) are not questions: only the manifest's keys
are looked up here. Nothing in this folder reaches the student kit.
"""

import importlib
import zlib

import numpy as np

from asgn3.assignment import QUESTIONS


def question_rng(seed, key):
    """The generator of a question's inputs: its own stream of the grading seed, so that a given seed
    gives the same inputs to a question whatever other questions exist or are selected."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def question_checks(question, seed):
    """The Checks of one manifest Question with inputs from the seed; ValueError when its points differ."""
    module = importlib.import_module(f"{__name__}.{question.key.lower()}")
    checks = module.checks(question_rng(seed, question.key))
    total = sum(check.points for check in checks)
    if abs(total - question.points) > 1e-9 or any(check.question != question.key for check in checks):
        raise ValueError(
            f"staff/questions/{question.key.lower()}.py: its checks give {total:g} points to "
            f"{sorted({c.question for c in checks})}, the manifest {question.points:g} to {question.key}"
        )
    return checks


def build_checks(seed, only=None):
    """Every hidden check of the assignment, with inputs from the seed, filtered by `only`.

    Inputs:
    - seed: an int (a fresh one per grading run; the same seed gives the same inputs).
    - only: None for all, or a list of question keys ('Q1', ...) and/or substrings of check names.

    Returns a list of HiddenCheck, in the manifest's order of questions.
    """
    checks = []
    for question in QUESTIONS:
        checks += [
            check
            for check in question_checks(question, seed)
            if not only or question.key in only or any(part in check.name for part in only)
        ]
    return checks
