"""Tests of datasets/fashion_mnist.py: decoding gzipped IDX files and checking Fashion-MNIST."""

import gzip
import struct

import numpy as np
import pytest

from datasets import fashion_mnist


def write_idx(path, array, header=None):
    """Write a uint8 array as a gzipped IDX file (or with a custom header, to make broken files)."""
    if header is None:
        header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_decodes_shape_and_values(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(7,), dtype=np.uint8)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    assert np.array_equal(fashion_mnist.read_idx(tmp_path / "images.gz"), images)
    assert np.array_equal(fashion_mnist.read_idx(tmp_path / "labels.gz"), labels)


def test_read_idx_refuses_broken_files(tmp_path):
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "short.gz", images[:3], header=bytes([0, 0, 8, 3]) + struct.pack(">3I", 4, 28, 28))
    with pytest.raises(ValueError, match="header announces shape"):
        fashion_mnist.read_idx(tmp_path / "short.gz")
    write_idx(tmp_path / "magic.gz", images, header=b"PK\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        fashion_mnist.read_idx(tmp_path / "magic.gz")
    write_idx(tmp_path / "floats.gz", images, header=bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 4))
    with pytest.raises(ValueError, match="0x0d"):
        fashion_mnist.read_idx(tmp_path / "floats.gz")
    with pytest.raises(FileNotFoundError, match="get_fashion_mnist.sh"):
        fashion_mnist.read_idx(tmp_path / "absent.gz")


def test_check_split_names_what_is_wrong():
    X = np.zeros((10000, 28, 28), dtype=np.uint8)
    y = np.repeat(np.arange(10, dtype=np.uint8), 1000)
    fashion_mnist.check_split(X, y, "test")
    y_unbalanced = y.copy()
    y_unbalanced[0] = 9
    with pytest.raises(ValueError, match="1000 of each"):
        fashion_mnist.check_split(X, y_unbalanced, "test")
    with pytest.raises(ValueError, match=r"\(10000, 28, 28\)"):
        fashion_mnist.check_split(X[:, :27], y, "test")


def test_fashion_mnist_has_the_published_shapes_and_balance():
    X_train, y_train, X_test, y_test = fashion_mnist.load_fashion_mnist()
    assert X_train.shape == (60000, 28, 28) and X_test.shape == (10000, 28, 28)
    assert X_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert np.array_equal(np.bincount(y_train), np.full(10, 6000))
    assert np.array_equal(np.bincount(y_test), np.full(10, 1000))
    # Real photographs: mostly black corners, bright centres, and no two of the first hundred images alike.
    corners = X_train[:, [0, -1]][:, :, [0, -1]]
    assert np.mean(corners == 0) > 0.8 and X_train[:, 10:18, 10:18].mean() > 60
    assert len({img.tobytes() for img in X_train[:100]}) == 100
