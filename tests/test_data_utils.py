"""Tests of load_tiny_imagenet on a small TinyImageNet folder written here, and of load_models."""

import pickle
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

from asgn3 import data_paths
from asgn3.data_utils import load_models, load_tiny_imagenet, load_tiny_imagenet_val_boxes

WNIDS = ["n001", "n002", "n003"]
COLORS = {"n001": (200, 30, 30), "n002": (30, 200, 30), "n003": (30, 30, 200)}


def flat_image(color, size=64):
    """A flat-coloured image (JPEG keeps flat colours almost exactly)."""
    return np.broadcast_to(np.array(color, np.uint8), (size, size, 3)).copy()


def write_folder(root, test_annotations=True):
    """A TinyImageNet-layout folder: 3 classes, 2 or 3 training images each, 4 val and 3 test images."""
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text("n000\tunused\nn001\tred thing, crimson\nn002\tgreen\nn003\tblue, navy\n")
    for k, wnid in enumerate(WNIDS):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        names = [f"{wnid}_{j}.JPEG" for j in range(2 + (k == 0))]
        for name in names:
            iio.imwrite(images / name, flat_image(COLORS[wnid]), extension=".jpeg")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{name}\t0\t0\t63\t63\n" for name in names)
        )
    # A greyscale training image of the third class.
    iio.imwrite(
        root / "train" / "n003" / "images" / "grey.JPEG", np.full((64, 64), 90, np.uint8), extension=".jpeg"
    )
    with open(root / "train" / "n003" / "n003_boxes.txt", "a") as f:
        f.write("grey.JPEG\t0\t0\t63\t63\n")
    (root / "val" / "images").mkdir(parents=True)
    val = [("val_0.JPEG", "n003"), ("val_1.JPEG", "n001"), ("val_2.JPEG", "n002"), ("val_3.JPEG", "n001")]
    for name, wnid in val:
        iio.imwrite(root / "val" / "images" / name, flat_image(COLORS[wnid]), extension=".jpeg")
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"{name}\t{wnid}\t0\t0\t63\t63\n" for name, wnid in val)
    )
    (root / "test" / "images").mkdir(parents=True)
    test = [("test_2.JPEG", "n002"), ("test_0.JPEG", "n003"), ("test_1.JPEG", "n001")]
    for name, wnid in test:
        iio.imwrite(root / "test" / "images" / name, flat_image(COLORS[wnid]), extension=".jpeg")
    if test_annotations:
        (root / "test" / "test_annotations.txt").write_text(
            "".join(f"{name}\t{wnid}\t0\t0\t63\t63\n" for name, wnid in test)
        )
    return root


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "tiny")


def test_loads_every_split_with_labels_names_and_mean(folder):
    data = load_tiny_imagenet(folder, subtract_mean=False, verbose=False)
    assert data["class_names"] == [["red thing", "crimson"], ["green"], ["blue", "navy"]]
    assert data["X_train"].shape == (8, 3, 64, 64) and data["X_train"].dtype == np.float32
    np.testing.assert_array_equal(data["y_train"], [0, 0, 0, 1, 1, 2, 2, 2])
    # The greyscale image became three equal channels.
    grey = data["X_train"][7]
    np.testing.assert_array_equal(grey[0], grey[1])
    np.testing.assert_array_equal(grey[0], grey[2])
    assert abs(grey.mean() - 90) < 2
    # Val images come in the order of the annotation lines.
    np.testing.assert_array_equal(data["y_val"], [2, 0, 1, 0])
    reds = data["X_val"][[1, 3]].mean(axis=(2, 3))
    np.testing.assert_allclose(reds, [[200, 30, 30]] * 2, atol=3)
    # Test images are sorted by name and labelled from test_annotations.txt.
    np.testing.assert_array_equal(data["y_test"], [2, 0, 1])
    np.testing.assert_allclose(data["X_test"][0].mean(axis=(1, 2)), COLORS["n003"], atol=3)
    np.testing.assert_allclose(data["mean_image"], data["X_train"].mean(axis=0), rtol=1e-6)


def test_subtracts_the_training_mean_and_caps_the_training_set(folder):
    raw = load_tiny_imagenet(folder, subtract_mean=False, verbose=False)
    data = load_tiny_imagenet(folder, dtype=np.float64, verbose=False)
    assert data["X_train"].dtype == np.float64
    np.testing.assert_allclose(data["X_train"].mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(data["X_val"] + data["mean_image"], raw["X_val"], atol=1e-4)
    capped = load_tiny_imagenet(folder, max_train_per_class=1, verbose=False)
    np.testing.assert_array_equal(capped["y_train"], [0, 1, 2])


def test_without_test_annotations_y_test_is_none(tmp_path):
    data = load_tiny_imagenet(write_folder(tmp_path / "tiny", test_annotations=False), verbose=False)
    assert data["y_test"] is None and data["X_test"].shape == (3, 3, 64, 64)


def test_default_path_comes_from_data_paths(folder, monkeypatch):
    monkeypatch.setattr(data_paths, "tiny_imagenet_dir", lambda verbose=True: folder)
    assert load_tiny_imagenet(verbose=False)["X_train"].shape[0] == 8


def test_missing_or_malformed_folders_are_clear_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="get_tiny_imagenet_a.sh"):
        load_tiny_imagenet(tmp_path / "absent", verbose=False)
    (folder / "words.txt").write_text("n001\tred\nn002\tgreen\n")
    with pytest.raises(ValueError, match=r"no 'id<TAB>names' line for \['n003'\]"):
        load_tiny_imagenet(folder, verbose=False)
    (folder / "words.txt").write_text("n001\tred\nn002\tgreen\nn003\tblue\n")
    with open(folder / "val" / "val_annotations.txt", "a") as f:
        f.write("val_9.JPEG\tn999\t0\t0\t63\t63\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:5: expected 'file<TAB>class id'"):
        load_tiny_imagenet(folder, verbose=False)
    shutil.rmtree(folder / "val")
    with pytest.raises(FileNotFoundError, match="val_annotations.txt not found"):
        load_tiny_imagenet(folder, verbose=False)
    (folder / "train" / "n002" / "images" / "n002_1.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match="n002_1.JPEG is listed but missing"):
        load_tiny_imagenet(folder, verbose=False)
    iio.imwrite(
        folder / "train" / "n002" / "images" / "n002_1.JPEG", flat_image((1, 2, 3), 32), extension=".jpeg"
    )
    with pytest.raises(ValueError, match="expected a 64x64 image like the others, got 32x32"):
        load_tiny_imagenet(folder, verbose=False)


class Model:
    """Something picklable."""

    def __init__(self, value):
        self.value = value


def test_load_models_skips_files_that_are_not_pickles(tmp_path):
    with open(tmp_path / "a.pkl", "wb") as f:
        pickle.dump({"model": Model(1), "epoch": 3}, f)
    with open(tmp_path / "b.pkl", "wb") as f:
        pickle.dump(Model(2), f)
    (tmp_path / "notes.txt").write_text("not a pickle")
    (tmp_path / "empty.pkl").write_bytes(b"")
    models = load_models(tmp_path)
    assert sorted(models) == ["a.pkl", "b.pkl"]
    assert models["a.pkl"].value == 1 and models["b.pkl"].value == 2
    with pytest.raises(FileNotFoundError, match="not found"):
        load_models(tmp_path / "absent")


def test_a_classic_path_that_does_not_exist_means_the_kits_data(folder, monkeypatch, capsys):
    monkeypatch.setenv("ASGN3_DATA", "default")
    monkeypatch.setattr(data_paths, "DEFAULT_TINY_IMAGENET_DIR", folder)
    data = load_tiny_imagenet(folder.parent / "cs231n" / "datasets" / "tiny-imagenet-100-A", verbose=False)
    assert data["X_train"].shape[0] == 8
    assert capsys.readouterr().out.strip().endswith(f"using the kit's tiny-imagenet-100-A in {folder}")


def test_val_boxes_come_in_the_order_of_x_val(folder):
    annotations = folder / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    lines[2] = lines[2].replace("0\t0\t63\t63", "3\t4\t50\t61")
    annotations.write_text("\n".join(lines) + "\n")
    boxes = load_tiny_imagenet_val_boxes(folder)
    assert boxes.shape == (4, 4) and boxes.dtype == np.int64
    np.testing.assert_array_equal(boxes[2], [3, 4, 50, 61])
    np.testing.assert_array_equal(boxes[[0, 1, 3]], [[0, 0, 63, 63]] * 3)
    annotations.write_text("val_0.JPEG\tn003\t0\t0\n")
    with pytest.raises(ValueError, match="val_annotations.txt:1: expected"):
        load_tiny_imagenet_val_boxes(folder)
