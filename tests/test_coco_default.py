"""Tests of the COCO-format captioning default (datasets/build_coco_default.py and caption_grammar.py).

The captions are checked against each scene's description by a small parser written here, independently
of the grammar that generated them: every item is named with its colour, counts, relations between items
and positions in the picture must all be true of the scene.
"""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.coco_utils import decode_captions, load_coco_data
from asgn3.data_paths import DEFAULT_COCO_DIR
from asgn3.image_utils import image_from_url
from datasets import build_coco_default as builder
from datasets import caption_grammar
from datasets.train_default_model import HIDDEN_DIM, NUM_FILTERS

NOUNS = set(caption_grammar.NOUNS)
COLOURS = set(caption_grammar.COLOURS)
POSITIONS = {("top", "left"): 0, ("top", "right"): 1, ("bottom", "left"): 2, ("bottom", "right"): 3}
COUNTS = {"one": 1, "two": 2, "three": 3}


def find_mentions(words):
    """(first word index, noun index, noun, colour or None) of every item named in a caption."""
    mentions = []
    for i, word in enumerate(words):
        if word not in NOUNS:
            continue
        colour = words[i - 1] if i > 0 and words[i - 1] in COLOURS else None
        start = i - 1 if colour else i
        if start > 0 and words[start - 1] in ("a", "an"):
            start -= 1
            assert (words[start] == "an") == (words[start + 1][0] in "aeiou"), f"article in {words}"
        mentions.append((start, i, word, colour))
    return mentions


def relation_holds(between, a, b):
    """True when the words between two mentions (e.g. 'above and left of') describe cells a -> b truly."""
    words = [w for w in between if w not in ("which", "is", "are")]
    directions = {"above", "below", "left", "right"}
    if not set(words) & directions or not set(words) <= directions | {"of", "and"}:
        return None  # not a relation (a list, say)
    (ra, ca), (rb, cb) = divmod(a, 2), divmod(b, 2)
    vertical = "above" if ra < rb else "below" if ra > rb else None
    horizontal = "left" if ca < cb else "right" if ca > cb else None
    said_vertical = next((w for w in words if w in ("above", "below")), None)
    said_horizontal = next((w for w in words if w in ("left", "right")), None)
    return said_vertical == vertical and said_horizontal == horizontal


def check_caption(sentence, items):
    """Assert that a decoded caption (with <START>/<END>) is true of the scene's items."""
    words = sentence.split()
    assert words[0] == "<START>" and words[-1] == "<END>" and len(words) <= 17, sentence
    words = words[1:-1]
    by_noun = {it["noun"]: it for it in items}
    mentions = find_mentions(words)
    assert sorted(m[2] for m in mentions) == sorted(by_noun), f"{sentence} names other items than {items}"
    for _, i, noun, colour in mentions:
        if colour is not None:
            assert colour == by_noun[noun]["colour"], f"{sentence}: the {noun} is {by_noun[noun]['colour']}"
        if words[i + 1 : i + 2] in (["is"], ["are"]):
            assert words[i + 2] == by_noun[noun]["colour"], f"{sentence}: the {noun} is not {words[i + 2]}"
    for k, word in enumerate(words):
        if word in COUNTS and words[k + 1] in ("item", "items"):
            assert COUNTS[word] == len(items), f"{sentence}: the scene has {len(items)} items"
        if tuple(words[k : k + 2]) in POSITIONS:
            cell = POSITIONS[tuple(words[k : k + 2])]
            before = [m for m in mentions if m[1] < k]
            after = [m for m in mentions if m[0] > k]
            # a position follows its item ("a red bag top left", "a bag in the top left") or, at the start
            # of a caption, precedes it ("in the top left a red bag")
            owner = before[-1] if before else after[0]
            assert by_noun[owner[2]]["cell"] == cell, (
                f"{sentence}: the {owner[2]} is not at {words[k : k + 2]}"
            )
    for (_, i, noun_a, _), (start_b, _, noun_b, _) in zip(mentions[:-1], mentions[1:], strict=True):
        holds = relation_holds(words[i + 1 : start_b], by_noun[noun_a]["cell"], by_noun[noun_b]["cell"])
        assert holds is not False, f"{sentence}: wrong relation between the {noun_a} and the {noun_b}"


def check_split(data, records, split):
    """Every caption of a split against its scene; at least three phrasings per image."""
    captions, idxs = data[f"{split}_captions"], data[f"{split}_image_idxs"]
    sentences = decode_captions(captions, data["idx_to_word"])
    per_image = {}
    for sentence, idx in zip(sentences, idxs, strict=True):
        check_caption(sentence, records[idx]["items"])
        per_image.setdefault(int(idx), set()).add(sentence)
    assert len(per_image) == len(records)
    assert min(len(s) for s in per_image.values()) >= 3
    return sentences


def tree_digest(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def small_model():
    return PretrainedCNN(num_classes=10, num_filters=NUM_FILTERS, hidden_dim=HIDDEN_DIM, seed=0)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    """600 training and 60 validation scenes, features from a random-weight model of the shipped shape."""
    out = tmp_path_factory.mktemp("coco") / "coco_captioning"
    builder.build(
        out,
        small_model(),
        np.zeros((3, 64, 64), np.float32),
        seed=3,
        num_train=600,
        num_val=60,
        verbose=False,
    )
    return out


@pytest.mark.slow
def test_same_seed_gives_identical_bytes(small_build, tmp_path):
    again = tmp_path / "coco_captioning"  # same folder name: the url files hold absolute paths
    builder.build(
        again,
        small_model(),
        np.zeros((3, 64, 64), np.float32),
        seed=3,
        num_train=600,
        num_val=60,
        verbose=False,
    )
    first, second = tree_digest(small_build), tree_digest(again)
    assert len(first) == 660 + 10  # images; captions, vocab, 4 feature files, 2 url and 2 scene files
    urls = {name for name in first if name.endswith("_urls.txt")}
    assert urls == {"train2014_urls.txt", "val2014_urls.txt"}
    for name in urls:
        first.pop(name), second.pop(name)
    assert first == second
    lines = (again / "val2014_urls.txt").read_text().splitlines()
    assert lines == [
        line.replace(str(small_build), str(again.resolve()))
        for line in (small_build / "val2014_urls.txt").read_text().splitlines()
    ]


def test_loader_reads_the_classic_layout(small_build):
    for pca, dim in ((True, 512), (False, 1024)):
        data = load_coco_data(small_build, pca_features=pca)
        assert data["train_features"].shape == (600, dim) and data["val_features"].shape == (60, dim)
        assert data["train_features"].dtype == np.float32
    assert data["train_captions"].shape == (3000, 17) and data["train_captions"].dtype == np.int32
    assert data["val_captions"].shape == (300, 17) and data["val_image_idxs"].dtype == np.int32
    assert data["idx_to_word"][:4] == ["<NULL>", "<START>", "<END>", "<UNK>"]
    assert all(data["word_to_idx"][w] == i for i, w in enumerate(data["idx_to_word"]))
    assert data["train_urls"].shape == (600,) and data["val_urls"].shape == (60,)
    raw = data["train_features"]
    assert raw.min() >= 0  # after the last ReLU
    pca = load_coco_data(small_build)["train_features"]
    assert np.allclose(pca.mean(axis=0), 0, atol=1e-3)  # centred on the training mean
    variances = pca.var(axis=0)
    assert np.all(np.diff(variances[:50]) <= 1e-6)  # the principal directions come first


def test_every_caption_matches_its_scene(small_build):
    data = load_coco_data(small_build)
    for split in ("train", "val"):
        records = json.loads((small_build / f"{split}2014_scenes.json").read_text())
        check_split(data, records, split)


def test_parser_catches_false_captions():
    items = [{"noun": "dress", "colour": "red", "cell": 0}, {"noun": "bag", "colour": "blue", "cell": 3}]
    check_caption("<START> a red dress above and left of a blue bag <END>", items)
    for wrong in (
        "a blue dress above and left of a blue bag",
        "a red dress left of a blue bag",
        "a red dress below and right of a blue bag",
        "a picture of three items a dress and a bag",
        "the dress is red and the bag is white",
        "a red dress bottom right and a blue bag top left",
        "a red dress and a blue coat",
        "an red dress and a blue bag",
    ):
        with pytest.raises(AssertionError):
            check_caption(f"<START> {wrong} <END>", items)


def test_scenes_match_their_images(small_build):
    """Boxes lie in the named quadrant, and the brightest pixels of each item have its named colour."""
    records = json.loads((small_build / "val2014_scenes.json").read_text())
    urls = (small_build / "val2014_urls.txt").read_text().splitlines()
    palette_names = list(caption_grammar.COLOURS)
    palette = np.array([caption_grammar.COLOURS[n] for n in palette_names])
    palette = palette / palette.max(axis=1, keepdims=True)
    for record, url in zip(records, urls, strict=True):
        assert url.startswith("file://") and url.endswith(record["file"])
        image = image_from_url(url)
        assert image.shape == (64, 64, 3)
        for item in record["items"]:
            x0, y0, x1, y1 = item["box"]
            row, col = divmod(item["cell"], 2)
            assert col * 32 <= x0 < x1 < (col + 1) * 32 and row * 32 <= y0 < y1 < (row + 1) * 32
            patch = image[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3) / 255.0
            bright = patch[patch.max(axis=1) >= np.quantile(patch.max(axis=1), 0.8)].mean(axis=0)
            guess = palette_names[np.argmin(((bright / bright.max() - palette) ** 2).sum(axis=1))]
            assert guess == item["colour"], f"{record['file']}: the {item['noun']} looks {guess}"


def test_grammar_fits_17_tokens_for_every_layout():
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(2000):
        n = rng.integers(1, 4)
        cells = rng.permutation(4)[:n]
        nouns = rng.permutation(caption_grammar.NOUNS)[:n]
        items = [
            {"noun": str(noun), "colour": str(rng.choice(list(COLOURS))), "cell": int(cell)}
            for noun, cell in zip(nouns, cells, strict=True)
        ]
        captions = caption_grammar.describe(items)
        assert len(set(captions)) == len(caption_grammar.PHRASINGS)
        for caption in captions:
            check_caption(f"<START> {caption} <END>", items)
            lengths.append(len(caption.split()) + 2)
    assert max(lengths) <= 17
    with pytest.raises(ValueError, match="distinct"):
        caption_grammar.describe([{"noun": "bag", "colour": "red", "cell": 0}] * 2)


def test_built_default_has_the_classic_shapes_and_true_captions():
    """The default that `bash kit.sh setup` builds: >= 10,000 training and 1,000 validation images."""
    if not (DEFAULT_COCO_DIR / "coco2014_captions.h5").is_file():
        raise FileNotFoundError(f"{DEFAULT_COCO_DIR} is missing: run `bash kit.sh setup` first")
    data = load_coco_data(DEFAULT_COCO_DIR)
    raw = load_coco_data(DEFAULT_COCO_DIR, pca_features=False)
    assert data["train_features"].shape[0] >= 10000 and data["val_features"].shape[0] >= 1000
    assert data["train_features"].shape[1] == 512 and raw["train_features"].shape[1] > 512
    assert data["train_captions"].shape[1] == 17
    for split in ("train", "val"):
        records = json.loads((DEFAULT_COCO_DIR / f"{split}2014_scenes.json").read_text())
        assert len(records) == len(data[f"{split}_urls"])
        check_split(data, records, split)
    first = Image.open(data["val_urls"][0].removeprefix("file://"))
    assert first.size == (64, 64)
