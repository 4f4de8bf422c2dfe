"""Tests of asgn3/classifiers/rnn.py (CaptioningRNN): the classic kit's loss values, numeric gradient checks
of the loss for both cell types, token handling, greedy decoding against an independent decoder, stopping
after <END>, beam search (width 1 is greedy; a wide beam finds the exhaustive optimum) and temperature
sampling."""

import itertools

import numpy as np
import pytest

from asgn3.classifiers.decoding import beam_search
from asgn3.classifiers.rnn import CaptioningRNN
from asgn3.gradient_check import eval_numerical_gradient
from asgn3.notebook_checks import rel_error

CELLS = ("rnn", "lstm")
WORDS = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "cat", "dog", "on", "mat"]
VOCAB = {w: i for i, w in enumerate(WORDS)}


def small_model(cell, word_to_idx=VOCAB, seed=0, dtype=np.float64, D=6, W=5, H=7, scale=1.0):
    """A small model whose parameters are all random normal times scale/sqrt(fan-in) (biases included), so
    that scores vary and the nonlinearities are neither linear nor saturated."""
    np.random.seed(seed)
    model = CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell, dtype=dtype)
    rng = np.random.default_rng(seed)
    for k, v in model.params.items():
        fan_in = v.shape[0] if v.ndim == 2 and k != "W_embed" else 1
        model.params[k] = (scale * rng.standard_normal(v.shape) / np.sqrt(fan_in)).astype(dtype)
    return model


def log_softmax(scores):
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reference_step(model, word, h, c):
    """One decoding step written from the SPEC formulas: log-probabilities of the next word, next h, c."""
    p = model.params
    H = h.shape[-1]
    a = p["W_embed"][word] @ p["Wx"] + h @ p["Wh"] + p["b"]
    if model.cell_type == "rnn":
        h = np.tanh(a)
    else:
        sig = 1 / (1 + np.exp(-a[..., : 3 * H]))
        i, f, o, g = sig[..., :H], sig[..., H : 2 * H], sig[..., 2 * H :], np.tanh(a[..., 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
    return log_softmax(h @ p["W_vocab"] + p["b_vocab"]), h, c


def reference_initial_state(model, features):
    h = features @ model.params["W_proj"] + model.params["b_proj"]
    return h, np.zeros_like(h)


def reference_greedy(model, features, max_length):
    """Greedy decoding of every row for max_length steps, without stopping at <END>."""
    h, c = reference_initial_state(model, features)
    words = np.full(features.shape[0], model.word_to_idx["<START>"])
    out = []
    for _ in range(max_length):
        log_probs, h, c = reference_step(model, words, h, c)
        words = log_probs.argmax(axis=1)
        out.append(words)
    return np.stack(out, axis=1)


def caption_log_prob(model, feature, caption):
    """Summed log-probability of one caption (up to and including its first <END>) given one feature row."""
    h, c = reference_initial_state(model, feature[None])
    word, total = model.word_to_idx["<START>"], 0.0
    for next_word in caption:
        log_probs, h, c = reference_step(model, np.array([word]), h, c)
        total += log_probs[0, next_word]
        if next_word == model.word_to_idx.get("<END>"):
            break
        word = next_word
    return total


def truncate_after_end(caption, end):
    """The words of a caption up to and including the first <END>."""
    caption = list(caption)
    return caption[: caption.index(end) + 1] if end in caption else caption


# --------------------------------------------------------------------------------------------------------
# Construction and the loss
# --------------------------------------------------------------------------------------------------------


def test_parameters_follow_the_spec():
    np.random.seed(0)
    D, W, H = 60, 50, 40
    for cell, k in (("rnn", 1), ("lstm", 4)):
        model = CaptioningRNN(VOCAB, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell)
        p = model.params
        shapes = {
            "W_embed": (9, W),
            "W_proj": (D, H),
            "b_proj": (H,),
            "Wx": (W, k * H),
            "Wh": (H, k * H),
            "b": (k * H,),
            "W_vocab": (H, 9),
            "b_vocab": (9,),
        }
        assert {name: v.shape for name, v in p.items()} == shapes
        assert all(v.dtype == np.float32 for v in p.values())
        assert all(np.all(p[name] == 0) for name in ("b_proj", "b", "b_vocab"))
        for name, std in (
            ("W_embed", 0.01),
            ("W_proj", D**-0.5),
            ("Wx", W**-0.5),
            ("Wh", H**-0.5),
            ("W_vocab", H**-0.5),
        ):
            assert p[name].std() == pytest.approx(std, rel=0.25), name


def test_seed_none_draws_from_np_random_and_a_seed_gives_its_own_generator():
    def weights(**kwargs):
        return CaptioningRNN(VOCAB, input_dim=6, wordvec_dim=5, hidden_dim=4, **kwargs).params

    np.random.seed(1)
    first = weights()
    np.random.seed(1)
    second, third = weights(), weights()  # the global generator moves on
    np.random.seed(1)
    np.random.randn(100)
    seeded, seeded_again = weights(seed=7), weights(seed=7)  # independent of np.random
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_array_equal(seeded[name], seeded_again[name])
    assert not np.array_equal(first["Wx"], third["Wx"]) and not np.array_equal(first["Wx"], seeded["Wx"])


@pytest.mark.parametrize(
    "cell, feature_range, expected",
    [("rnn", (-1.5, 0.3), 9.83235591003), ("lstm", (-0.5, 1.7), 9.82445935443)],
)
def test_loss_matches_the_classic_kit(cell, feature_range, expected):
    # The classic notebooks' check: a vocabulary with non-contiguous indices and no <START>/<END>, every
    # parameter set by linspace; `expected` is the value those notebooks publish.
    N, D, W, H, T = 10, 20, 30, 40, 13
    word_to_idx = {"<NULL>": 0, "cat": 2, "dog": 3}
    V = len(word_to_idx)
    model = CaptioningRNN(
        word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell, dtype=np.float64
    )
    for k, v in model.params.items():
        model.params[k] = np.linspace(-1.4, 1.3, num=v.size).reshape(*v.shape)
    features = np.linspace(*feature_range, num=N * D).reshape(N, D)
    captions = (np.arange(N * T) % V).reshape(N, T)
    loss, grads = model.loss(features, captions)
    print(f"{cell}: loss {loss!r}, classic {expected}")
    assert loss == pytest.approx(expected, rel=1e-10)
    assert set(grads) == set(model.params)


@pytest.mark.parametrize("cell", CELLS)
def test_loss_gradients(cell):
    model = small_model(cell, seed=1)
    rng = np.random.default_rng(1)
    features = rng.standard_normal((3, 6))
    captions = rng.integers(len(WORDS), size=(3, 6))
    captions[:, 0] = VOCAB["<START>"]
    captions[0, 4:] = VOCAB["<NULL>"]  # some masked steps
    loss, grads = model.loss(features, captions)
    errors = {}
    for name in sorted(model.params):
        numeric = eval_numerical_gradient(
            lambda _: model.loss(features, captions)[0], model.params[name], verbose=False, h=1e-4
        )
        errors[name] = rel_error(numeric, grads[name])
    print(f"{cell}: relative errors", {k: f"{e:.1e}" for k, e in errors.items()})
    # The loss is ~10, so centered differences carry a roundoff of eps * 10 / h ~ 1e-11: a relative error
    # of ~1e-6 for the smallest gradient entries (~1e-5, deep in the recurrence). A wrong gradient is off
    # by far more.
    assert max(errors.values()) < 2e-6


@pytest.mark.parametrize("cell", CELLS)
def test_null_padding_changes_neither_loss_nor_gradients(cell):
    model = small_model(cell, seed=2)
    rng = np.random.default_rng(2)
    features = rng.standard_normal((4, 6))
    captions = rng.integers(4, len(WORDS), size=(4, 5))
    captions[:, 0] = VOCAB["<START>"]
    padded = np.concatenate([captions, np.zeros((4, 3), dtype=captions.dtype)], axis=1)
    loss, grads = model.loss(features, captions)
    padded_loss, padded_grads = model.loss(features, padded)
    assert padded_loss == pytest.approx(loss, rel=1e-12)
    for name in grads:
        assert rel_error(padded_grads[name], grads[name]) < 1e-10, name
    # and the loss is divided by N: the same captions twice give the same loss
    doubled_loss, _ = model.loss(np.concatenate([features] * 2), np.concatenate([captions] * 2))
    assert doubled_loss == pytest.approx(loss, rel=1e-12)


def test_training_dtype_is_float32():
    np.random.seed(3)
    model = CaptioningRNN(VOCAB, input_dim=6, wordvec_dim=5, hidden_dim=7, cell_type="lstm")
    captions = np.random.randint(len(WORDS), size=(2, 4))
    loss, grads = model.loss(np.random.randn(2, 6), captions)
    assert np.isfinite(loss) and all(g.dtype == np.float32 for g in grads.values())


# --------------------------------------------------------------------------------------------------------
# Greedy decoding and token handling
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_sample_matches_reference_and_stops_after_end(cell):
    model = small_model(cell, seed=5, scale=2.0)
    model.params["b_vocab"][:] = 0  # as initialized: the biases do not decide the words alone
    features = np.random.default_rng(5).standard_normal((40, 6))
    end, null = VOCAB["<END>"], VOCAB["<NULL>"]
    sampled = model.sample(features, max_length=8)
    reference = reference_greedy(model, features, 8)
    assert sampled.shape == (40, 8) and np.issubdtype(sampled.dtype, np.integer)
    stopped = 0
    for row, ref in zip(sampled, reference, strict=True):
        kept = truncate_after_end(ref, end)
        assert list(row[: len(kept)]) == kept
        assert np.all(row[len(kept) :] == null)
        stopped += len(kept) < 8
    print(f"{cell}: {stopped} of 40 rows stopped early")
    assert 0 < stopped < 40  # the check above saw both kinds of rows


def test_special_tokens_at_other_indices():
    # Indices in any order, <START> and <END> not at 1 and 2: sampling must look them up.
    words = ["cat", "<END>", "a", "<NULL>", "mat", "<START>", "on"]
    word_to_idx = {w: i for i, w in reversed(list(enumerate(words)))}
    model = small_model("lstm", word_to_idx=word_to_idx, seed=5, scale=2.0)
    features = np.random.default_rng(5).standard_normal((30, 6))
    sampled = model.sample(features, max_length=6)
    reference = reference_greedy(model, features, 6)
    for row, ref in zip(sampled, reference, strict=True):
        kept = truncate_after_end(ref, word_to_idx["<END>"])
        assert list(row[: len(kept)]) == kept and np.all(row[len(kept) :] == word_to_idx["<NULL>"])


def test_vocabulary_without_start_or_end():
    no_start = {w: i for w, i in VOCAB.items() if w != "<START>"}
    model = small_model("rnn", word_to_idx={w: i for i, w in enumerate(no_start)}, seed=6)
    captions = np.random.default_rng(6).integers(len(no_start), size=(2, 5))
    loss, _ = model.loss(np.ones((2, 6)), captions)  # training needs no <START>
    assert np.isfinite(loss) and model._start is None
    with pytest.raises(ValueError, match="<START>"):
        model.sample(np.ones((2, 6)))
    no_end = [w for w in WORDS if w != "<END>"]
    model = small_model("rnn", word_to_idx={w: i for i, w in enumerate(no_end)}, seed=6)
    features = np.random.default_rng(7).standard_normal((5, 6))
    assert model._end is None
    assert np.array_equal(model.sample(features, max_length=7), reference_greedy(model, features, 7))


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="cell_type"):
        CaptioningRNN(VOCAB, cell_type="gru")
    with pytest.raises(ValueError, match="<NULL>"):
        CaptioningRNN({"<START>": 0, "<END>": 1})
    model = small_model("rnn")
    with pytest.raises(ValueError, match=r"features of shape \(N, D\) with D=6"):
        model.loss(np.ones((2, 5)), np.ones((2, 4), dtype=int))
    with pytest.raises(ValueError, match=r"captions of shape \(N, T \+ 1\)"):
        model.loss(np.ones((2, 6)), np.ones((3, 4), dtype=int))
    with pytest.raises(ValueError, match="either beam search"):
        model.sample(np.ones((2, 6)), beam_width=2, temperature=1.0)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(np.ones((2, 6)), temperature=0.0)
    with pytest.raises(ValueError, match="beam_width"):
        model.sample(np.ones((2, 6)), beam_width=0)


# --------------------------------------------------------------------------------------------------------
# Beam search and temperature sampling
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_beam_width_one_is_greedy(cell):
    model = small_model(cell, seed=8, scale=2.0)
    features = np.random.default_rng(8).standard_normal((25, 6))
    # sample(beam_width=1) is the greedy loop itself: run the beam search code with one beam directly
    state = model._initial_state(model._check_features(features))
    beam_of_one = beam_search(model._step, state, 9, 1, *model._tokens())
    assert np.array_equal(beam_of_one, model.sample(features, max_length=9))
    assert np.array_equal(model.sample(features, max_length=9, beam_width=1), beam_of_one)


@pytest.mark.parametrize("cell", CELLS)
def test_wide_beam_finds_the_most_likely_caption(cell):
    # With as many beams as there are captions of length 3, beam search is exhaustive: it must return
    # the caption of highest log-probability, found here by enumerating all of them.
    words = ["<NULL>", "<START>", "<END>", "a", "b"]
    model = small_model(cell, word_to_idx={w: i for i, w in enumerate(words)}, seed=9, scale=2.0)
    features = np.random.default_rng(9).standard_normal((4, 6))
    L, end = 3, 2
    beamed = model.sample(features, max_length=L, beam_width=len(words) ** L)
    greedy = model.sample(features, max_length=L)
    for n in range(len(features)):
        candidates = {tuple(truncate_after_end(c, end)) for c in itertools.product(range(5), repeat=L)}
        best = max(caption_log_prob(model, features[n], c) for c in candidates)
        found = caption_log_prob(model, features[n], truncate_after_end(beamed[n], end))
        assert found == pytest.approx(best, abs=1e-9)
        assert found >= caption_log_prob(model, features[n], truncate_after_end(greedy[n], end)) - 1e-9
        kept = truncate_after_end(beamed[n], end)
        assert np.all(beamed[n, len(kept) :] == 0)


def test_beam_search_beats_or_ties_greedy_on_average():
    model = small_model("lstm", seed=10, scale=2.0)
    features = np.random.default_rng(10).standard_normal((30, 6))
    end = VOCAB["<END>"]
    beamed = model.sample(features, max_length=6, beam_width=4)
    greedy = model.sample(features, max_length=6)
    beam_lp = [
        caption_log_prob(model, f, truncate_after_end(c, end)) for f, c in zip(features, beamed, strict=True)
    ]
    greedy_lp = [
        caption_log_prob(model, f, truncate_after_end(c, end)) for f, c in zip(features, greedy, strict=True)
    ]
    print(f"mean log-probability: beam {np.mean(beam_lp):.3f}, greedy {np.mean(greedy_lp):.3f}")
    assert np.mean(beam_lp) > np.mean(greedy_lp)


def test_temperature_sampling():
    model = small_model("rnn", seed=11, scale=2.0)
    rng = np.random.default_rng(11)
    features = rng.standard_normal((20, 6))
    first = model.sample(features, max_length=5, temperature=1.0, seed=3)
    assert np.array_equal(first, model.sample(features, max_length=5, temperature=1.0, seed=3))
    assert not np.array_equal(first, model.sample(features, max_length=5, temperature=1.0, seed=4))
    # a very low temperature is greedy decoding
    assert np.array_equal(
        model.sample(features, max_length=5, temperature=1e-4, seed=0), model.sample(features, max_length=5)
    )
    # at temperature t the first word follows softmax(scores / t): compare frequencies over many draws
    one = np.repeat(features[:1], 20000, axis=0)
    h0, c0 = reference_initial_state(model, one[:1])
    log_probs, _, _ = reference_step(model, np.array([VOCAB["<START>"]]), h0, c0)
    for t in (1.0, 2.0):
        expected = np.exp(log_probs[0] / t) / np.exp(log_probs[0] / t).sum()
        drawn = model.sample(one, max_length=1, temperature=t, seed=5)[:, 0]
        frequencies = np.bincount(drawn, minlength=len(WORDS)) / len(drawn)
        print(f"t={t}: expected {np.round(expected, 3)}, drawn {np.round(frequencies, 3)}")
        assert np.max(np.abs(frequencies - expected)) < 0.015  # about 4 standard errors at 20000 draws
