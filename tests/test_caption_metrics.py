"""Tests of asgn3/caption_metrics.py: corpus BLEU against an independent implementation of the COCO
definition (clipped n-gram counts over all references, closest reference length for the brevity penalty),
special-token handling and the errors."""

from collections import Counter

import numpy as np
import pytest

from asgn3.caption_metrics import bleu_scores, tokenize


def reference_corpus_bleu(references, hypotheses, n_max):
    """Corpus BLEU-n_max written from Papineni et al. (2002) as the COCO evaluation computes it."""
    matches, totals = np.zeros(n_max), np.zeros(n_max)
    hyp_len = ref_len = 0
    for refs, hyp in zip(references, hypotheses, strict=True):
        refs, hyp = [r.split() for r in refs], hyp.split()
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]  # closest, shorter on ties
        for n in range(1, n_max + 1):
            counts = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
            best = Counter()
            for r in refs:
                best |= Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if np.any(matches == 0):
        return 0.0
    brevity = 1.0 if hyp_len > ref_len else np.exp(1 - ref_len / hyp_len)
    return float(brevity * np.exp(np.mean(np.log(matches / totals))))


REFS = [
    ["a cat sits on the mat", "there is a cat on the mat", "a cat on a mat"],
    ["a dog runs in the park", "the dog is running on grass"],
    ["two people ride bikes down the street", "people riding bicycles on a road"],
]
HYPS = ["a cat is on the mat", "a dog is running in the park", "two people riding bikes on the road"]


def test_bleu_matches_an_independent_implementation():
    scores = bleu_scores(REFS, HYPS)
    print(scores)
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4"}
    for n in range(1, 5):
        assert scores[f"bleu{n}"] == pytest.approx(reference_corpus_bleu(REFS, HYPS, n), rel=1e-9)
    assert scores["bleu4"] == 0.0  # no 4-gram of the hypotheses is in their references
    assert 0 < scores["bleu3"] < scores["bleu2"] < scores["bleu1"] <= 1
    with_match = ["a cat sits on the mat"] + HYPS[1:]
    expected = reference_corpus_bleu(REFS, with_match, 4)
    assert 0 < bleu_scores(REFS, with_match)["bleu4"] == pytest.approx(expected)


def test_bleu_uses_every_reference():
    # The hypothesis copies the second reference: with all references it is perfect, with only the first not.
    refs = [["a cat sits on the mat", "there is a cat on the mat"]]
    assert bleu_scores(refs, ["there is a cat on the mat"])["bleu4"] == pytest.approx(1.0)
    assert bleu_scores([refs[0][:1]], ["there is a cat on the mat"])["bleu4"] < 0.5


def test_brevity_penalty_and_corpus_level_counting():
    short = bleu_scores([["a cat sits on the mat"]], ["a cat sits"])
    assert short["bleu1"] == pytest.approx(np.exp(1 - 6 / 3))  # all unigrams match: only the penalty is left
    # corpus BLEU pools the counts: not the mean of sentence scores
    both = bleu_scores(REFS[:2], HYPS[:2])["bleu2"]
    means = np.mean([bleu_scores([r], [h])["bleu2"] for r, h in zip(REFS[:2], HYPS[:2], strict=True)])
    assert both == pytest.approx(reference_corpus_bleu(REFS[:2], HYPS[:2], 2))
    assert both != pytest.approx(means)


def test_special_tokens_and_case_are_ignored():
    plain = bleu_scores(REFS, HYPS)
    decorated_refs = [[f"<START> {r.upper()} <END>" for r in refs] for refs in REFS]
    decorated_hyps = [f"<START> {h} <END> <NULL> <NULL>" for h in HYPS]
    assert bleu_scores(decorated_refs, decorated_hyps) == pytest.approx(plain)
    assert tokenize("<START> A cat <END>") == ["a", "cat"]
    assert tokenize(["<START>", "A", "cat"]) == ["a", "cat"]


def test_no_match_scores_zero():
    assert bleu_scores([["a cat"]], ["dogs run fast"]) == {f"bleu{n}": 0.0 for n in range(1, 5)}
    assert bleu_scores([["a cat"]], [""]) == {f"bleu{n}": 0.0 for n in range(1, 5)}
    assert set(bleu_scores([["a cat"]], ["a cat"], max_n=2)) == {"bleu1", "bleu2"}


def test_bad_inputs():
    with pytest.raises(ValueError, match="one list of references per hypothesis"):
        bleu_scores(REFS, HYPS[:2])
    with pytest.raises(ValueError, match=r"references\[0\] should be a non-empty list"):
        bleu_scores(["a cat on the mat"], ["a cat"])
    with pytest.raises(ValueError, match="at least one hypothesis"):
        bleu_scores([], [])
