"""Loading the COCO captioning data in the classic kit's file layout, and turning captions back into words.

The folder (`datasets/coco_captioning/` for the real download, or the built-in default) holds:
- `coco2014_captions.h5`: `train_captions`, `val_captions` (N, 17) ints, `<START> words <END>` padded with
  `<NULL>`; `train_image_idxs`, `val_image_idxs` (N,) giving each caption's row in the feature file.
- `train2014_vgg16_fc7.h5`, `val2014_vgg16_fc7.h5` (4096-d) and their `_pca` versions (512-d): dataset
  `features`, one row per image.
- `train2014_spatial_features.h5`, `val2014_spatial_features.h5` (the built-in default only, not the real
  download): dataset `features`, (num_images, P, D), one vector per cell of a grid over the image.
- `coco2014_vocab.json`: `{"idx_to_word": [...], "word_to_idx": {...}}`.
- `train2014_urls.txt`, `val2014_urls.txt`: one image URL (or local path) a line, aligned with the features.
"""

import json
from pathlib import Path

import h5py
import numpy as np

from asgn3.data_paths import coco_dir, resolve_classic_path

CAPTIONS_FILE = "coco2014_captions.h5"
VOCAB_FILE = "coco2014_vocab.json"
SPLITS = ("train", "val")
SPECIAL_TOKENS = ("<NULL>", "<START>", "<END>", "<UNK>")  # their indices are 0, 1, 2, 3


def features_file(split, pca_features=True):
    """The name of the feature file of a split: 'train2014_vgg16_fc7_pca.h5' and the like."""
    return f"{split}2014_vgg16_fc7{'_pca' if pca_features else ''}.h5"


def spatial_features_file(split):
    """The name of the grid-feature file of a split: 'train2014_spatial_features.h5' or 'val2014_...'."""
    return f"{split}2014_spatial_features.h5"


def has_spatial_features(base_dir=None):
    """True when the COCO folder (None: the one load_coco_data picks) holds grid features for both splits:
    the built-in default does, the real download (fc7 vectors only) does not."""
    base_dir = coco_dir(verbose=False) if base_dir is None else Path(base_dir)
    return all((base_dir / spatial_features_file(split)).is_file() for split in SPLITS)


def urls_file(split):
    """The name of the URL list of a split: 'train2014_urls.txt' or 'val2014_urls.txt'."""
    return f"{split}2014_urls.txt"


def _missing(path, base_dir):
    """The FileNotFoundError for a file of the layout that is not there, saying how to get it."""
    return FileNotFoundError(
        f"{path.name} not found in {base_dir}: run datasets/get_coco_captioning.sh for the real data, "
        f"or call load_coco_data() without base_dir to use the built-in default"
    )


def _read_h5(path, base_dir, names):
    """Read the named datasets of an HDF5 file into numpy arrays, with errors that name file and dataset."""
    if not path.is_file():
        raise _missing(path, base_dir)
    try:
        with h5py.File(path, "r") as f:
            arrays = {}
            for name in names:
                if name not in f:
                    raise ValueError(
                        f"{path} has no dataset '{name}' (it has: {', '.join(f.keys())}): the "
                        f"file is incomplete or not a COCO captioning file; download it again"
                    )
                try:
                    arrays[name] = np.asarray(f[name])
                except (OSError, RuntimeError) as err:
                    raise ValueError(
                        f"dataset '{name}' of {path} cannot be read ({err}): the file is "
                        f"corrupt; download it again"
                    ) from err
            return arrays
    except OSError as err:
        raise ValueError(
            f"{path} is not a readable HDF5 file ({err}): delete it and download it again"
        ) from err


def _check_shape(array, ndim, path, name, layout):
    """Raise a ValueError naming the file and dataset when an array has the wrong number of dimensions."""
    if array.ndim != ndim or array.shape[0] == 0:
        raise ValueError(
            f"dataset '{name}' of {path} should have shape {layout} with at least one row, "
            f"found {array.shape}: the file is corrupt or of another format; download it again"
        )


def _read_lines(path, base_dir):
    """The lines of a text file (without line ends) as a numpy array of strings."""
    if not path.is_file():
        raise _missing(path, base_dir)
    return np.array(path.read_text(encoding="utf-8").splitlines())


def load_coco_data(base_dir=None, max_train=None, pca_features=True, spatial_features=False):
    """
    Load the COCO captioning data: captions, image features, vocabulary and image URLs.

    Inputs:
    - base_dir: folder in the COCO captioning layout; None picks datasets/coco_captioning when the real
      download is there, else the built-in default (asgn3.data_paths.coco_dir says which); a classic
      path that does not exist, such as 'cs231n/datasets/coco_captioning', means the same
    - max_train: if given, keep this many training captions, drawn at random with replacement
      (np.random, so np.random.seed makes it reproducible)
    - pca_features: True for the 512-d PCA features, False for the 4096-d fc7 features
    - spatial_features: True for one feature vector per grid cell instead (the built-in default's
      `*_spatial_features.h5`, 16 cells of 128 values; the real download has none: see
      has_spatial_features); pca_features is then ignored

    Returns a dict with:
    - train_captions, val_captions: int32 arrays (N, T) of word indices
    - train_image_idxs, val_image_idxs: int32 arrays (N,), each caption's row in the split's features
    - train_features, val_features: float32 arrays (num_images, 512 or 4096), or (num_images, P, D) with
      spatial_features
    - idx_to_word: list of V words; word_to_idx: dict word -> index
    - train_urls, val_urls: arrays of strings (num_images,), aligned with the feature rows
    """
    base_dir = coco_dir() if base_dir is None else resolve_classic_path(base_dir)
    if not base_dir.is_dir():
        raise FileNotFoundError(
            f"COCO captioning folder {base_dir} not found: run "
            f"datasets/get_coco_captioning.sh, or call load_coco_data() without base_dir "
            f"to use the built-in default"
        )
    path = base_dir / CAPTIONS_FILE
    names = [f"{split}_{what}" for split in SPLITS for what in ("captions", "image_idxs")]
    data = _read_h5(path, base_dir, names)
    for split in SPLITS:
        captions, idxs = f"{split}_captions", f"{split}_image_idxs"
        _check_shape(data[captions], 2, path, captions, "(N, T)")
        _check_shape(data[idxs], 1, path, idxs, "(N,)")
        if len(data[captions]) != len(data[idxs]):
            raise ValueError(
                f"{path}: '{captions}' has {len(data[captions])} rows but '{idxs}' has "
                f"{len(data[idxs])}; they must match: download the file again"
            )
        data[captions] = data[captions].astype(np.int32)
        data[idxs] = data[idxs].astype(np.int32)

    for split in SPLITS:
        if spatial_features:
            path = base_dir / spatial_features_file(split)
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path.name} not found in {base_dir}: grid features come with the built-in default "
                    f"(`bash kit.sh setup` builds them); the real COCO download has only fc7 vectors: "
                    f"load it with spatial_features=False"
                )
        else:
            path = base_dir / features_file(split, pca_features)
        features = _read_h5(path, base_dir, ["features"])["features"]
        if spatial_features:
            _check_shape(features, 3, path, "features", "(num_images, grid_cells, feature_dim)")
        else:
            _check_shape(features, 2, path, "features", "(num_images, feature_dim)")
        idxs = data[f"{split}_image_idxs"]
        if idxs.min() < 0 or idxs.max() >= len(features):
            raise ValueError(
                f"{split}_image_idxs in {base_dir / CAPTIONS_FILE} point to rows from "
                f"{idxs.min()} to {idxs.max()}, but {path} has {len(features)} rows: the files "
                f"do not belong together"
            )
        data[f"{split}_features"] = features.astype(np.float32)

    vocab_path = base_dir / VOCAB_FILE
    if not vocab_path.is_file():
        raise _missing(vocab_path, base_dir)
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        data["idx_to_word"] = list(vocab["idx_to_word"])
        data["word_to_idx"] = {word: int(idx) for word, idx in vocab["word_to_idx"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{vocab_path} should be a JSON object with 'idx_to_word' (a list) and "
            f"'word_to_idx' (an object), could not read it ({err!r}): download it "
            f"again"
        ) from err

    for split in SPLITS:
        path = base_dir / urls_file(split)
        urls = _read_lines(path, base_dir)
        if len(urls) != len(data[f"{split}_features"]):
            raise ValueError(
                f"{path} has {len(urls)} lines but the {split} features have "
                f"{len(data[f'{split}_features'])} rows: there must be one URL per image"
            )
        data[f"{split}_urls"] = urls

    if max_train is not None:
        rows = np.random.randint(len(data["train_captions"]), size=max_train)
        data["train_captions"] = data["train_captions"][rows]
        data["train_image_idxs"] = data["train_image_idxs"][rows]
    return data


def save_coco_data(data, base_dir, pca_features=True):
    """
    Write a data dict in the COCO captioning layout that load_coco_data reads (the inverse of loading).

    Inputs:
    - data: dict with the keys load_coco_data returns (train/val captions, image_idxs, features, urls,
      idx_to_word, word_to_idx)
    - base_dir: folder to write into (created if needed)
    - pca_features: write the features under the _pca file names (True) or the fc7 ones (False)
    """
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(base_dir / CAPTIONS_FILE, "w") as f:
        for split in SPLITS:
            for what in ("captions", "image_idxs"):
                name = f"{split}_{what}"
                f.create_dataset(name, data=np.asarray(data[name], dtype=np.int32))
    for split in SPLITS:
        with h5py.File(base_dir / features_file(split, pca_features), "w") as f:
            f.create_dataset("features", data=np.asarray(data[f"{split}_features"], dtype=np.float32))
        lines = "".join(f"{url}\n" for url in data[f"{split}_urls"])
        (base_dir / urls_file(split)).write_text(lines, encoding="utf-8")
    vocab = {
        "idx_to_word": list(data["idx_to_word"]),
        "word_to_idx": {word: int(idx) for word, idx in data["word_to_idx"].items()},
    }
    (base_dir / VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")


def decode_captions(captions, idx_to_word):
    """
    Turn captions of word indices back into text.

    Inputs:
    - captions: int array (T,) for one caption or (N, T) for several
    - idx_to_word: list (or dict) mapping an index to its word

    Returns:
    - one string for a 1-D input, a list of N strings for a 2-D input. '<NULL>' words are skipped and
      decoding stops after '<END>' (which, like '<START>', stays in the text).
    """
    captions = np.asarray(captions)
    if captions.ndim not in (1, 2):
        raise ValueError(f"expected captions of shape (T,) or (N, T), got {captions.shape}")
    decoded = []
    for row in np.atleast_2d(captions):
        words = []
        for idx in row:
            word = idx_to_word[int(idx)]
            if word != "<NULL>":
                words.append(word)
            if word == "<END>":
                break
        decoded.append(" ".join(words))
    return decoded[0] if captions.ndim == 1 else decoded


def sample_coco_minibatch(data, batch_size=100, split="train", rng=None):
    """
    Draw a random minibatch of captions (with replacement) with their image features and URLs.

    Inputs:
    - data: dict from load_coco_data
    - batch_size: number of captions
    - split: 'train' or 'val'
    - rng: a numpy Generator to draw with; None uses np.random (so np.random.seed applies)

    Returns a tuple of:
    - captions: int array (batch_size, T)
    - image_features: float array (batch_size, feature_dim)
    - urls: array of strings (batch_size,), or None when data has no URLs for the split
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    num_captions = data[f"{split}_captions"].shape[0]
    rows = (np.random.choice if rng is None else rng.choice)(num_captions, batch_size)
    captions = data[f"{split}_captions"][rows]
    image_idxs = data[f"{split}_image_idxs"][rows]
    image_features = data[f"{split}_features"][image_idxs]
    urls = data[f"{split}_urls"][image_idxs] if f"{split}_urls" in data else None
    return captions, image_features, urls
