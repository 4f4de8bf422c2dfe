"""Build the spatial image features of the COCO-format default: a 4x4 grid of the shipped CNN's feature map.

The classic features are one vector per image, which leaves a captioning model's attention nothing to
look at. Here each image gets one vector per cell of a 4x4 grid: the output of the shipped PretrainedCNN's
conv block GRID_LAYER (128 channels on a 4x4 map for a 64x64 image, each cell seeing a 16x16-pixel
quarter of a quadrant and its surroundings). They are stored beside the other files of the default, in
the same style: `<split>2014_spatial_features.h5` with a dataset `features`, float32, (num_images, 16,
128), the 16 cells in row-major order (top left, ..., bottom right), rows aligned with the url files.
The images are read back from the default's JPEG files (the pixels its fc7 features were computed from).

Usage: python -m datasets.build_spatial_features [--coco-dir DIR]   (datasets.build_defaults calls build())
"""

import argparse
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import h5py
import numpy as np
from PIL import Image

from asgn3.coco_utils import SPLITS, spatial_features_file, urls_file
from asgn3.data_paths import DEFAULT_COCO_DIR
from datasets.build_coco_default import load_model_and_mean

GRID_LAYER = 7  # conv block 8 of the shipped model: 128 channels on a 4x4 map
BATCH_SIZE = 250


def read_images(coco_dir, split):
    """The images of a split as uint8 (N, H, W, 3), in the order of its url file (file:// URLs)."""
    urls = (Path(coco_dir) / urls_file(split)).read_text(encoding="utf-8").splitlines()
    paths = [Path(unquote(urlparse(url).path)) for url in urls]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images of {urls_file(split)} are missing (first: {missing[0]}): rebuild the "
            f"default with `python -m datasets.build_defaults --force`"
        )
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])


def grid_features(model, images, mean_image, layer=GRID_LAYER, batch_size=BATCH_SIZE):
    """
    The feature map of one conv block, one vector per grid cell.

    Inputs:
    - model: PretrainedCNN.
    - images: uint8 array (N, 64, 64, 3).
    - mean_image: (3, 64, 64) mean training image of the CNN's data, subtracted first.
    - layer: the conv block whose output is taken.
    - batch_size: images per forward pass.

    Returns:
    - features: float32 array (N, H' * W', C): cell (i, j) of the H' x W' map is row i * W' + j.
    """
    batches = []
    for start in range(0, len(images), batch_size):
        X = images[start : start + batch_size].transpose(0, 3, 1, 2).astype(np.float32) - mean_image
        out, _ = model.forward(X, end=layer, mode="test")
        N, C, H, W = out.shape
        batches.append(out.transpose(0, 2, 3, 1).reshape(N, H * W, C))
    return np.concatenate(batches).astype(np.float32)


def build(coco_dir, model, mean_image, verbose=True):
    """
    Write `<split>2014_spatial_features.h5` for both splits into coco_dir (a built COCO-format default).

    Inputs:
    - coco_dir: the folder of the COCO-format default (its url files and images are read).
    - model: the PretrainedCNN the default's other features come from.
    - mean_image: (3, 64, 64) mean image of the data the model was trained on.
    - verbose: print progress.
    """
    coco_dir = Path(coco_dir)
    for split in SPLITS:
        if verbose:
            print(f"  computing the 4x4 grid features of the {split} images")
        features = grid_features(model, read_images(coco_dir, split), mean_image)
        target = coco_dir / spatial_features_file(split)
        partial = target.with_name(target.name + ".building")
        with h5py.File(partial, "w") as f:
            f.create_dataset("features", data=features)
        shutil.move(partial, target)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco-dir", type=Path, default=DEFAULT_COCO_DIR)
    args = parser.parse_args()
    model, mean_image = load_model_and_mean()
    build(args.coco_dir, model, mean_image)


if __name__ == "__main__":
    main()
