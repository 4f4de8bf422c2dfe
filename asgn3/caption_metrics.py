"""Caption metrics: corpus BLEU-1..4 of generated captions against all reference captions of each image.

This is how the COCO caption evaluation scores a model: every image has several human captions, a
generated caption gets credit for n-grams found in any of them (clipped counts), and the brevity penalty
compares the corpus length with the reference lengths closest to each hypothesis. The counting is done
by NLTK's maintained `corpus_bleu` (pure Python, needs no NLTK data download), without smoothing, as in
the COCO evaluation: a corpus with no matching n-gram of some order k <= n scores 0 for BLEU-n (NLTK
returns about 1e-78 there; we report the 0 it stands for).

CIDEr-D is not offered: the only implementation of it (pycocoevalcap) is unmaintained since 2020 and
ships some 100 MB of Java tools.
"""

import warnings

from nltk.translate.bleu_score import corpus_bleu, modified_precision

SKIPPED_TOKENS = frozenset({"<NULL>", "<START>", "<END>"})


def tokenize(caption):
    """
    Split a caption into lowercase words, dropping the special tokens <NULL>, <START> and <END>.

    Inputs:
    - caption: a string, or a sequence of words

    Returns:
    - list of words
    """
    words = caption.split() if isinstance(caption, str) else list(caption)
    return [word.lower() for word in words if word not in SKIPPED_TOKENS]


def bleu_scores(references, hypotheses, max_n=4):
    """
    Corpus BLEU-1 to BLEU-max_n of hypotheses against all the references of their image.

    Inputs:
    - references: list of length M; references[i] is the list of reference captions (strings or word
      lists) of the i-th image
    - hypotheses: list of length M of generated captions (strings or word lists)
    - max_n: highest n-gram order

    Returns:
    - dict {'bleu1': float, ..., f'bleu{max_n}': float}, each in [0, 1]; BLEU-n is the geometric mean of
      the 1..n-gram precisions times the brevity penalty
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            f"expected one list of references per hypothesis, got {len(references)} reference "
            f"lists for {len(hypotheses)} hypotheses"
        )
    if not hypotheses:
        raise ValueError("expected at least one hypothesis, got none")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(
                f"references[{i}] should be a non-empty list of reference captions, got {refs!r}"
            )
    refs_tokens = [[tokenize(ref) for ref in refs] for refs in references]
    hyps_tokens = [tokenize(hyp) for hyp in hypotheses]
    weights = [tuple([1.0 / n] * n) for n in range(1, max_n + 1)]
    if sum(len(hyp) for hyp in hyps_tokens) == 0:
        return {f"bleu{n}": 0.0 for n in range(1, max_n + 1)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns when an n-gram order has no match; the score is then 0
        scores = corpus_bleu(refs_tokens, hyps_tokens, weights=weights)
    # clipped n-gram matches of each order over the corpus (the numerators of the modified precisions)
    pairs = list(zip(refs_tokens, hyps_tokens, strict=True))
    matched = [
        sum(modified_precision(refs, hyp, n).numerator for refs, hyp in pairs) for n in range(1, max_n + 1)
    ]
    return {
        f"bleu{n}": float(score) if min(matched[:n]) > 0 else 0.0 for n, score in enumerate(scores, start=1)
    }
