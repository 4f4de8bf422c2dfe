"""What a hidden check is, and the helpers that judge an answer; the checks themselves are staff/questions/.

A hidden check (HiddenCheck) names the jobs to run on the submission (inside the sandbox, one process
per check) and on the reference (in a separate trusted process), and a judge that compares the two as
plain arrays in the grader. A check made of several arrays gives credit per array.

The pass criteria do not depend on the seed: values and analytic gradients are compared with the
reference's on the same inputs, both in float64, where a correct answer agrees to rounding (1e-13 and
below); gradients are also compared, as a second opinion that does not trust the reference's backward,
with centered differences of the reference's forward pass (so that a backward pass consistent with a
wrong forward pass still fails), by a norm-based relative error, since single entries near zero carry
only rounding. Every verdict is one line "name: measure error (needs < bound) OK|FAIL" that
`parse_verdicts` reads back (staff/sweep.py measures the margins from them).
"""

import re
from dataclasses import dataclass, field

import numpy as np

from asgn3.notebook_checks import rel_error
from staff.protocol import Job
from staff.sandbox import Limits


@dataclass
class HiddenCheck:
    """A hidden check: jobs for the submission and the reference, and judge(ctx) -> (fraction, text).

    student: a list of Jobs, or a function of the reference's Outcomes returning them (when the
    submission's inputs are prepared by the reference, e.g. an image the reference can fool).
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

    def student_jobs(self, reference_outcomes):
        """The submission's jobs, given the Outcomes of the reference's."""
        return self.student(reference_outcomes) if callable(self.student) else self.student


class Context:
    """What a judge sees: the Outcomes of its jobs, and evaluate(jobs) for more trusted runs."""

    def __init__(self, student, reference, evaluate):
        self.student, self.reference, self.evaluate = student, reference, evaluate

    def view(self, s, n, r, m):
        """The context of a part of a merged check: its own slices of the outcomes."""
        return Context(self.student[s : s + n], self.reference[r : r + m], self.evaluate)


class Failed(Exception):
    """A judge's verdict that the check failed, with the reason."""


def job_modules(job):
    """The student modules a job imports (to skip it when one of them does not even import)."""
    return {job.options["module"]} if "module" in job.options else set()


def run_judge(check, ctx):
    """A judge's (fraction, text), turning Failed into (0, reason)."""
    try:
        return check.judge(ctx)
    except Failed as failure:
        return 0.0, str(failure)


# -- reading and comparing answers -------------------------------------------------------------------------


def value(outcome, key, what):
    """The array `key` of a submission's outcome, or Failed naming why it is not there."""
    if not outcome.ok:
        raise Failed(f"{what} failed: {outcome.error}")
    if key in outcome.missing:
        raise Failed(f"{what}: {key} is None: not implemented yet (still the stub?)")
    if key not in outcome.arrays:
        raise Failed(f"{what} did not return {key}")
    return outcome.arrays[key]


def norm_error(got, want):
    """||got - want|| / (||got|| + ||want||): a relative error of the whole array.

    Used for gradients, whose entries can be near zero: an entry's own relative error there measures
    only the rounding of a sum taken in another order (or of a centered difference), not a mistake.
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = np.linalg.norm(got) + np.linalg.norm(want)
    return float(np.linalg.norm(got - want) / scale) if scale > 0 else 0.0


@dataclass(frozen=True)
class Criterion:
    """How an answer is measured against an expected array, and the bound it must stay below."""

    measure: str
    metric: object
    bound: float


# The bounds are at least 10 times the worst error of correct implementations (the reference, and an
# independent one in another style, tests/independent_solution.py) as `python -m staff.sweep` measured
# them (200 seeds of every check, 2,000 of the layers' gradients); the stubs and the wrong
# implementations of the tests are off by 1e-2 or more (or by 1e-6 for a gradient off by a millionth).
VALUES = Criterion("relative error", rel_error, 1e-8)  # measured 5.8e-13 at worst (lstm_forward h)
ANALYTIC = Criterion("relative error to the reference's gradient", norm_error, 1e-8)  # measured 1.7e-15
NUMERIC = Criterion("relative error to the numeric gradient", norm_error, 1e-6)  # measured 5.4e-9 (LSTM)
IMAGES = Criterion("relative error", rel_error, 1e-6)  # a few seeded steps; measured 4.3e-11 (DeepDream)

_VERDICT = re.compile(
    r"^(?P<name>.+?): (?P<measure>[^:]+?) (?P<error>\S+) \(needs < (?P<bound>\S+)\) (?:OK|FAIL)$"
)


def verdict(name, measure, error, bound):
    """(passed, one line "name: measure error (needs < bound) OK|FAIL"); parse_verdicts reads it back."""
    passed = bool(error < bound)
    return passed, f"{name}: {measure} {error:.2e} (needs < {bound:.1e}) {'OK' if passed else 'FAIL'}"


def parse_verdicts(text):
    """The (name, measure, error, bound) of every verdict line of a judge's text."""
    found = []
    for line in text.splitlines():
        match = _VERDICT.match(line)
        if match:
            found.append((match["name"], match["measure"], float(match["error"]), float(match["bound"])))
    return found


def compare(name, got, expected):
    """The verdict lines of a submission's array against [(Criterion, expected)]; Failed if one fails."""
    got = np.asarray(got)
    shape = np.shape(expected[0][1])
    if got.shape != shape:
        raise Failed(f"{name}: expected shape {shape}, got {got.shape}")
    if not np.all(np.isfinite(got)):
        raise Failed(f"{name}: contains nan or inf")
    results = [
        verdict(name, c.measure, c.metric(got.astype(np.float64), want), c.bound) for c, want in expected
    ]
    text = "\n".join(line for _, line in results)
    if not all(passed for passed, _ in results):
        raise Failed(text)
    return text


def compare_many(items):
    """Compare (name, got_fn, [(Criterion, expected)]) items, crediting each; returns (fraction, text)."""
    results = []
    for name, got, expected in items:
        try:
            results.append((True, compare(name, got(), expected)))
        except Failed as failure:
            results.append((False, str(failure)))
    passed = sum(1 for ok, _ in results if ok)
    return passed / len(items), "\n".join(text for _, text in results)


def arrays_like(outcome, expected, what):
    """The submission's arrays named as in `expected` ({name: reference array}), each checked to have the
    reference's shape and finite values, as float64 (else Failed): the only arrays a trusted run may take."""
    if not outcome.ok:
        raise Failed(f"{what} failed: {outcome.error}")
    checked = {}
    for name, want in expected.items():
        if name not in outcome.arrays:
            raise Failed(f"{what} did not return {name}")
        got = outcome.arrays[name]
        if got.shape != want.shape:
            raise Failed(f"{what}: expected {name} of shape {want.shape}, got {got.shape}")
        if not np.all(np.isfinite(got)):
            raise Failed(f"{what}: {name} contains nan or inf")
        checked[name] = got.astype(np.float64)
    return checked


def image_shape_ok(name, image, shape):
    """A returned image as float64, after checking its shape and that it is finite (else Failed)."""
    image = np.asarray(image)
    if image.shape != shape:
        raise Failed(f"{name}: expected an image of shape {shape}, got {image.shape}")
    if not np.all(np.isfinite(image)):
        raise Failed(f"{name}: the image contains nan or inf")
    return image.astype(np.float64)


# -- building blocks of checks -----------------------------------------------------------------------------


def normal(rng, *shape, scale=1.0):
    """Fresh standard normal inputs of a shape, times scale."""
    return scale * rng.standard_normal(shape)


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


def numgrad_job(module, forward, arrays, inputs, fwd_outputs, douts, wrt, **kw):
    """A runner 'numgrad' job: numeric gradients of sum <out, dout> of the reference forward.

    kw: more options of the call (kwargs, array_kwargs), as for call_job.
    """
    options = {
        "module": module,
        "forward": forward,
        "inputs": list(inputs),
        "fwd_outputs": list(fwd_outputs),
        "douts": dict(douts),
        "wrt": list(wrt),
        **kw,
    }
    return Job("numgrad", options, arrays)


def values_check(question, points, module, forward, arrays, inputs, outputs, **kw):
    """Forward outputs of the submission compared with the reference's on the same fresh inputs."""
    job = call_job(module, forward, arrays, inputs, outputs, **kw)

    def judge(ctx):
        reference = ctx.reference[0].arrays
        return compare_many(
            [
                (
                    f"{forward} {key}",
                    lambda key=key: value(ctx.student[0], key, forward),
                    [(VALUES, reference[key])],
                )
                for key in outputs
                if key
            ]
        )

    return HiddenCheck(question, f"{forward} values", points, [job], [job], judge)


def gradients_check(question, points, module, forward, backward, arrays, inputs, fwd_outputs, douts, grads):
    """The submission's backward pass against the reference's on the same inputs, and against numeric
    gradients of the reference forward pass (a second opinion that does not trust the reference's
    backward).

    douts: {forward output: upstream array name}; grads: [(backward output name or None, input name)].
    """
    job = call_job(
        module,
        forward,
        arrays,
        inputs,
        [*fwd_outputs, None],
        backward=backward,
        douts=list(douts.values()),
        bwd_outputs=[g for g, _ in grads],
    )
    numeric = numgrad_job(module, forward, arrays, inputs, fwd_outputs, douts, [x for g, x in grads if g])

    def judge(ctx):
        analytic, numeric = ctx.reference[0].arrays, ctx.reference[1].arrays
        return compare_many(
            [
                (
                    f"{backward} {g}",
                    lambda g=g: value(ctx.student[0], g, backward),
                    [(ANALYTIC, analytic[g]), (NUMERIC, numeric[f"num_{x}"])],
                )
                for g, x in grads
                if g
            ]
        )

    return HiddenCheck(question, f"{backward} gradients", points, [job], [job, numeric], judge)


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
            fraction, text = run_judge(check, ctx.view(s, len(check.student), r, len(check.reference)))
            fractions.append(fraction)
            texts.append(text)
        return sum(fractions) / len(fractions), "\n".join(texts)

    return HiddenCheck(question, name, points, student, reference, judge)
