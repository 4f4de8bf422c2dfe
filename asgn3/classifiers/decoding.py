"""Turning a captioning model's next-word distribution into captions: greedy, temperature and beam search.

Nothing here knows which model it decodes. A model hands in a decoding step,

    step(words, state) -> (log_probs, state)

which feeds one word per row (int array (M,)) and returns the log-probabilities of the next word (M, V)
and the new state: a tuple of arrays whose first axis is the M rows (the RNN's hidden and cell states, the
Transformer's memory and the words so far). Beam search reorders and repeats rows of every state array,
so the step must keep that layout. CaptioningRNN and CaptioningTransformer both decode through here; the
students write the RNN's step (`CaptioningRNN._decode_step`).
"""

import numpy as np


def vocabulary_tokens(word_to_idx):
    """
    Check a vocabulary and return the indices of its special words.

    Inputs:
    - word_to_idx: dict word -> index; it must hold '<NULL>'; indices distinct and non-negative

    Returns a tuple (null, start, end): start and end are None when '<START>' or '<END>' are missing.
    """
    if "<NULL>" not in word_to_idx:
        raise ValueError(
            f"word_to_idx must contain '<NULL>' (the padding word), got a vocabulary of "
            f"{len(word_to_idx)} words without it"
        )
    indices = list(word_to_idx.values())
    if min(indices) < 0 or len(set(indices)) != len(indices):
        raise ValueError("word_to_idx must map each word to its own non-negative index")
    return word_to_idx["<NULL>"], word_to_idx.get("<START>"), word_to_idx.get("<END>")


def check_captions(captions, num_images):
    """
    The training captions as an array, or a ValueError naming the shapes (the contract of both models' loss).

    Inputs:
    - captions: ints of shape (N, T + 1): each row the input words followed by one more target word
    - num_images: N, the number of feature rows the captions belong to

    Returns:
    - captions as a numpy array of shape (N, T + 1), T + 1 >= 2
    """
    captions = np.asarray(captions)
    if captions.ndim != 2 or captions.shape[0] != num_images or captions.shape[1] < 2:
        raise ValueError(
            f"expected captions of shape (N, T + 1) with N={num_images} (as features) and T + 1 >= 2, "
            f"got {captions.shape}"
        )
    return captions


def check_sample_options(start, max_length, beam_width, temperature):
    """Raise a ValueError naming the problem when sample()'s options do not make sense together."""
    if start is None:
        raise ValueError(
            "sampling needs a '<START>' word in word_to_idx to begin each caption; this "
            "vocabulary has none: add it and train the model with it"
        )
    if not isinstance(max_length, int | np.integer) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    if not isinstance(beam_width, int | np.integer) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be None (most likely word) or positive, got {temperature!r}")
    if temperature is not None and beam_width > 1:
        raise ValueError("choose either beam search (beam_width > 1) or temperature sampling, not both")


def temperature_sampler(temperature, seed=None):
    """
    A word chooser that draws each row's word from softmax(log_probs / temperature).

    Inputs:
    - temperature: positive float; below 1 sharpens the distribution, above 1 flattens it
    - seed: seed of the random generator; None draws from np.random (so np.random.seed applies)

    Returns a function choose(log_probs (M, V), axis=1) -> (M,) ints, called like np.argmax.
    """
    random = np.random.random if seed is None else np.random.default_rng(seed).random

    def draw(log_probs, axis=1):
        logits = log_probs / temperature
        probs = np.exp(logits - logits.max(axis=axis, keepdims=True))
        cumulative = np.cumsum(probs, axis=axis)
        draws = random(len(probs)) * cumulative[:, -1]
        return np.minimum((cumulative <= draws[:, None]).sum(axis=axis), probs.shape[1] - 1)

    return draw


def greedy_decode(step, state, max_length, start, end, null, choose_word=np.argmax):
    """
    Decode one word at a time, each chosen by choose_word from the step's log-probabilities.

    Inputs:
    - step, state: the model's decoding step and its initial state (see the module docstring)
    - max_length: number of words T to generate at most
    - start, end, null: indices of '<START>' (the first word fed), '<END>' (None: never stop early) and
      '<NULL>' (what fills a row after its '<END>')
    - choose_word: np.argmax for greedy decoding, or a temperature_sampler

    Returns:
    - captions: int32 array (M, T); column 0 holds the first generated word
    """
    num_rows = len(state[0])
    captions = np.full((num_rows, max_length), null, dtype=np.int32)
    words = np.full(num_rows, start)
    finished = np.zeros(num_rows, dtype=bool)
    for t in range(max_length):
        log_probs, state = step(words, state)
        words = choose_word(log_probs, axis=1)
        captions[~finished, t] = words[~finished]
        if end is not None:
            finished |= words == end
        if finished.all():
            break
    return captions


def beam_search(step, state, max_length, k, start, end, null):
    """
    Keep the k best partial captions per row, ranked by summed log-probability; return the best.

    All M*k beams advance together as one batch of rows (row m*k + j is beam j of row m). A beam that has
    produced <END> is finished: it can only be extended by <NULL> at no cost, so it keeps its score and
    competes with the others. Inputs as greedy_decode's, with k the beam width; returns (M, T) int32.
    """
    num_rows = len(state[0])
    state = tuple(np.repeat(array, k, axis=0) for array in state)
    scores = np.full((num_rows, k), -np.inf)
    scores[:, 0] = 0.0  # at first all beams are the same <START>: keep only one of them alive
    words = np.full(num_rows * k, start)
    finished = np.zeros(num_rows * k, dtype=bool)
    history = np.full((num_rows, k, max_length), null, dtype=np.int32)
    image_rows = np.arange(num_rows)[:, None]
    for t in range(max_length):
        log_probs, state = step(words, state)
        V = log_probs.shape[1]
        log_probs[finished] = -np.inf
        log_probs[finished, null] = 0.0
        candidates = (scores.reshape(num_rows * k, 1) + log_probs).reshape(num_rows, k * V)
        best = np.argpartition(-candidates, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(candidates, best, 1), 1), 1)
        beams, words = best // V, best % V  # (M, k): which beam each candidate extends, and its word
        scores = np.take_along_axis(candidates, best, axis=1)
        rows = (image_rows * k + beams).ravel()
        state = tuple(array[rows] for array in state)
        finished = finished[rows]
        history = history[image_rows, beams]
        history[:, :, t] = words
        words = words.ravel()
        if end is not None:
            finished = finished | (words == end)
        if finished.all():
            break
    return history[:, 0]  # beams are sorted by score, best first
