"""Tests of the TinyImageNet-format default (datasets/build_tiny_imagenet_default.py and item_render.py)."""

import hashlib

import numpy as np
import pytest

from asgn3.data_paths import DEFAULT_TINY_IMAGENET_DIR
from asgn3.data_utils import load_tiny_imagenet
from datasets import build_tiny_imagenet_default as builder
from datasets import item_render


def tree_digest(folder):
    """Map every file under folder (relative path) to the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    """A small build: 60 training, 10 validation and 10 test images per class."""
    out = tmp_path_factory.mktemp("tiny") / "tiny-imagenet-100-A"
    builder.build(out, seed=5, train_per_class=60, val_per_class=10, test_per_class=10, verbose=False)
    return out


def test_same_seed_gives_identical_bytes(small_build, tmp_path):
    again = builder.build(
        tmp_path / "again", seed=5, train_per_class=60, val_per_class=10, test_per_class=10, verbose=False
    )
    first, second = tree_digest(small_build), tree_digest(again)
    assert len(first) == 10 * 60 + 10 * 10 * 2 + 10 + 2 + 2  # images, boxes files, wnids, words, annotations
    assert first == second
    other = builder.build(
        tmp_path / "other", seed=6, train_per_class=60, val_per_class=10, test_per_class=10, verbose=False
    )
    assert tree_digest(other) != first


def test_loader_reads_the_classic_layout(small_build):
    data = load_tiny_imagenet(small_build, subtract_mean=False, verbose=False)
    assert data["X_train"].shape == (600, 3, 64, 64) and data["X_val"].shape == (100, 3, 64, 64)
    assert data["X_test"].shape == (100, 3, 64, 64)
    for split in ("train", "val", "test"):
        assert np.array_equal(
            np.bincount(data[f"y_{split}"], minlength=10), np.full(10, 60 if split == "train" else 10)
        )
    assert data["class_names"][0][0] == "T-shirt" and data["class_names"][9][0] == "ankle boot"
    wnids = (small_build / "wnids.txt").read_text().split()
    assert len(wnids) == 10 and all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    assert data["mean_image"].shape == (3, 64, 64)


def test_boxes_frame_the_item(small_build):
    """Inside each box the image differs from the background colour; the box is within the image."""
    wnid = (small_build / "wnids.txt").read_text().split()[3]
    lines = (small_build / "train" / wnid / f"{wnid}_boxes.txt").read_text().splitlines()
    assert len(lines) == 60
    for line in lines[:10]:
        name, x0, y0, x1, y1 = line.split("\t")
        x0, y0, x1, y1 = map(int, (x0, y0, x1, y1))
        assert 0 <= x0 < x1 <= 63 and 0 <= y0 < y1 <= 63
        assert (x1 - x0) >= 10 and (y1 - y0) >= 10  # items are drawn at 42 to 62 pixels
        assert (small_build / "train" / wnid / "images" / name).is_file()
    val_lines = (small_build / "val" / "val_annotations.txt").read_text().splitlines()
    assert len(val_lines) == 100 and all(len(line.split("\t")) == 6 for line in val_lines)


@pytest.mark.slow
def test_neither_colour_nor_position_gives_the_class_away():
    """A nearest-class-mean rule on mean colour or on box centre stays near chance (10%)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 300)
    X_train, y_train, _, _ = builder.load_fashion_mnist()
    items = np.concatenate([X_train[y_train == c][:300] for c in range(10)])
    images, boxes = builder.render_images(rng, items)
    colour = images.reshape(len(images), -1, 3).mean(axis=1)
    centre = np.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], axis=1) / 2.0
    train, test = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
    for feature in (colour, centre):
        means = np.stack([feature[train & (labels == c)].mean(axis=0) for c in range(10)])
        guess = np.argmin(((feature[test][:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
        accuracy = np.mean(guess == labels[test])
        print(f"nearest-class-mean accuracy: {accuracy:.3f}")
        assert accuracy < 0.25


def test_item_contrasts_with_background():
    """Pasting changes the pixels under the item clearly: the item stays visible."""
    rng = np.random.default_rng(1)
    X_train, _, _, _ = builder.load_fashion_mnist()
    n = 50
    dark = rng.random(n) < 0.5
    canvas = item_render.backgrounds(rng, n, 64, dark)
    before = canvas.copy()
    tints = item_render.hsv_to_rgb(rng.random(n), rng.random(n), np.where(dark, 0.85, 0.3))
    boxes = item_render.paste_items(
        canvas, X_train[:n], tints, np.full(n, 10.0), np.full(n, 10.0), np.full(n, 44.0)
    )
    diff = np.abs(canvas - before).sum(axis=3)
    # The upper quartile of the change inside each box: the item's own pixels, whatever its shape.
    box_change = np.array(
        [
            np.percentile(d[y0 : y1 + 1, x0 : x1 + 1], 75)
            for d, (x0, y0, x1, y1) in zip(diff, boxes, strict=True)
        ]
    )
    print("smallest changes under the items:", np.sort(box_change)[:5])
    assert np.all(box_change > 0.4)
    assert np.all((boxes[:, :2] >= 10) & (boxes[:, 2:] <= 54))


def test_hsv_to_rgb_primaries():
    h = np.array([0.0, 1 / 3, 2 / 3, 0.5])
    rgb = item_render.hsv_to_rgb(h, np.ones(4), np.ones(4))
    assert np.allclose(rgb, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]])
    assert np.allclose(item_render.hsv_to_rgb(np.array([0.3]), np.zeros(1), np.array([0.4])), 0.4)


def test_built_default_loads_with_classic_shapes():
    """The default that `bash kit.sh setup` builds: 10 classes, >= 1000 training images each."""
    if not (DEFAULT_TINY_IMAGENET_DIR / "wnids.txt").is_file():
        raise FileNotFoundError(f"{DEFAULT_TINY_IMAGENET_DIR} is missing: run `bash kit.sh setup` first")
    data = load_tiny_imagenet(DEFAULT_TINY_IMAGENET_DIR, max_train_per_class=2, verbose=False)
    keys = {"class_names", "X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean_image"}
    assert set(data) >= keys
    assert data["X_val"].shape == (1000, 3, 64, 64) and data["X_test"].shape == (1000, 3, 64, 64)
    assert data["X_val"].dtype == np.float32 and len(data["class_names"]) == 10
    assert np.array_equal(np.bincount(data["y_val"]), np.full(10, 100))
    assert np.array_equal(np.bincount(data["y_test"]), np.full(10, 100))
    wnids = (DEFAULT_TINY_IMAGENET_DIR / "wnids.txt").read_text().split()
    for wnid in wnids:
        boxes = (DEFAULT_TINY_IMAGENET_DIR / "train" / wnid / f"{wnid}_boxes.txt").read_text().splitlines()
        assert len(boxes) >= 1000
