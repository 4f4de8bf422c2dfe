"""Build the COCO-format captioning default from Fashion-MNIST and the shipped pretrained CNN.

Each image is a 64x64 scene of one to three real Fashion-MNIST items of distinct classes, one per quadrant,
each tinted with a named colour, on a dark varied background. Five captions per image come from the small
grammar in caption_grammar.py (items and colours, count, relative positions, positions in the picture,
colour of each item): the language is generated, the images are real item photographs. Image features are
what the shipped PretrainedCNN computes: the raw feature is the conv9 output flattened (256 x 2 x 2 = 1024
values; it keeps where things are), the PCA feature its projection on the 512 principal directions of the
training features. The files follow the classic COCO captioning layout (see asgn3/coco_utils.py), plus
`<split>2014_scenes.json` describing every scene and `images/<split>2014/*.jpg`, which the url files point at.

Usage: python -m datasets.build_coco_default [--out DIR] [--seed S] [--random-model]
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.coco_utils import SPECIAL_TOKENS, save_coco_data
from asgn3.data_paths import DEFAULT_COCO_DIR, DEFAULT_PRETRAINED_MODEL, DEFAULT_TINY_IMAGENET_DIR
from asgn3.data_utils import load_tiny_imagenet
from datasets.caption_grammar import CELL_NAMES, COLOUR_NAMES, COLOURS, NOUNS, WORDS, describe
from datasets.fashion_mnist import load_fashion_mnist
from datasets.item_render import backgrounds, paste_items, save_jpegs, to_uint8

SEED = 2014
NUM_TRAIN, NUM_VAL = 10000, 1000
IMAGE_SIZE = 64
MAX_LENGTH = 17  # tokens per caption, with <START> and <END>, padded with <NULL>
PCA_DIM = 512
ITEM_COUNT_PROBS = (0.3, 0.4, 0.3)  # scenes of one, two and three items
JPEG_QUALITY = 90


def vocabulary():
    """idx_to_word (list) and word_to_idx (dict): the four special tokens first, then the grammar's words."""
    idx_to_word = list(SPECIAL_TOKENS) + WORDS
    return idx_to_word, {word: i for i, word in enumerate(idx_to_word)}


def encode(caption, word_to_idx):
    """A caption string as MAX_LENGTH token indices: <START> words <END>, then <NULL> padding."""
    tokens = ["<START>"] + caption.split() + ["<END>"]
    if len(tokens) > MAX_LENGTH:
        raise ValueError(
            f"caption {caption!r} has {len(tokens)} tokens with <START>/<END>; at most {MAX_LENGTH} fit"
        )
    return [word_to_idx[t] for t in tokens] + [word_to_idx["<NULL>"]] * (MAX_LENGTH - len(tokens))


def draw_scenes(rng, n, labels):
    """
    Choose the content of n scenes.

    Inputs:
    - rng: numpy Generator.
    - n: number of scenes.
    - labels: array (M,) of Fashion-MNIST labels of the pool the items come from.

    Returns a dict of arrays, with 3 item slots per scene (slots past `count` are unused):
    - count (n,): items in the scene; cell, label, colour, item (n, 3): quadrant, class, colour index and
      index into the pool of each slot; scale, top, left (n, 3): the item's size and placement in pixels.
    """
    count = rng.choice([1, 2, 3], size=n, p=ITEM_COUNT_PROBS)
    cell = np.argsort(rng.random((n, 4)), axis=1)[:, :3]
    label = np.argsort(rng.random((n, 10)), axis=1)[:, :3]  # distinct classes
    colour = rng.integers(0, len(COLOUR_NAMES), size=(n, 3))
    # A random pool image of the wanted class: sort the pool by class, then index into each class's block.
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(10))
    sizes = np.bincount(labels, minlength=10)
    item = order[starts[label] + (rng.random((n, 3)) * sizes[label]).astype(int)]
    half = IMAGE_SIZE // 2
    scale = rng.uniform(22.0, 30.0, size=(n, 3))
    top = (cell // 2) * half + rng.random((n, 3)) * (half - scale)
    left = (cell % 2) * half + rng.random((n, 3)) * (half - scale)
    return {
        "count": count,
        "cell": cell,
        "label": label,
        "colour": colour,
        "item": item,
        "scale": scale,
        "top": top,
        "left": left,
    }


def render_scenes(rng, scenes, pool):
    """
    Draw the scenes.

    Inputs:
    - rng: numpy Generator.
    - scenes: dict from draw_scenes.
    - pool: uint8 array (M, 28, 28) of Fashion-MNIST images.

    Returns a tuple of:
    - images: uint8 array (n, 64, 64, 3).
    - boxes: int array (n, 3, 4) of x0, y0, x1, y1 per used slot (zeros for unused slots).
    """
    n = len(scenes["count"])
    canvas = backgrounds(rng, n, IMAGE_SIZE, dark=np.ones(n, dtype=bool))
    palette = np.array([COLOURS[name] for name in COLOUR_NAMES])
    boxes = np.zeros((n, 3, 4), dtype=int)
    for slot in range(3):
        used = np.flatnonzero(scenes["count"] > slot)
        part = canvas[used]
        boxes[used, slot] = paste_items(
            part,
            pool[scenes["item"][used, slot]],
            palette[scenes["colour"][used, slot]],
            scenes["top"][used, slot],
            scenes["left"][used, slot],
            scenes["scale"][used, slot],
        )
        canvas[used] = part
    return to_uint8(canvas), boxes


def scene_items(scenes, boxes, pool_name, i):
    """The list of item dicts of scene i (noun, class, colour, cell, position, box, source image)."""
    return [
        {
            "noun": NOUNS[scenes["label"][i, s]],
            "class": int(scenes["label"][i, s]),
            "colour": COLOUR_NAMES[scenes["colour"][i, s]],
            "cell": int(scenes["cell"][i, s]),
            "position": CELL_NAMES[scenes["cell"][i, s]],
            "box": [int(v) for v in boxes[i, s]],
            "source": f"fashion-mnist {pool_name} {int(scenes['item'][i, s])}",
        }
        for s in range(scenes["count"][i])
    ]


def cnn_features(model, images, mean_image, batch_size=250):
    """
    The raw image features: the last conv block's output, flattened.

    Inputs:
    - model: PretrainedCNN.
    - images: uint8 array (N, 64, 64, 3).
    - mean_image: (3, 64, 64) mean training image of the CNN's data, subtracted first.
    - batch_size: images per forward pass.

    Returns:
    - features: float32 array (N, C * H' * W') (1024 for the shipped model).
    """
    last_conv = model.num_conv - 1
    rows = []
    for i in range(0, len(images), batch_size):
        X = images[i : i + batch_size].transpose(0, 3, 1, 2).astype(np.float32) - mean_image
        out, _ = model.forward(X, end=last_conv, mode="test")
        rows.append(out.reshape(len(X), -1))
    return np.concatenate(rows).astype(np.float32)


def fit_pca(features, dim):
    """
    Principal directions of a feature matrix.

    Inputs:
    - features: array (N, D), N >= dim.
    - dim: number of directions kept.

    Returns a tuple of:
    - mean: (D,) mean feature.
    - components: (dim, D) orthonormal rows, largest variance first, each signed so that its largest
      entry is positive (so the result does not depend on the SVD's sign choices).
    """
    mean = features.mean(axis=0, dtype=np.float64)
    _, _, Vt = np.linalg.svd(features - mean, full_matrices=False)
    components = Vt[:dim]
    signs = np.sign(components[np.arange(dim), np.abs(components).argmax(axis=1)])
    return mean, components * signs[:, None]


def build(
    out_dir,
    model,
    mean_image,
    seed=SEED,
    num_train=NUM_TRAIN,
    num_val=NUM_VAL,
    fashion_dir=None,
    verbose=True,
):
    """
    Build the dataset into out_dir (replacing what is there).

    Inputs:
    - out_dir: destination folder (the equivalent of datasets/coco_captioning).
    - model: PretrainedCNN that computes the features.
    - mean_image: (3, 64, 64) mean image of the data the model was trained on.
    - seed: seed of every random choice.
    - num_train, num_val: number of images per split (num_train >= PCA_DIM).
    - fashion_dir: folder of Fashion-MNIST's .gz files (default datasets/fashion-mnist).
    - verbose: print progress.

    Returns:
    - out_dir as a Path.
    """
    out_dir = Path(out_dir).resolve()
    if num_train < PCA_DIM:
        raise ValueError(f"num_train must be at least {PCA_DIM} (the PCA dimension); got {num_train}")
    rng = np.random.default_rng(seed)
    X_train, y_train, X_test, y_test = load_fashion_mnist(fashion_dir)
    idx_to_word, word_to_idx = vocabulary()
    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    data = {"idx_to_word": idx_to_word, "word_to_idx": word_to_idx}
    # Training scenes use Fashion-MNIST's training images, validation scenes its test images.
    for split, n, pool, labels, pool_name in (
        ("train", num_train, X_train, y_train, "train"),
        ("val", num_val, X_test, y_test, "test"),
    ):
        if verbose:
            print(f"  rendering {n} {split} scenes and their captions")
        scenes = draw_scenes(rng, n, labels)
        images, boxes = render_scenes(rng, scenes, pool)
        folder = tmp / "images" / f"{split}2014"
        folder.mkdir(parents=True)
        names = [f"scene_{split}2014_{i:05d}.jpg" for i in range(n)]
        decoded = save_jpegs(images, [folder / name for name in names], JPEG_QUALITY, decode=True)
        # The urls point at where the images will be once the folder is in place.
        data[f"{split}_urls"] = [(out_dir / "images" / f"{split}2014" / name).as_uri() for name in names]
        captions, image_idxs, records = [], [], []
        for i in range(n):
            items = scene_items(scenes, boxes, pool_name, i)
            sentences = describe(items)
            captions += [encode(s, word_to_idx) for s in sentences]
            image_idxs += [i] * len(sentences)
            records.append({"file": names[i], "items": items, "captions": sentences})
        data[f"{split}_captions"] = np.array(captions, dtype=np.int32)
        data[f"{split}_image_idxs"] = np.array(image_idxs, dtype=np.int32)
        (tmp / f"{split}2014_scenes.json").write_text(json.dumps(records, indent=1) + "\n")
        if verbose:
            print(f"  computing the CNN features of the {n} {split} scenes")
        data[f"{split}_features"] = cnn_features(model, decoded, mean_image)

    save_coco_data(data, tmp, pca_features=False)
    mean, components = fit_pca(data["train_features"], PCA_DIM)
    for split in ("train", "val"):
        data[f"{split}_features"] = ((data[f"{split}_features"] - mean) @ components.T).astype(np.float32)
    save_coco_data(data, tmp, pca_features=True)

    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def load_model_and_mean(
    model_file=DEFAULT_PRETRAINED_MODEL, tiny_dir=DEFAULT_TINY_IMAGENET_DIR, random_model=False
):
    """
    The feature CNN and the mean image it expects.

    Inputs:
    - model_file: weights of the shipped model.
    - tiny_dir: the TinyImageNet-format default the model was trained on (for its mean image).
    - random_model: use a randomly initialised model of the same architecture instead (for development).

    Returns a tuple (model, mean_image (3, 64, 64) float32).
    """
    if random_model:
        from datasets.train_default_model import HIDDEN_DIM, NUM_FILTERS

        model = PretrainedCNN(num_classes=10, num_filters=NUM_FILTERS, hidden_dim=HIDDEN_DIM, seed=0)
    else:
        model = PretrainedCNN(h5_file=model_file)
    mean_image = load_tiny_imagenet(tiny_dir, subtract_mean=False, verbose=False)["mean_image"]
    return model, mean_image.astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_COCO_DIR)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--random-model", action="store_true", help="random weights (development only)")
    args = parser.parse_args()
    model, mean_image = load_model_and_mean(random_model=args.random_model)
    print(f"Building the COCO-format default in {args.out}")
    build(args.out, model, mean_image, seed=args.seed)


if __name__ == "__main__":
    main()
