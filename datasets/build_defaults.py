"""Build both default datasets when they are missing or out of date (called by `bash kit.sh setup`).

1. The TinyImageNet-format default (datasets/default/tiny-imagenet-100-A), from Fashion-MNIST.
2. The COCO-format captioning default (datasets/default/coco_captioning), from Fashion-MNIST, with image
   features computed by the shipped CNN (datasets/pretrained/default_pretrained_model.h5, whose checksum is
   verified first).
3. Its spatial features (a 4x4 grid of the same CNN's feature map, for attention), in the same folder.

Each folder keeps a stamp: a digest of the seed, the sizes and the builders' source code (and for the
COCO default also the model's checksum, the TinyImageNet stamp and the folder's absolute path, which its
url files contain). A build is skipped when its stamp matches. `--force` rebuilds anyway.
Usage: python -m datasets.build_defaults [--force]
"""

import argparse
import hashlib
import sys
import time
from pathlib import Path

from asgn3.data_paths import DEFAULT_COCO_DIR, DEFAULT_PRETRAINED_MODEL, DEFAULT_TINY_IMAGENET_DIR
from datasets import build_coco_default, build_spatial_features, build_tiny_imagenet_default
from datasets.checksum import read_checksum, sha256_of

HERE = Path(__file__).resolve().parent
STAMP = ".build-stamp"
TINY_SOURCES = ["build_tiny_imagenet_default.py", "item_render.py", "fashion_mnist.py"]
COCO_SOURCES = ["build_coco_default.py", "caption_grammar.py", "item_render.py", "fashion_mnist.py"]
SPATIAL_SOURCES = ["build_spatial_features.py"]
SPATIAL_STAMP = ".spatial-build-stamp"  # beside the COCO default's own stamp, in the same folder


def fingerprint(settings, sources):
    """Hex digest of a settings string and the bytes of the named source files of this folder."""
    digest = hashlib.sha256(settings.encode())
    for name in sources:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return digest.hexdigest()


def verified_model_checksum(model_file=DEFAULT_PRETRAINED_MODEL):
    """The SHA-256 of the shipped weights, after checking it against the recorded one."""
    if not model_file.is_file():
        raise FileNotFoundError(
            f"{model_file} is missing: it is part of the kit (git checkout it), or "
            f"retrain it with `python -m datasets.train_default_model`"
        )
    digest, recorded = sha256_of(model_file), read_checksum(model_file)
    if digest != recorded:
        raise ValueError(
            f"{model_file} has SHA-256 {digest}, but {model_file.name}.sha256 records "
            f"{recorded}: the file is damaged; restore it with git, or retrain it"
        )
    return digest


def up_to_date(folder, stamp, stamp_name=STAMP):
    """True when folder holds a build whose stamp (in the file stamp_name) equals `stamp`."""
    return (folder / stamp_name).is_file() and (folder / stamp_name).read_text().strip() == stamp


def build_if_needed(what, folder, stamp, build, force, stamp_name=STAMP):
    """Run build() unless folder's stamp matches; then write the stamp. Prints what it does."""
    if not force and up_to_date(folder, stamp, stamp_name):
        print(f"{what}: up to date in {folder} (skipped)")
        return
    print(f"{what}: building in {folder}")
    started = time.time()
    build()
    (folder / stamp_name).write_text(stamp + "\n")
    print(f"{what}: built in {time.time() - started:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamps match")
    args = parser.parse_args()
    tiny = build_tiny_imagenet_default
    tiny_stamp = fingerprint(
        f"seed={tiny.SEED} train={tiny.TRAIN_PER_CLASS} val={tiny.VAL_PER_CLASS} test={tiny.TEST_PER_CLASS}",
        TINY_SOURCES,
    )
    build_if_needed(
        "TinyImageNet-format default",
        DEFAULT_TINY_IMAGENET_DIR,
        tiny_stamp,
        lambda: tiny.build(DEFAULT_TINY_IMAGENET_DIR),
        args.force,
    )

    coco = build_coco_default
    model_sha = verified_model_checksum()
    coco_stamp = fingerprint(
        f"seed={coco.SEED} train={coco.NUM_TRAIN} val={coco.NUM_VAL} model={model_sha} "
        f"tiny={tiny_stamp} dir={DEFAULT_COCO_DIR.resolve()}",
        COCO_SOURCES,
    )

    loaded = {}  # the model and its mean image, read once (the mean reads all the TinyImageNet images)

    def model_and_mean():
        if not loaded:
            loaded["model"], loaded["mean_image"] = coco.load_model_and_mean()
        return loaded["model"], loaded["mean_image"]

    def build_coco():
        coco.build(DEFAULT_COCO_DIR, *model_and_mean())

    build_if_needed("COCO-format default", DEFAULT_COCO_DIR, coco_stamp, build_coco, args.force)

    spatial_stamp = fingerprint(
        f"coco={coco_stamp} layer={build_spatial_features.GRID_LAYER}", SPATIAL_SOURCES
    )

    def build_spatial():
        build_spatial_features.build(DEFAULT_COCO_DIR, *model_and_mean())

    build_if_needed(
        "Spatial features of the COCO-format default",
        DEFAULT_COCO_DIR,
        spatial_stamp,
        build_spatial,
        args.force,
        stamp_name=SPATIAL_STAMP,
    )


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"datasets.build_defaults: {err}")
