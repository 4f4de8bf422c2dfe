"""Where the kit's data lives, and the one switch that picks real downloads or the built-in default.

Every loader asks this module for its folder. The rule is the same everywhere: use the real download
(`datasets/coco_captioning/`, `datasets/tiny-imagenet-100-A/`, `datasets/pretrained_model.h5`) when it is
present, else the default that `bash kit.sh setup` builds from Fashion-MNIST. The environment variable
ASGN3_DATA overrides the choice: `real`, `default` or `auto` (the rule above, the default). The classic
kit's paths (e.g. 'cs231n/datasets/coco_captioning') lead to the same data: see resolve_classic_path.

KIT_DIR, the checkout's folder, is defined here once for the whole tree (staff/, tools/, tests import it).
"""

import os
from pathlib import Path

KIT_DIR = Path(__file__).resolve().parent.parent
DATASETS_DIR = KIT_DIR / "datasets"
DEFAULT_DIR = DATASETS_DIR / "default"
PHOTOS_DIR = DATASETS_DIR / "photos"

REAL_COCO_DIR = DATASETS_DIR / "coco_captioning"
REAL_TINY_IMAGENET_DIR = DATASETS_DIR / "tiny-imagenet-100-A"
REAL_PRETRAINED_MODEL = DATASETS_DIR / "pretrained_model.h5"

DEFAULT_COCO_DIR = DEFAULT_DIR / "coco_captioning"
DEFAULT_TINY_IMAGENET_DIR = DEFAULT_DIR / "tiny-imagenet-100-A"
DEFAULT_PRETRAINED_MODEL = DATASETS_DIR / "pretrained" / "default_pretrained_model.h5"

_CHOICES = ("auto", "real", "default")


def data_choice():
    """Return the value of ASGN3_DATA ('auto' when unset); anything else is a ValueError."""
    choice = os.environ.get("ASGN3_DATA", "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"ASGN3_DATA must be one of {', '.join(_CHOICES)}; got {choice!r}")
    return choice


def _pick(what, real, marker, default, get_real, get_default, verbose):
    """Choose between a real download and the default, following ASGN3_DATA, and say which."""
    choice = data_choice()
    real_present = marker.exists()
    if choice == "real" or (choice == "auto" and real_present):
        if not real_present:
            raise FileNotFoundError(f"ASGN3_DATA=real but {marker} is missing: run {get_real}")
        if verbose:
            print(f"{what}: using the real download in {real}")
        return real
    if not default.exists():
        raise FileNotFoundError(
            f"{what}: neither the real download ({real}) nor the built-in default ({default}) is present: "
            f"{get_default} for the default, or run {get_real} for the real data"
        )
    if verbose:
        print(f"{what}: using the built-in default in {default} (real download absent: {get_real})")
    return default


def coco_dir(verbose=True):
    """Folder holding the COCO captioning files (coco2014_captions.h5, coco2014_vocab.json, ...)."""
    return _pick(
        "COCO captioning",
        REAL_COCO_DIR,
        REAL_COCO_DIR / "coco2014_captions.h5",
        DEFAULT_COCO_DIR,
        "datasets/get_coco_captioning.sh",
        "run `bash kit.sh setup`",
        verbose,
    )


def tiny_imagenet_dir(verbose=True):
    """Folder in the TinyImageNet-100-A layout (wnids.txt, words.txt, train/, val/, test/)."""
    return _pick(
        "TinyImageNet",
        REAL_TINY_IMAGENET_DIR,
        REAL_TINY_IMAGENET_DIR / "wnids.txt",
        DEFAULT_TINY_IMAGENET_DIR,
        "datasets/get_tiny_imagenet_a.sh",
        "run `bash kit.sh setup`",
        verbose,
    )


def pretrained_model_path(verbose=True):
    """The pretrained CNN's HDF5 weights: the classic download if present, else the shipped default model."""
    return _pick(
        "Pretrained CNN",
        REAL_PRETRAINED_MODEL,
        REAL_PRETRAINED_MODEL,
        DEFAULT_PRETRAINED_MODEL,
        "datasets/get_pretrained_model.sh",
        "restore the shipped file with `git checkout datasets/pretrained`",
        verbose,
    )


# The names the classic kit's paths end with, and where the kit finds that data.
_CLASSIC_NAMES = {
    REAL_COCO_DIR.name: coco_dir,
    REAL_TINY_IMAGENET_DIR.name: tiny_imagenet_dir,
    REAL_PRETRAINED_MODEL.name: pretrained_model_path,
}


def resolve_classic_path(path):
    """
    A data path as the classic kit's notebooks and guides wrote it, resolved for this kit.

    A path that exists, or whose last part is not a classic name, is returned as it is. A missing path
    ending in `coco_captioning`, `tiny-imagenet-100-A` or `pretrained_model.h5` (such as the classic
    'cs231n/datasets/coco_captioning') becomes the kit's copy of that data (the real download when present,
    else the default), with a one-line note.

    Inputs:
    - path: str or Path.

    Returns a Path.
    """
    path = Path(path)
    find = _CLASSIC_NAMES.get(path.name)
    if find is None or path.exists():
        return path
    found = find(verbose=False)
    print(f"{path} does not exist: using the kit's {path.name} in {found}")
    return found


# The ImageNet model of ImageNet_Gradients.ipynb: weights made by `python -m datasets.get_efficientnet_lite0`
# (run by kit.sh setup; absent offline), and the committed class names.
EFFICIENTNET_LITE0_WEIGHTS = DATASETS_DIR / "pretrained" / "efficientnet_lite0.npz"
IMAGENET_CLASS_NAMES = DATASETS_DIR / "imagenet" / "class_names.txt"
