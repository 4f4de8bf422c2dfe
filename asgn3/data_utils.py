"""Loaders for TinyImageNet (the images the pretrained CNN classifies) and for pickled models.

A TinyImageNet folder has this layout (the classic TinyImageNet-100-A, or the built-in default made
from Fashion-MNIST by `python -m datasets.build_defaults`):
  wnids.txt                       one class id a line; the line order is the label
  words.txt                       id<TAB>name, other name
  train/<id>/<id>_boxes.txt       file<TAB>x0<TAB>y0<TAB>x1<TAB>y1, one line per training image
  train/<id>/images/*.JPEG
  val/val_annotations.txt         file<TAB>id<TAB>x0<TAB>y0<TAB>x1<TAB>y1
  val/images/*.JPEG
  test/images/*.JPEG              and optionally test/test_annotations.txt like the val annotations
"""

import pickle
from pathlib import Path

import numpy as np

from asgn3 import data_paths
from asgn3.image_utils import read_rgb_image

GET_DATA_HINT = (
    "run datasets/get_tiny_imagenet_a.sh for the real TinyImageNet-100-A, or "
    "`bash kit.sh setup` for the built-in default, and call load_tiny_imagenet() without a path"
)


def _read_lines(path):
    """The non-empty lines of a text file, split on tabs; a missing file says how to get the data."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: this is not a complete TinyImageNet folder; {GET_DATA_HINT}"
        )
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def _existing(path):
    """The path itself, or a FileNotFoundError that says the folder is incomplete."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is listed but missing: the TinyImageNet folder is incomplete; {GET_DATA_HINT}"
        )
    return path


def _read_images(paths, dtype, image_size):
    """Read image files into one array (N, 3, image_size, image_size) of the given dtype."""
    X = np.empty((len(paths), 3, image_size, image_size), dtype=dtype)
    for i, path in enumerate(paths):
        img = read_rgb_image(_existing(path))
        if img.shape[:2] != (image_size, image_size):
            raise ValueError(
                f"{path}: expected a {image_size}x{image_size} image like the others, got "
                f"{img.shape[1]}x{img.shape[0]}"
            )
        X[i] = img.transpose(2, 0, 1)
    return X


def _labels_from_annotations(lines, wnid_to_label, where):
    """File names and integer labels from annotation lines `file<TAB>id<TAB>...`."""
    names, labels = [], []
    for number, fields in enumerate(lines, start=1):
        if len(fields) < 2 or fields[1] not in wnid_to_label:
            raise ValueError(
                f"{where}:{number}: expected 'file<TAB>class id' with an id of wnids.txt, got "
                f"{chr(9).join(fields)!r}"
            )
        names.append(fields[0])
        labels.append(wnid_to_label[fields[1]])
    return names, np.array(labels, dtype=np.int64)


def load_tiny_imagenet(
    path=None, dtype=np.float32, subtract_mean=True, max_train_per_class=None, verbose=True
):
    """
    Load a TinyImageNet folder (layout in the module docstring) into arrays.

    Inputs:
    - path: the folder; None picks it with asgn3.data_paths.tiny_imagenet_dir() (the real download
      when present, else the built-in default); so does a classic path that does not exist, such as
      'cs231n/datasets/tiny-imagenet-100-A'.
    - dtype: type of the image arrays.
    - subtract_mean: subtract the mean training image from every split.
    - max_train_per_class: load at most this many training images per class (None: all).
    - verbose: say which folder is used.

    Returns a dict with:
    - class_names: list with, for each label, the list of names of the class (from words.txt).
    - X_train (N_tr, 3, 64, 64), y_train (N_tr,) int64; X_val, y_val; X_test, y_test (y_test is
      None without test/test_annotations.txt).
    - mean_image: (3, 64, 64) mean of the training images (before any subtraction).
    """
    path = (
        data_paths.tiny_imagenet_dir(verbose=verbose)
        if path is None
        else data_paths.resolve_classic_path(path)
    )
    if not path.is_dir():
        raise FileNotFoundError(f"TinyImageNet folder {path} not found: {GET_DATA_HINT}")

    wnids = [fields[0].strip() for fields in _read_lines(path / "wnids.txt")]
    if not wnids:
        raise ValueError(f"{path / 'wnids.txt'} lists no class ids")
    wnid_to_label = {wnid: label for label, wnid in enumerate(wnids)}
    wnid_to_words = {fields[0]: fields[1] for fields in _read_lines(path / "words.txt") if len(fields) >= 2}
    missing = [wnid for wnid in wnids if wnid not in wnid_to_words]
    if missing:
        raise ValueError(
            f"{path / 'words.txt'} has no 'id<TAB>names' line for {missing[:5]} "
            f"({len(missing)} of the ids in wnids.txt)"
        )
    class_names = [[word.strip() for word in wnid_to_words[wnid].split(",")] for wnid in wnids]

    train_files, y_train = [], []
    for label, wnid in enumerate(wnids):
        lines = _read_lines(path / "train" / wnid / f"{wnid}_boxes.txt")[:max_train_per_class]
        train_files += [path / "train" / wnid / "images" / fields[0] for fields in lines]
        y_train += [label] * len(lines)
    if not train_files:
        raise ValueError(f"{path / 'train'}: the *_boxes.txt files list no training images")
    image_size = read_rgb_image(_existing(train_files[0])).shape[0]
    X_train = _read_images(train_files, dtype, image_size)
    y_train = np.array(y_train, dtype=np.int64)

    val_annotations = path / "val" / "val_annotations.txt"
    val_names, y_val = _labels_from_annotations(_read_lines(val_annotations), wnid_to_label, val_annotations)
    X_val = _read_images([path / "val" / "images" / name for name in val_names], dtype, image_size)

    test_dir = path / "test" / "images"
    if not test_dir.is_dir():
        raise FileNotFoundError(
            f"{test_dir} not found: this is not a complete TinyImageNet folder; {GET_DATA_HINT}"
        )
    test_names = sorted(p.name for p in test_dir.iterdir() if not p.name.startswith("."))
    X_test = _read_images([test_dir / name for name in test_names], dtype, image_size)
    y_test = None
    test_annotations = path / "test" / "test_annotations.txt"
    if test_annotations.is_file():
        lines = _read_lines(test_annotations)
        names, labels = _labels_from_annotations(lines, wnid_to_label, test_annotations)
        name_to_label = dict(zip(names, labels, strict=True))
        unlabelled = [name for name in test_names if name not in name_to_label]
        if unlabelled:
            raise ValueError(
                f"{test_annotations} has no label for {unlabelled[:5]} ({len(unlabelled)} of the test images)"
            )
        y_test = np.array([name_to_label[name] for name in test_names], dtype=np.int64)

    mean_image = X_train.mean(axis=0, dtype=np.float64).astype(dtype)
    if subtract_mean:
        for X in (X_train, X_val, X_test):
            X -= mean_image
    return {
        "class_names": class_names,
        "X_train": X_train,
        "y_train": y_train,
        "X_val": X_val,
        "y_val": y_val,
        "X_test": X_test,
        "y_test": y_test,
        "mean_image": mean_image,
    }


def load_tiny_imagenet_val_boxes(path=None, verbose=False):
    """
    Read the bounding boxes of the validation images of a TinyImageNet folder.

    Inputs:
    - path: the folder, as in load_tiny_imagenet (None: the real download when present, else the default).
    - verbose: say which folder is used.

    Returns an int array (N_val, 4) of x0, y0, x1, y1 (pixel columns and rows, inclusive), one row per
    validation image in the order of load_tiny_imagenet's X_val (the lines of val/val_annotations.txt).
    """
    path = Path(data_paths.tiny_imagenet_dir(verbose=verbose) if path is None else path)
    annotations = path / "val" / "val_annotations.txt"
    boxes = []
    for number, fields in enumerate(_read_lines(_existing(annotations)), start=1):
        try:
            boxes.append([int(value) for value in fields[2:6]])
        except ValueError:
            boxes.append([])
        if len(boxes[-1]) != 4:
            raise ValueError(
                f"{annotations}:{number}: expected 'file<TAB>id<TAB>x0<TAB>y0<TAB>x1<TAB>y1', got "
                f"{chr(9).join(fields)!r}"
            )
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


def load_models(models_dir):
    """
    Load the pickled models of a folder, skipping the files that are not pickles.

    Only load folders you trust: unpickling runs code chosen by whoever wrote the files.

    Inputs:
    - models_dir: folder of pickle files, each holding a model or a dict with the model under 'model'.

    Returns a dict mapping each file name to its model.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise FileNotFoundError(f"models folder {models_dir} not found")
    models = {}
    for model_file in sorted(p for p in models_dir.iterdir() if p.is_file()):
        try:
            with open(model_file, "rb") as f:
                value = pickle.load(f)
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            ImportError,
            IndexError,
            UnicodeDecodeError,
        ):
            continue
        models[model_file.name] = value["model"] if isinstance(value, dict) and "model" in value else value
    return models
