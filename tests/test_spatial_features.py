"""Tests of the spatial features (datasets/build_spatial_features.py and load_coco_data's spatial option):
the grid is the conv block's map cell by cell in row-major order, the files are written beside the others
in the layout the loader reads, and a folder without them (the real download) gives a clear error."""

import h5py
import numpy as np
import pytest
from PIL import Image

from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.coco_utils import has_spatial_features, load_coco_data, save_coco_data, spatial_features_file
from datasets import build_spatial_features as spatial
from datasets.train_default_model import HIDDEN_DIM, NUM_FILTERS

SIZES = {"train": 3, "val": 2}


def small_model():
    """A random-weight model of the shipped model's shape (the grid's size and channels are the same)."""
    return PretrainedCNN(num_classes=10, num_filters=NUM_FILTERS, hidden_dim=HIDDEN_DIM, seed=0)


@pytest.fixture
def coco_folder(tmp_path):
    """A COCO-layout folder of 3 train and 2 val images (JPEG files the url files point at)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "coco_captioning"
    data = {"idx_to_word": ["<NULL>", "<START>", "<END>", "<UNK>"]}
    data["word_to_idx"] = {word: i for i, word in enumerate(data["idx_to_word"])}
    for split, n in SIZES.items():
        images = folder / "images" / split
        images.mkdir(parents=True)
        urls = []
        for i in range(n):
            path = images / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(path, quality=95)
            urls.append(path.as_uri())
        data[f"{split}_urls"] = urls
        data[f"{split}_captions"] = np.tile([[1, 3, 2]], (n, 1))
        data[f"{split}_image_idxs"] = np.arange(n)
        data[f"{split}_features"] = rng.standard_normal((n, 512)).astype(np.float32)
    save_coco_data(data, folder)
    return folder


def test_grid_features_are_the_feature_map_cell_by_cell():
    model = small_model()
    images = np.random.default_rng(1).integers(0, 256, size=(5, 64, 64, 3), dtype=np.uint8)
    mean_image = np.full((3, 64, 64), 100, dtype=np.float32)
    grid = spatial.grid_features(model, images, mean_image, batch_size=2)  # batches must not matter
    X = images.transpose(0, 3, 1, 2).astype(np.float32) - mean_image
    feature_map, _ = model.forward(X, end=spatial.GRID_LAYER, mode="test")
    assert feature_map.shape[2:] == (4, 4)
    assert grid.shape == (5, 16, feature_map.shape[1]) and grid.dtype == np.float32
    for i in range(4):
        for j in range(4):
            assert np.allclose(grid[:, 4 * i + j], feature_map[:, :, i, j], atol=1e-5)


def test_build_writes_files_that_load_coco_data_reads(coco_folder):
    assert not has_spatial_features(coco_folder)
    with pytest.raises(FileNotFoundError, match="only fc7 vectors: load it with spatial_features=False"):
        load_coco_data(coco_folder, spatial_features=True)

    model = small_model()
    spatial.build(coco_folder, model, np.zeros((3, 64, 64), np.float32), verbose=False)
    assert has_spatial_features(coco_folder)
    data = load_coco_data(coco_folder, spatial_features=True)
    for split, n in SIZES.items():
        with h5py.File(coco_folder / spatial_features_file(split)) as f:
            assert f["features"].dtype == np.float32 and f["features"].shape == (n, 16, NUM_FILTERS[7])
        assert data[f"{split}_features"].shape == (n, 16, NUM_FILTERS[7])
    # the rows follow the url files: the first val image's grid, computed directly
    first = np.asarray(Image.open(coco_folder / "images" / "val" / "0.jpg").convert("RGB"))[None]
    expected = spatial.grid_features(model, first, np.zeros((3, 64, 64), np.float32))
    assert np.allclose(data["val_features"][0], expected[0], atol=1e-5)
    assert load_coco_data(coco_folder)["train_features"].shape == (3, 512)  # the vectors are still there


def test_a_missing_image_is_a_clear_error(coco_folder):
    (coco_folder / "images" / "val" / "1.jpg").unlink()
    with pytest.raises(
        FileNotFoundError, match="1 images of val2014_urls.txt are missing.*build_defaults --force"
    ):
        spatial.build(coco_folder, small_model(), np.zeros((3, 64, 64), np.float32), verbose=False)
