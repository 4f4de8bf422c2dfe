"""Read Fashion-MNIST from its gzipped IDX files, and check what was read.

Fashion-MNIST (Zalando Research, MIT licence) holds 60,000 training and 10,000 test photographs of clothing,
28x28 grey levels, ten classes. `datasets/get_fashion_mnist.sh` puts the four files in
`datasets/fashion-mnist/`; the default-data builders read them through `load_fashion_mnist`.

Run it to check a folder: `python -m datasets.fashion_mnist [folder]` (it imports nothing of the kit, so
`python datasets/fashion_mnist.py [folder]` works too: get_fashion_mnist.sh runs it so, with any Python).
"""

import gzip
import sys
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path(__file__).resolve().parent / "fashion-mnist"

CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SPLIT_SIZES = {"train": 60000, "test": 10000}

# The IDX header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
# big-endian 32-bit size per dimension.
_IDX_UBYTE = 0x08


def read_idx(path):
    """
    Decode one gzipped IDX file of unsigned bytes into a numpy array.

    Inputs:
    - path: path of a `*-ubyte.gz` file.

    Returns:
    - array: uint8 array whose shape is the one stored in the header, e.g. (60000, 28, 28) for images or
      (60000,) for labels.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `bash datasets/get_fashion_mnist.sh` to fetch it")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: expected two zero bytes first, found {raw[:4]!r}")
    if raw[2] != _IDX_UBYTE:
        raise ValueError(f"{path}: expected IDX type 0x08 (unsigned byte), found 0x{raw[2]:02x}")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise ValueError(
            f"{path}: the header announces shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - offset}; delete it and run datasets/get_fashion_mnist.sh"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def check_split(X, y, split):
    """
    Check one decoded split: image shape, label range, and the per-class balance of Fashion-MNIST.

    Inputs:
    - X: uint8 array of images, expected (N, 28, 28) with N = 60000 (train) or 10000 (test).
    - y: uint8 array of labels, expected (N,) in [0, 10), N / 10 of each class.
    - split: 'train' or 'test'.

    Raises ValueError naming what was expected and what was found.
    """
    n = SPLIT_SIZES[split]
    if X.shape != (n, 28, 28):
        raise ValueError(f"Fashion-MNIST {split} images: expected shape ({n}, 28, 28), found {X.shape}")
    if y.shape != (n,):
        raise ValueError(f"Fashion-MNIST {split} labels: expected shape ({n},), found {y.shape}")
    counts = np.bincount(y, minlength=10)
    if len(counts) != 10 or np.any(counts != n // 10):
        raise ValueError(
            f"Fashion-MNIST {split} labels: expected {n // 10} of each of the 10 classes, "
            f"found counts {counts.tolist()}"
        )


def load_fashion_mnist(folder=None):
    """
    Load and check both splits of Fashion-MNIST.

    Inputs:
    - folder: folder holding the four .gz files (default: datasets/fashion-mnist).

    Returns a tuple of:
    - X_train: uint8 array (60000, 28, 28), white item on black.
    - y_train: uint8 array (60000,) of class indices into CLASS_NAMES.
    - X_test: uint8 array (10000, 28, 28).
    - y_test: uint8 array (10000,).
    """
    folder = Path(folder) if folder is not None else FASHION_MNIST_DIR
    arrays = []
    for split, (images, labels) in FILES.items():
        X, y = read_idx(folder / images), read_idx(folder / labels)
        check_split(X, y, split)
        arrays += [X, y]
    return tuple(arrays)


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else FASHION_MNIST_DIR
    X_train, y_train, X_test, y_test = load_fashion_mnist(where)
    print(
        f"Fashion-MNIST in {where}: train {X_train.shape}, test {X_test.shape}, 10 classes of "
        f"{SPLIT_SIZES['train'] // 10} / {SPLIT_SIZES['test'] // 10} images: OK"
    )
