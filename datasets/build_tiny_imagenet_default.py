"""Build the TinyImageNet-format default dataset from Fashion-MNIST.

Ten classes (Fashion-MNIST's), each image 64x64 RGB holding one real Fashion-MNIST item, scaled and placed at
random, tinted with a random colour, on a random background; item and background always contrast (a light
item on a dark background or the reverse), so the item stays clearly visible while neither its position nor
its colour says which class it is. Training images come from Fashion-MNIST's training set, validation and test
images from its test set. The files follow the classic TinyImageNet-100-A layout exactly (see
asgn3/data_utils.py): wnids.txt, words.txt, train/<wnid>/images/*.JPEG with train/<wnid>/<wnid>_boxes.txt,
val/images/ with val/val_annotations.txt, test/images/ with test/test_annotations.txt.

The output depends only on the seed and the sizes: building twice gives identical bytes.
Usage: python -m datasets.build_tiny_imagenet_default [--out DIR] [--train-per-class N] [--seed S]
"""

import argparse
import shutil
from pathlib import Path

import numpy as np

from datasets.fashion_mnist import load_fashion_mnist
from datasets.item_render import backgrounds, hsv_to_rgb, paste_items, save_jpegs, to_uint8

IMAGE_SIZE = 64
SEED = 231
TRAIN_PER_CLASS = 5000
VAL_PER_CLASS = 100
TEST_PER_CLASS = 100
JPEG_QUALITY = 95

# One wnid-like id per Fashion-MNIST class ('n' and eight digits; not real WordNet ids), and the names that
# go to words.txt, most common first.
WNIDS = [f"n9{k:07d}" for k in range(10)]
WORDS = [
    "T-shirt, top, tee",
    "trouser, trousers, pants",
    "pullover, sweater, jumper",
    "dress, frock",
    "coat, overcoat",
    "sandal",
    "shirt",
    "sneaker, trainer, running shoe",
    "bag, handbag",
    "ankle boot, boot",
]


def pick_per_class(rng, y, counts):
    """
    Choose disjoint random subsets of indices, the same number from every class.

    Inputs:
    - rng: numpy Generator.
    - y: array (N,) of class labels in [0, 10).
    - counts: list of ints, the size per class of each subset.

    Returns:
    - subsets: list (one per count) of int arrays of length 10 * count, in random order.
    """
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(10)]
    subsets, start = [], 0
    for count in counts:
        if start + count > min(len(p) for p in per_class):
            raise ValueError(
                f"asked for {sum(counts)} images per class but Fashion-MNIST's split has only "
                f"{min(len(p) for p in per_class)}"
            )
        chosen = np.concatenate([p[start : start + count] for p in per_class])
        subsets.append(rng.permutation(chosen))
        start += count
    return subsets


def render_images(rng, items):
    """
    Render one item per 64x64 image: random size, position, tint and a contrasting background.

    Inputs:
    - rng: numpy Generator.
    - items: uint8 array (N, 28, 28) of Fashion-MNIST images.

    Returns a tuple of:
    - images: uint8 array (N, 64, 64, 3).
    - boxes: int array (N, 4) of x0, y0, x1, y1 (inclusive) around each item.
    """
    n = len(items)
    dark_background = rng.random(n) < 0.5
    canvas = backgrounds(rng, n, IMAGE_SIZE, dark_background)
    tint_value = np.where(dark_background, 0.7 + 0.3 * rng.random(n), 0.2 + 0.25 * rng.random(n))
    tints = hsv_to_rgb(rng.random(n), rng.random(n), tint_value)
    scale = rng.uniform(42.0, 62.0, size=n)
    top = rng.random(n) * (IMAGE_SIZE - scale)
    left = rng.random(n) * (IMAGE_SIZE - scale)
    boxes = paste_items(canvas, items, tints, top, left, scale)
    return to_uint8(canvas), boxes


def box_text(box):
    """The four box coordinates, tab separated, as in TinyImageNet's files."""
    return "\t".join(str(int(v)) for v in box)


def render_in_chunks(rng, items, chunk=2000):
    """render_images over a large batch, a chunk at a time to bound memory. Returns (images, boxes)."""
    parts = [render_images(rng, items[i : i + chunk]) for i in range(0, len(items), chunk)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def build(
    out_dir,
    seed=SEED,
    train_per_class=TRAIN_PER_CLASS,
    val_per_class=VAL_PER_CLASS,
    test_per_class=TEST_PER_CLASS,
    fashion_dir=None,
    verbose=True,
):
    """
    Build the dataset into out_dir (replacing what is there).

    Inputs:
    - out_dir: destination folder (it becomes the tiny-imagenet-100-A equivalent).
    - seed: seed of every random choice.
    - train_per_class, val_per_class, test_per_class: images per class in each split.
    - fashion_dir: folder of Fashion-MNIST's .gz files (default datasets/fashion-mnist).
    - verbose: print progress.

    Returns:
    - out_dir as a Path.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    X_train, y_train, X_test, y_test = load_fashion_mnist(fashion_dir)
    (train_idx,) = pick_per_class(rng, y_train, [train_per_class])
    val_idx, test_idx = pick_per_class(rng, y_test, [val_per_class, test_per_class])

    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "wnids.txt").write_text("".join(w + "\n" for w in WNIDS))
    (tmp / "words.txt").write_text("".join(f"{w}\t{words}\n" for w, words in zip(WNIDS, WORDS, strict=True)))

    if verbose:
        print(f"  rendering {len(train_idx)} training images ({train_per_class} per class)")
    images, boxes = render_in_chunks(rng, X_train[train_idx])
    labels = y_train[train_idx]
    for c, wnid in enumerate(WNIDS):
        folder = tmp / "train" / wnid
        (folder / "images").mkdir(parents=True)
        members = np.flatnonzero(labels == c)
        names = [f"{wnid}_{i}.JPEG" for i in range(len(members))]
        save_jpegs(images[members], [folder / "images" / name for name in names], JPEG_QUALITY)
        lines = [f"{name}\t{box_text(box)}\n" for name, box in zip(names, boxes[members], strict=True)]
        (folder / f"{wnid}_boxes.txt").write_text("".join(lines))

    for split, idx in (("val", val_idx), ("test", test_idx)):
        if verbose:
            print(f"  rendering {len(idx)} {split} images")
        images, boxes = render_in_chunks(rng, X_test[idx])
        (tmp / split / "images").mkdir(parents=True)
        names = [f"{split}_{i}.JPEG" for i in range(len(idx))]
        save_jpegs(images, [tmp / split / "images" / name for name in names], JPEG_QUALITY)
        lines = [
            f"{name}\t{WNIDS[c]}\t{box_text(box)}\n"
            for name, c, box in zip(names, y_test[idx], boxes, strict=True)
        ]
        (tmp / split / f"{split}_annotations.txt").write_text("".join(lines))

    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def main():
    from_here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=from_here / "default" / "tiny-imagenet-100-A")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    args = parser.parse_args()
    print(f"Building the TinyImageNet-format default in {args.out}")
    build(args.out, seed=args.seed, train_per_class=args.train_per_class)


if __name__ == "__main__":
    main()
