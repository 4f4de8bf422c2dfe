"""The checks the notebooks run on a student's functions, each printing one line in a fixed format.

A check prints a single line that a person reads and a program parses:

    rnn_step_forward next_h: relative error 2.07e-09 (should be below 1e-08) OK
    temporal_softmax_loss N=100 T=1: loss 2.303 (should be about 2.3 within 0.2) OK
    pretrained CNN val accuracy: value 0.91 (should be at least 0.5) OK
    fooling image: predicted class 3 (dress), target class 3 (dress) FOOLED

The verdict at the end is OK or FAIL (FOOLED or NOT FOOLED for the fooling image). A failed check prints
FAIL and carries on, as the classic notebooks did, except the fooling image, which is an assertion.
`parse_checks` reads such lines back from a notebook's printed output (the tests of the notebooks use it).
"""

import re
from dataclasses import dataclass

import numpy as np

STUB_HINT = "fill in the code between the START/END markers in asgn3/"


def rel_error(x, y, what=None):
    """Maximum relative error between two arrays, max |x - y| / max(1e-8, |x| + |y|) over all entries.

    Inputs:
    - x, y: arrays (or numbers) of the same shape.
    - what: optional, the function (or its name) that produced the values, named in the error raised
      when one of them is None.

    Returns the largest relative error, a float. A None input means the function that produced it is
    still the student kit's stub, which returns None: that raises NotImplementedError saying so.
    """
    require(x, what)
    require(y, what)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(
            f"rel_error compares arrays of the same shape; got {x.shape} and {y.shape}: "
            f"check the shape of what {_describe(what)} returns"
        )
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def require(value, what=None):
    """Return value, or raise NotImplementedError (as rel_error does) when it is the None of a stub.

    For cells that use a function's result directly, e.g. `saliency = require(compute_saliency_maps(X, y,
    model), compute_saliency_maps)`, so that an unwritten function gives a clear message, not a plot error.
    """
    if value is None:
        raise NotImplementedError(f"{_describe(what)} returned None: {STUB_HINT}{_source_file(what)}")
    return value


def _describe(what):
    """Name the function behind a value for an error message."""
    if what is None:
        return "a function in this cell"
    return getattr(what, "__qualname__", None) or str(what)


def _source_file(what):
    """The kit file that defines `what` (a function or method), or '...' when unknown."""
    module = getattr(what, "__module__", None)
    if module and module.startswith("asgn3."):
        return module[len("asgn3.") :].replace(".", "/") + ".py"
    return "... (the file that defines it)"


def _print_check(name, quantity, value, relation, bound, tol=None):
    """Print one check line and return whether it passed."""
    if value is None:
        raise NotImplementedError(
            f"{name}: the {quantity} is None, the function behind it is still a stub: {STUB_HINT}..."
        )
    value = float(value)
    if relation == "below":
        passed = value < bound
        wanted = f"below {bound:g}"
    elif relation == "at least":
        passed = value >= bound
        wanted = f"at least {bound:g}"
    else:
        passed = abs(value - bound) <= tol
        wanted = f"about {bound:g} within {tol:g}"
    verdict = "OK" if passed else "FAIL"
    print(f"{name}: {quantity} {value:.3g} (should be {wanted}) {verdict}")
    return passed


def report(name, error, bound):
    """Print `name: relative error <error> (should be below <bound>) OK|FAIL`; return whether it passed.

    Inputs:
    - name: what was checked, e.g. 'rnn_step_forward next_h'.
    - error: a relative error, e.g. from rel_error.
    - bound: the largest error a correct implementation gives, with a margin.
    """
    return _print_check(name, "relative error", error, "below", bound)


def report_about(name, quantity, value, expected, tol):
    """Print `name: <quantity> <value> (should be about <expected> within <tol>) OK|FAIL`.

    Used for sanity values such as a softmax loss near log(V) at initialization.
    Returns whether |value - expected| <= tol.
    """
    return _print_check(name, quantity, value, "about", expected, tol)


def report_below(name, quantity, value, bound):
    """Print `name: <quantity> <value> (should be below <bound>) OK|FAIL`; return whether value < bound."""
    return _print_check(name, quantity, value, "below", bound)


def report_at_least(name, quantity, value, bound):
    """Print `name: <quantity> <value> (should be at least <bound>) OK|FAIL`; return whether it passed."""
    return _print_check(name, quantity, value, "at least", bound)


def report_fooled(predicted, target, class_names=None):
    """Print whether the network classifies the fooling image as the target class, and assert it does.

    Inputs:
    - predicted: the class the network gives the fooling image (an int).
    - target: the class the fooling image was made for (an int).
    - class_names: optional list; class_names[c] is a name or a list of names of class c.
    """

    def label(c):
        if class_names is None:
            return f"class {c}"
        names = class_names[c]
        return f"class {c} ({names if isinstance(names, str) else names[0]})"

    fooled = int(predicted) == int(target)
    print(
        f"fooling image: predicted {label(predicted)}, target {label(target)} "
        f"{'FOOLED' if fooled else 'NOT FOOLED'}"
    )
    assert fooled, (
        "The network is not fooled: make_fooling_image must keep ascending the target score "
        "until the network predicts the target class"
    )


@dataclass(frozen=True)
class Check:
    """One parsed check line: relation is 'below', 'at least', 'about' or 'fooled'."""

    name: str
    quantity: str
    value: float
    relation: str
    bound: float
    tol: float | None
    verdict: str

    @property
    def passed(self):
        """Recompute the verdict from the printed numbers (not trusting the printed word)."""
        if self.relation == "below":
            ok = self.value < self.bound
        elif self.relation == "at least":
            ok = self.value >= self.bound
        elif self.relation == "about":
            ok = abs(self.value - self.bound) <= self.tol * (1 + 1e-9)
        else:
            ok = self.value == self.bound
        return ok and self.verdict in ("OK", "FOOLED")


_NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"
_CHECK_LINE = re.compile(
    rf"^(?P<name>.+?): (?P<quantity>[a-z][a-z ]*?) (?P<value>{_NUMBER}) "
    rf"\(should be (?P<relation>below|at least|about) (?P<bound>{_NUMBER})(?: within (?P<tol>{_NUMBER}))?\) "
    r"(?P<verdict>OK|FAIL)$"
)
_FOOLED_LINE = re.compile(
    r"^fooling image: predicted class (?P<predicted>\d+)(?: \([^)]*\))?, "
    r"target class (?P<target>\d+)(?: \([^)]*\))? (?P<verdict>FOOLED|NOT FOOLED)$"
)


def parse_checks(text):
    """Read every check line out of printed text; returns a list of Check in the order printed."""
    checks = []
    for line in text.splitlines():
        line = line.strip()
        match = _CHECK_LINE.match(line)
        if match:
            tol = match["tol"]
            checks.append(
                Check(
                    match["name"],
                    match["quantity"],
                    float(match["value"]),
                    match["relation"],
                    float(match["bound"]),
                    float(tol) if tol else None,
                    match["verdict"],
                )
            )
            continue
        match = _FOOLED_LINE.match(line)
        if match:
            checks.append(
                Check(
                    "fooling image",
                    "predicted class",
                    float(match["predicted"]),
                    "fooled",
                    float(match["target"]),
                    None,
                    match["verdict"],
                )
            )
    return checks
