"""The similarity report: a planted copy ranks first, independent work clearly lower, untouched stubs nowhere.

Four submissions implement the same eight functions of asgn3/rnn_layers.py (the others are stubs): the
reference, a planted copy of it (local names renamed, comments changed, statements reordered), and two
independent implementations written below (checked to be correct). Two more are the untouched stubs.
"""

import csv
import html
import importlib.util
import re
import zipfile

import numpy as np
import pytest

from asgn3 import rnn_layers
from asgn3.data_paths import KIT_DIR
from staff import similarity
from staff.markers import find_regions, outside_lines, stub_source

RNN_LAYERS = "asgn3/rnn_layers.py"
FUNCTIONS = (
    "rnn_step_forward",
    "rnn_step_backward",
    "rnn_forward",
    "rnn_backward",
    "word_embedding_forward",
    "word_embedding_backward",
    "temporal_affine_forward",
    "temporal_affine_backward",
)

# Two students' own solutions, in two styles: region bodies by function.
INDEPENDENT_ONE = {
    "rnn_step_forward": """
pre = prev_h.dot(Wh) + b
if Wx is not None:
    pre = pre + x.dot(Wx)
else:
    pre = pre + x
next_h = np.tanh(pre)
cache = {"x": x, "h": prev_h, "Wx": Wx, "Wh": Wh, "out": next_h}
""",
    "rnn_step_backward": """
dpre = (1.0 - cache["out"] ** 2) * dnext_h
db = np.sum(dpre, axis=0)
dWh = np.dot(cache["h"].T, dpre)
dprev_h = np.dot(dpre, cache["Wh"].T)
if cache["Wx"] is None:
    dx = dpre
else:
    dx = np.dot(dpre, cache["Wx"].T)
    dWx = np.dot(cache["x"].T, dpre)
""",
    "rnn_forward": """
states, step_caches = [], []
h_t = h0
for t in range(x.shape[1]):
    h_t, c_t = rnn_step_forward(x[:, t, :], h_t, Wx, Wh, b)
    states.append(h_t)
    step_caches.append(c_t)
h = np.stack(states, axis=1)
cache = step_caches
""",
    "rnn_backward": """
grads_x = [None] * dh.shape[1]
carry = np.zeros_like(dh[:, 0, :])
dWx = dWh = db = 0
for t in range(dh.shape[1] - 1, -1, -1):
    gx, carry, gWx, gWh, gb = rnn_step_backward(dh[:, t, :] + carry, cache[t])
    grads_x[t] = gx
    dWx = dWx + gWx
    dWh = dWh + gWh
    db = db + gb
dx = np.stack(grads_x, axis=1)
dh0 = carry
""",
    "word_embedding_forward": """
out = np.take(W, x, axis=0)
cache = (x, W)
""",
    "word_embedding_backward": """
idx, W = cache
onehot = np.eye(W.shape[0])[idx.ravel()]
dW = onehot.T @ dout.reshape(-1, W.shape[1])
""",
    "temporal_affine_forward": """
out = np.einsum("ntd,dm->ntm", x, w) + b
cache = (x, w, b)
""",
    "temporal_affine_backward": """
x, w, b = cache
db = dout.sum(axis=(0, 1))
dw = np.einsum("ntd,ntm->dm", x, dout)
dx = np.einsum("ntm,dm->ntd", dout, w)
""",
}

INDEPENDENT_TWO = {
    "rnn_step_forward": """
inp = x if Wx is None else np.matmul(x, Wx)
hidden = np.tanh(inp + np.matmul(prev_h, Wh) + b[None, :])
next_h = hidden
cache = [x, Wx, prev_h, Wh, hidden]
""",
    "rnn_step_backward": """
x_in, W_in, h_prev, W_hid, hidden = cache
local = dnext_h - dnext_h * hidden**2
dx = local if W_in is None else np.matmul(local, W_in.T)
dWx = None if W_in is None else np.matmul(x_in.T, local)
dprev_h = np.matmul(local, W_hid.T)
dWh = np.matmul(h_prev.T, local)
db = local.sum(0)
""",
    "rnn_forward": """
n, steps = x.shape[0], x.shape[1]
h = np.zeros((n, steps, h0.shape[1]), dtype=x.dtype)
saved = []
current = h0
for step in range(steps):
    current, info = rnn_step_forward(x[:, step], current, Wx, Wh, b)
    h[:, step] = current
    saved.append(info)
cache = (saved, x.shape)
""",
    "rnn_backward": """
saved, shape = cache
dx = np.zeros(shape, dtype=dh.dtype)
running = 0
dWx, dWh, db = 0, 0, 0
for step in reversed(range(shape[1])):
    parts = rnn_step_backward(dh[:, step] + running, saved[step])
    dx[:, step] = parts[0]
    running = parts[1]
    dWx, dWh, db = dWx + parts[2], dWh + parts[3], db + parts[4]
dh0 = running
""",
    "word_embedding_forward": """
out = W[x, :]
cache = (x, W.shape[0])
""",
    "word_embedding_backward": """
words, vocab = cache
flat = dout.reshape(-1, dout.shape[-1])
dW = np.zeros((vocab, flat.shape[1]), dtype=dout.dtype)
for v in np.unique(words):
    dW[v] = flat[words.ravel() == v].sum(axis=0)
""",
    "temporal_affine_forward": """
flat = x.reshape(-1, x.shape[-1])
out = (np.dot(flat, w) + b).reshape(x.shape[0], x.shape[1], w.shape[1])
cache = (x, w)
""",
    "temporal_affine_backward": """
inputs, weights = cache
g = dout.reshape(-1, dout.shape[-1])
db = g.sum(axis=0)
dw = inputs.reshape(-1, inputs.shape[-1]).T.dot(g)
dx = g.dot(weights.T).reshape(inputs.shape)
""",
}

# Statements of the reference that the planted copy swaps (independent of each other).
SWAPS = (("dWh = prev_hs.T @ da", "db = da.sum(axis=0)"), ("dprev_h = da @ Wh.T", "db = da.sum(axis=0)"))


def region_functions(text):
    """(Region, name of the function it sits in) for every region of a source text."""
    lines = text.splitlines()
    found = []
    for region in find_regions(text):
        header = next(line for line in reversed(lines[: region.start]) if re.match(r"\s*def ", line))
        found.append((region, re.match(r"\s*def (\w+)", header)[1]))
    return found


def with_regions(text, bodies):
    """The text with the region of each function named in bodies replaced by its code (indented to fit);
    every other region becomes the stub's `pass`."""
    lines = text.splitlines()
    out, position = [], 0
    for region, function in region_functions(text):
        out += lines[position : region.start + 1]
        body = bodies.get(function, "pass").strip("\n").splitlines()
        out += [region.indent + line if line else line for line in body]
        position = region.end
    return "\n".join(out + lines[position:]) + "\n"


def reference_bodies(text):
    """The reference region bodies (dedented) of FUNCTIONS."""
    lines = text.splitlines()
    return {
        function: "\n".join(line[len(region.indent) :] for line in lines[region.start + 1 : region.end])
        for region, function in region_functions(text)
        if function in FUNCTIONS
    }


def planted_copy(bodies, master):
    """The bodies with local names renamed, comments rewritten, and the SWAPS statements swapped.

    Returns (bodies, how many pairs of statements were swapped).

    Renamed: the names a region assigns that the file's code never mentions outside its regions (the
    parameters and the names returned after a region are fixed by the skeleton).
    """
    fixed = set(re.findall(r"\w+", "\n".join(line.split("#")[0] for line in outside_lines(master))))
    copied, counter, swapped = {}, 0, 0
    for function, body in bodies.items():
        for first, second in SWAPS:
            if first in body and second in body:
                a, b = body.index(first), body.index(second)
                body = body[:a] + second + body[a + len(first) : b] + first + body[b + len(second) :]
                swapped += 1
        body = re.sub(r"#.*", "# worked this out myself", body)
        lines = body.splitlines()
        body = "\n".join([lines[0], "# checked <script>alert(1)</script>", *lines[1:]])
        assigned = set(re.findall(r"^\s*(\w+)\s*(?:,|=(?!=)|\+=)", body, re.M))
        for name in sorted(assigned - fixed):
            counter += 1
            body = re.sub(rf"(?<![\w.]){name}(?!\w)", f"my_var{counter}", body)
        copied[function] = "# a comment of my own\n" + body
    return copied, swapped


def zip_folder(folder, zip_path):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return zip_path


def submission(root, name, text, as_zip=True):
    """A submission holding asgn3/rnn_layers.py with the given text (a zip, or an unpacked folder)."""
    folder = root / "unpacked" / name if as_zip else root / "class" / name
    (folder / "asgn3").mkdir(parents=True)
    (folder / RNN_LAYERS).write_text(text)
    if as_zip:
        zip_folder(folder, root / "class" / f"{name}.zip")
    return folder / RNN_LAYERS


def load_module(path):
    spec = importlib.util.spec_from_file_location(f"submitted_{path.parent.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_correct(module):
    """The eight functions of a submitted rnn_layers give the reference's values and gradients."""
    rng = np.random.default_rng(0)
    N, T, D, H, V = 3, 4, 5, 6, 7
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = rng.standard_normal((D, H)), rng.standard_normal((H, H)), rng.standard_normal(H)
    words, W = rng.integers(0, V, (N, T)), rng.standard_normal((V, D))
    dh = rng.standard_normal((N, T, H))
    mine, theirs = module, rnn_layers
    h_m, cache_m = mine.rnn_forward(x, h0, Wx, Wh, b)
    h_t, cache_t = theirs.rnn_forward(x, h0, Wx, Wh, b)
    np.testing.assert_allclose(h_m, h_t, rtol=1e-10)
    for g_m, g_t in zip(mine.rnn_backward(dh, cache_m), theirs.rnn_backward(dh, cache_t), strict=True):
        np.testing.assert_allclose(g_m, g_t, rtol=1e-10)
    out_m, cache_m = mine.word_embedding_forward(words, W)
    np.testing.assert_allclose(out_m, W[words])
    dout = rng.standard_normal(out_m.shape)
    np.testing.assert_allclose(
        mine.word_embedding_backward(dout, cache_m),
        theirs.word_embedding_backward(dout, theirs.word_embedding_forward(words, W)[1]),
        rtol=1e-10,
    )
    out_m, cache_m = mine.temporal_affine_forward(x, Wx, b)
    out_t, cache_t = theirs.temporal_affine_forward(x, Wx, b)
    np.testing.assert_allclose(out_m, out_t, rtol=1e-10)
    for g_m, g_t in zip(
        mine.temporal_affine_backward(dh, cache_m), theirs.temporal_affine_backward(dh, cache_t), strict=True
    ):
        np.testing.assert_allclose(g_m, g_t, rtol=1e-10)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The similarity CSV (as dicts) and HTML of a class of six submissions."""
    root = tmp_path_factory.mktemp("similarity")
    (root / "class").mkdir()
    master = (KIT_DIR / RNN_LAYERS).read_text()
    reference = reference_bodies(master)
    assert set(reference) == set(FUNCTIONS)
    copy, swapped = planted_copy(reference, master)
    assert swapped >= len(SWAPS)  # the reference still has the statements the copy reorders
    paths = {
        "reference": submission(root, "reference", with_regions(master, reference)),
        "copy": submission(root, "copy", with_regions(master, copy), as_zip=False),
        "alice": submission(root, "alice", with_regions(master, INDEPENDENT_ONE)),
        "bob": submission(root, "bob", with_regions(master, INDEPENDENT_TWO)),
    }
    for name in ("stubs1", "stubs2"):
        submission(root, name, stub_source(master, RNN_LAYERS))
    for path in paths.values():
        assert_correct(load_module(path))
    (root / "class" / "broken.zip").write_bytes(b"not a zip")
    csv_path, html_path = root / "pairs.csv", root / "pairs.html"
    assert similarity.main([str(root / "class"), "--csv", str(csv_path), "--html", str(html_path)]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    for row in rows:
        print(row["rank"], row["a"], row["b"], row["similarity"], row["shared"])
    return rows, html_path.read_text(), paths


def test_the_planted_copy_ranks_first(report):
    rows, _, _ = report
    assert {rows[0]["a"], rows[0]["b"]} == {"copy", "reference"}
    assert float(rows[0]["similarity"]) >= 0.7
    assert rows[0]["matching_lines"].count("asgn3/rnn_layers.py") >= 8  # several ranges, both sides


def test_independent_implementations_are_clearly_lower(report):
    rows, _, _ = report
    top = float(rows[0]["similarity"])
    others = [float(row["similarity"]) for row in rows[1:]]
    assert all(value <= min(0.3, top / 3) for value in others), others


def test_untouched_stubs_are_in_no_pair(report, capsys):
    rows, _, _ = report
    named = {row["a"] for row in rows} | {row["b"] for row in rows}
    assert not named & {"stubs1", "stubs2", "broken"}


def test_html_shows_the_matching_lines_escaped(report):
    rows, page, paths = report
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    first_range = rows[0]["matching_lines"].split(";")[0]  # e.g. asgn3/rnn_layers.py:57-59 ~ asgn3/...:60-62
    side = first_range.split(" ~ ")[["copy", "reference"].index(rows[0]["a"]) ^ 1]
    number = int(side.rsplit(":", 1)[1].split("-")[0])
    line = paths["reference"].read_text().splitlines()[number - 1]
    assert f"{number:5d}  {html.escape(line)}" in page


def test_tokens_normalise_names_literals_and_comments():
    lines = [(1, "total = np.sum(x * 2.5)  # a comment"), (2, "name = 'abc'; y = (1,"), (3, "  2)")]
    texts = [t.text for t in similarity.normalised_tokens(lines, known_names={"np"})]
    assert texts == ["V", "=", "np", ".", "sum", "(", "V", "*", "0", ")", ";"] + [
        "V", "=", '""', ";", "V", "=", "(", "0", ",", "0", ")", ";",
    ]  # fmt: skip
    assert [t.line for t in similarity.normalised_tokens(lines)][-2:] == [3, 3]


def test_winnowing_keeps_a_shared_run_wherever_it_sits():
    run = [similarity.Token(text, 1) for text in "a = b . c ( d , e ) + f * g ;".split()]
    noise = [similarity.Token(f"n{i}", 1) for i in range(40)]
    left = {h for h, _, _ in similarity.winnow(noise[:20] + run + noise[20:])}
    right = {h for h, _, _ in similarity.winnow(run[::-1] + noise + run)}
    assert left & right  # the run is K_GRAM + WINDOW - 1 = 17 tokens long: a fingerprint is shared
    assert similarity.winnow(run[:5]) == []


def test_a_folder_that_is_not_there_is_a_clear_error(tmp_path, capsys):
    assert similarity.main([str(tmp_path / "missing"), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "not a folder" in capsys.readouterr().err


def function_lines(text, name):
    """The 1-based line numbers of a top-level function's definition in a source text."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines, 1) if line.startswith(f"def {name}("))
    end = next(
        (i for i, line in enumerate(lines, 1) if i > start and line.startswith("def ")), len(lines) + 1
    )
    return range(start, end)


def test_copying_one_function_is_reported_with_its_lines(tmp_path):
    master = (KIT_DIR / RNN_LAYERS).read_text()
    (tmp_path / "class").mkdir()
    one = dict(INDEPENDENT_ONE, rnn_backward=reference_bodies(master)["rnn_backward"])
    paths = {
        name: submission(tmp_path, name, with_regions(master, bodies))
        for name, bodies in (
            ("honest", reference_bodies(master)),
            ("partial", one),
            ("other", INDEPENDENT_TWO),
        )
    }
    first = similarity.similar_pairs(similarity.read_submissions(tmp_path / "class"))[0]
    assert (first.a, first.b) == ("honest", "partial")  # pairs list their submissions in name order
    copied = function_lines(paths["partial"].read_text(), "rnn_backward")
    assert all(m.b.first in copied and m.b.last in copied for m in first.matches)  # only what was copied
    original = function_lines(paths["honest"].read_text(), "rnn_backward")
    assert any(m.a.first in original for m in first.matches)
