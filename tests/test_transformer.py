"""Tests of asgn3/classifiers/transformer.py (CaptioningTransformer): parameters and dtype, numeric gradient
checks of the loss (float64), the causal mask seen from the model (a later word never changes an earlier
prediction), one-token and grid features, step-by-step decoding against whole-sequence decoding, beam
search and temperature sampling through the shared decoders, the returned cross-attention, overfitting 50
captions, and the ValueErrors for bad input."""

import itertools

import numpy as np
import pytest

from asgn3.captioning_solver import CaptioningSolver
from asgn3.classifiers.transformer import CaptioningTransformer
from asgn3.gradient_check import eval_numerical_gradient
from asgn3.notebook_checks import rel_error

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "cat", "dog", "on", "mat"]
VOCAB = {w: i for i, w in enumerate(WORDS)}
GRAD_TOL = 1e-7


def small_model(seed=0, dtype=np.float64, word_to_idx=VOCAB, D=6, W=8, layers=2, scale=1.0):
    """A small model whose parameters (biases and layer-norm shifts included) are random, so that no
    gradient is zero by construction and the scores vary."""
    model = CaptioningTransformer(
        word_to_idx,
        input_dim=D,
        wordvec_dim=W,
        num_heads=2,
        num_layers=layers,
        max_length=12,
        dim_feedforward=12,
        dtype=dtype,
        seed=seed,
    )
    rng = np.random.default_rng(seed + 100)
    for name, value in model.params.items():
        if name.endswith("_gamma"):
            value = 1 + 0.3 * rng.standard_normal(value.shape)
        elif value.ndim == 1:
            value = 0.3 * rng.standard_normal(value.shape)
        model.params[name] = (scale * value).astype(dtype)
    return model


def captions_for(rng, N, T, V=None):
    """Random captions (N, T) over V words (default: VOCAB's) with <NULL>=0, <START>=1, <END>=2: <START>,
    words, <END>, then <NULL> padding of random lengths."""
    V = len(VOCAB) if V is None else V
    captions = np.zeros((N, T), dtype=np.int64)
    captions[:, 0] = 1
    for n, length in enumerate(rng.integers(1, T - 1, size=N)):
        captions[n, 1 : length + 1] = rng.integers(3, V, size=length)
        captions[n, length + 1] = 2
    return captions


def richardson_gradient(f, x, h=3e-4):
    """Numeric gradient of a scalar f at x with error of order h^4 (see test_transformer_layers)."""
    coarse = eval_numerical_gradient(f, x, verbose=False, h=h)
    fine = eval_numerical_gradient(f, x, verbose=False, h=h / 2)
    return (4 * fine - coarse) / 3


def test_parameters_shapes_dtype_and_seed():
    model = CaptioningTransformer(VOCAB, input_dim=20, wordvec_dim=16, num_heads=4, num_layers=3, seed=0)
    p = model.params
    assert p["W_embed"].shape == (9, 16) and p["W_proj"].shape == (20, 16) and p["W_vocab"].shape == (16, 9)
    assert p["layer2_self_attn_Wq"].shape == (16, 16) and p["layer0_cross_attn_bo"].shape == (16,)
    assert p["layer1_W1"].shape == (16, 64) and p["layer1_W2"].shape == (64, 16)  # F = 4 W by default
    assert np.all(p["layer0_ln3_gamma"] == 1) and np.all(p["layer0_ln3_beta"] == 0)
    assert not any(name.startswith("layer3") for name in p)
    assert all(v.dtype == np.float32 for v in p.values())
    again = CaptioningTransformer(VOCAB, input_dim=20, wordvec_dim=16, num_heads=4, num_layers=3, seed=0)
    assert all(np.array_equal(p[k], again.params[k]) for k in p)
    other = CaptioningTransformer(VOCAB, input_dim=20, wordvec_dim=16, dim_feedforward=24, seed=1)
    assert other.params["layer0_W1"].shape == (16, 24)
    assert not np.array_equal(other.params["W_embed"], p["W_embed"])


@pytest.mark.slow
def test_loss_gradients_match_numeric_gradients():
    """Grid features (3 memory vectors); test_one_vector_per_image_is_one_memory_token covers (N, D)."""
    model = small_model(seed=1)
    rng = np.random.default_rng(1)
    N = 3
    features = rng.standard_normal((N, 3, 6))
    captions = captions_for(rng, N, 6)
    loss, grads = model.loss(features, captions)
    assert sorted(grads) == sorted(model.params)
    # The loss is ~10, so even the extrapolated differences carry a roundoff of ~1e-11 (eps * 10 / h): the
    # relative error is held below 1e-7 on the entries above 1e-4, and every entry within 1e-10 absolutely.
    # A wrong gradient is off by far more than either.
    worst_relative, worst_absolute = 0.0, 0.0
    for name, param in model.params.items():
        numeric = richardson_gradient(lambda _: model.loss(features, captions)[0], param)
        difference = np.abs(numeric - grads[name])
        worst_absolute = max(worst_absolute, difference.max())
        assert difference.max() < 1e-10, f"d{name}: absolute error {difference.max():.1e}"
        size = np.abs(numeric) + np.abs(grads[name])
        if name.endswith("attn_bk"):  # one constant added to a row of scores: the softmax ignores it
            assert size.max() < 1e-8
            continue
        large = size > 1e-4
        relative = (difference[large] / size[large]).max(initial=0.0)
        worst_relative = max(worst_relative, relative)
        assert relative < GRAD_TOL, f"d{name}: relative error {relative:.2e}"
    print(f"{len(grads)} gradients: relative error {worst_relative:.1e}, absolute {worst_absolute:.1e}")


def test_null_padding_changes_neither_loss_nor_gradients():
    model = small_model(seed=2)
    rng = np.random.default_rng(2)
    features = rng.standard_normal((4, 6))
    captions = captions_for(rng, 4, 6)
    padded = np.concatenate([captions, np.zeros((4, 3), dtype=captions.dtype)], axis=1)
    loss, grads = model.loss(features, captions)
    padded_loss, padded_grads = model.loss(features, padded)
    assert padded_loss == pytest.approx(loss, rel=1e-12)
    assert all(rel_error(grads[k], padded_grads[k]) < 1e-9 for k in grads)


def test_a_later_word_never_changes_an_earlier_prediction():
    model = small_model(seed=3)
    rng = np.random.default_rng(3)
    memory, _ = model._memory(model._check_features(rng.standard_normal((2, 4, 6))))
    words = rng.integers(3, len(WORDS), size=(2, 7))
    log_probs, _ = model._decode(memory, words)
    changed = words.copy()
    changed[:, 4:] = (changed[:, 4:] + 1 - 3) % (len(WORDS) - 3) + 3
    changed_log_probs, _ = model._decode(memory, changed)
    assert np.array_equal(log_probs[:, :4], changed_log_probs[:, :4])
    assert not np.allclose(log_probs[:, 4:], changed_log_probs[:, 4:])


def test_one_vector_per_image_is_one_memory_token():
    model = small_model(seed=4)
    rng = np.random.default_rng(4)
    features = rng.standard_normal((3, 6))
    captions = captions_for(rng, 3, 6)
    loss, grads = model.loss(features, captions)
    loss_grid, grads_grid = model.loss(features[:, None, :], captions)
    assert loss == loss_grid and all(np.array_equal(grads[k], grads_grid[k]) for k in grads)


def test_training_dtype_is_float32():
    model = small_model(seed=5, dtype=np.float32)
    rng = np.random.default_rng(5)
    features = rng.standard_normal((3, 4, 6))
    loss, grads = model.loss(features, captions_for(rng, 3, 6))
    assert np.asarray(loss).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    captions, weights = model.sample(features, max_length=5, return_attention=True)
    assert weights.dtype == np.float32


def test_greedy_words_are_the_argmax_of_the_whole_sequence_decoder():
    model = small_model(seed=6, scale=1.5)
    model.params["b_vocab"][VOCAB["<END>"]] += 2  # make <END> likely, so that some rows stop early
    features = np.random.default_rng(6).standard_normal((20, 5, 6))
    captions = model.sample(features, max_length=8)
    assert captions.shape == (20, 8) and captions.dtype == np.int32
    memory, _ = model._memory(model._check_features(features))
    inputs = np.concatenate([np.full((20, 1), VOCAB["<START>"]), captions[:, :-1]], axis=1)
    best = model._decode(memory, inputs)[0].argmax(axis=-1)
    for n in range(20):
        row = list(captions[n])
        length = row.index(VOCAB["<END>"]) + 1 if VOCAB["<END>"] in row else len(row)
        assert np.array_equal(captions[n, :length], best[n, :length])
        assert np.all(captions[n, length:] == VOCAB["<NULL>"])
    assert any(VOCAB["<END>"] in row for row in captions.tolist())  # some rows stop early


def test_returned_attention_is_a_distribution_until_end_then_zero():
    model = small_model(seed=7, scale=1.5)
    features = np.random.default_rng(7).standard_normal((10, 4, 6))
    captions, weights = model.sample(features, max_length=8, return_attention=True)
    assert np.array_equal(captions, model.sample(features, max_length=8))
    assert weights.shape == (10, 8, 4)
    for n in range(10):
        row = list(captions[n])
        length = row.index(VOCAB["<END>"]) + 1 if VOCAB["<END>"] in row else len(row)
        assert np.allclose(weights[n, :length].sum(axis=1), 1)
        assert np.all(weights[n, length:] == 0)
    _, beam_weights = model.sample(features, max_length=8, beam_width=3, return_attention=True)
    assert beam_weights.shape == (10, 8, 4)


def caption_log_prob(model, features, caption):
    """Summed log-probability of a caption (a list of words ending with <END> or not) given one image."""
    memory, _ = model._memory(model._check_features(features[None]))
    inputs = np.array([[VOCAB["<START>"]] + list(caption[:-1])])
    log_probs, _ = model._decode(memory, inputs)
    return sum(log_probs[0, t, word] for t, word in enumerate(caption))


def test_beam_search_through_the_shared_decoder():
    words = ["<NULL>", "<START>", "<END>", "a", "b"]
    vocab = {w: i for i, w in enumerate(words)}
    model = small_model(seed=8, word_to_idx=vocab, scale=1.5)
    features = np.random.default_rng(8).standard_normal((4, 3, 6))
    assert np.array_equal(
        model.sample(features, max_length=3, beam_width=1), model.sample(features, max_length=3)
    )
    beamed = model.sample(features, max_length=3, beam_width=len(words) ** 3)  # exhaustive
    for n in range(len(features)):
        candidates = set()
        for caption in itertools.product(range(len(words)), repeat=3):
            caption = list(caption)
            candidates.add(tuple(caption[: caption.index(2) + 1] if 2 in caption else caption))
        best = max(caption_log_prob(model, features[n], c) for c in candidates)
        row = list(beamed[n])
        found = row[: row.index(2) + 1] if 2 in row else row
        assert caption_log_prob(model, features[n], found) == pytest.approx(best, abs=1e-9)


def test_temperature_sampling_is_reproducible_and_near_greedy_when_cold():
    model = small_model(seed=9, scale=1.5)
    features = np.random.default_rng(9).standard_normal((30, 6))
    first = model.sample(features, max_length=6, temperature=1.0, seed=3)
    assert np.array_equal(first, model.sample(features, max_length=6, temperature=1.0, seed=3))
    assert not np.array_equal(first, model.sample(features, max_length=6, temperature=1.0, seed=4))
    cold = model.sample(features, max_length=6, temperature=1e-4, seed=3)
    assert np.array_equal(cold, model.sample(features, max_length=6))


def test_bad_input_raises_value_errors():
    with pytest.raises(ValueError, match="'<NULL>'"):
        CaptioningTransformer({"a": 0}, input_dim=4, wordvec_dim=8, num_heads=2)
    with pytest.raises(ValueError, match="multiple of num_heads=3, got 8"):
        CaptioningTransformer(VOCAB, input_dim=4, wordvec_dim=8, num_heads=3)
    with pytest.raises(ValueError, match="wordvec_dim must be even"):
        CaptioningTransformer(VOCAB, input_dim=4, wordvec_dim=7, num_heads=1)
    model = small_model(seed=10)
    with pytest.raises(ValueError, match=r"D=6 \(the model's input_dim\), got \(3, 5\)"):
        model.loss(np.zeros((3, 5)), np.ones((3, 4), dtype=int))
    with pytest.raises(ValueError, match=r"captions of shape \(N, T \+ 1\) with N=3"):
        model.loss(np.zeros((3, 6)), np.ones((2, 4), dtype=int))
    with pytest.raises(ValueError, match="sequences of 20 words are longer than the model's max_length=12"):
        model.loss(np.zeros((3, 6)), np.ones((3, 21), dtype=int))
    with pytest.raises(ValueError, match="max_length=12"):
        model.sample(np.zeros((3, 6)), max_length=13)
    with pytest.raises(ValueError, match="13 memory vectors"):
        model.sample(np.zeros((3, 13, 6)), max_length=5)
    with pytest.raises(ValueError, match="beam search .* or temperature sampling, not both"):
        model.sample(np.zeros((3, 6)), beam_width=2, temperature=1.0)


def test_overfits_50_captions():
    """The loss of 50 training captions falls below 0.1 and greedy decoding reproduces at least 45."""
    rng = np.random.default_rng(11)
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(20)]
    vocab = {w: i for i, w in enumerate(words)}
    N = 50
    captions = captions_for(rng, N, 12, V=len(words))
    data = {
        "train_captions": captions,
        "train_image_idxs": np.arange(N),
        "train_features": rng.standard_normal((N, 4, 16)).astype(np.float32),
        "val_captions": captions[:5],
        "val_image_idxs": np.arange(5),
        "val_features": rng.standard_normal((5, 4, 16)).astype(np.float32),
        "idx_to_word": words,
        "word_to_idx": vocab,
    }
    np.random.seed(11)
    model = CaptioningTransformer(vocab, input_dim=16, wordvec_dim=32, num_heads=2, num_layers=2, seed=11)
    solver = CaptioningSolver(
        model,
        data,
        update_rule="adam",
        optim_config={"learning_rate": 2e-3},
        num_epochs=200,
        batch_size=25,
        print_every=10**6,
        verbose=False,
    )
    solver.train()
    loss, _ = model.loss(data["train_features"], captions)
    sampled = model.sample(data["train_features"], max_length=11)
    reproduced = int(np.all(sampled == captions[:, 1:], axis=1).sum())  # <NULL> after <END> in both
    print(f"final loss {loss:.3f}, {reproduced} of {N} captions reproduced")
    assert loss < 0.1 and reproduced >= 45
