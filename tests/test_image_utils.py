"""Tests of image_utils: blur, mean subtraction and its inverse, reading and fetching images."""

import functools
import http.server
import socket
import threading

import imageio.v3 as iio
import numpy as np
import pytest

from asgn3.image_utils import (
    BLUR_KERNEL,
    blur_image,
    deprocess_image,
    image_from_url,
    preprocess_image,
    read_image,
    read_rgb_image,
    resize_bilinear,
)


def test_blur_matches_a_direct_convolution_per_channel():
    X = np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype(np.float32)
    out = blur_image(X)
    assert out.shape == X.shape and out.dtype == np.float32
    padded = np.pad(X.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = sum(BLUR_KERNEL[i, j] * padded[:, :, i : i + 5, j : j + 6] for i in range(3) for j in range(3))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # A constant image stays constant away from the border (the kernel sums to one).
    flat = blur_image(np.full((1, 3, 6, 6), 7.0))
    np.testing.assert_allclose(flat[:, :, 1:-1, 1:-1], 7.0)
    assert flat[0, 0, 0, 0] < 7.0
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        blur_image(np.zeros((3, 4, 4)))


@pytest.mark.parametrize("mean", ["image", "pixel", "none"])
def test_deprocess_inverts_preprocess(mean):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(8, 8, 3)).astype(np.uint8)
    mean_img = rng.uniform(50, 150, size=(3, 8, 8)).astype(np.float32)
    x = preprocess_image(img, mean_img, mean=mean)
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32
    if mean == "image":
        np.testing.assert_allclose(x[0], img.transpose(2, 0, 1) - mean_img, rtol=1e-6)
    if mean == "pixel":
        np.testing.assert_allclose(
            x[0].mean(axis=(1, 2)), img.mean(axis=(0, 1)) - mean_img.mean(axis=(1, 2)), rtol=1e-4
        )
    back = deprocess_image(x, mean_img, mean=mean)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, img)


def test_deprocess_clips_and_renormalises():
    mean_img = np.zeros((3, 2, 2), np.float32)
    x = np.array([-40.0, 300.0, 100.0, 0.0] * 3, np.float32).reshape(1, 3, 2, 2)
    np.testing.assert_array_equal(deprocess_image(x, mean_img)[:, :, 0], [[0, 255], [100, 0]])
    stretched = deprocess_image(x, mean_img, renorm=True)
    assert stretched.min() == 0 and stretched.max() == 255


def test_mean_errors_say_what_to_do():
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="use mean='pixel'"):
        preprocess_image(img, np.zeros((3, 8, 8)))
    assert preprocess_image(img, np.ones((3, 8, 8)), mean="pixel").shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="'image', 'pixel' or 'none'"):
        preprocess_image(img, np.zeros((3, 16, 16)), mean="channel")


def test_read_image_shrinks_to_max_size_keeping_the_aspect(tmp_path):
    img = np.zeros((40, 100, 3), np.uint8)
    img[:, 50:] = 200
    iio.imwrite(tmp_path / "wide.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "wide.png"), img)
    small = read_image(tmp_path / "wide.png", max_size=50)
    assert small.shape == (20, 50, 3) and small.dtype == np.uint8
    assert small[:, :20].max() < 20 and small[:, 30:].min() > 180
    assert read_image(tmp_path / "wide.png", max_size=500).shape == (40, 100, 3)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_image(tmp_path / "absent.png")


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path (nothing leaves the machine)."""
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_image_from_url_over_http_file_url_and_path(tmp_path, server, capsys):
    img = np.random.default_rng(2).integers(0, 256, size=(12, 10, 3)).astype(np.uint8)
    iio.imwrite(tmp_path / "photo.png", img)
    np.testing.assert_array_equal(image_from_url(f"{server}/photo.png"), img)
    np.testing.assert_array_equal(image_from_url((tmp_path / "photo.png").as_uri()), img)
    np.testing.assert_array_equal(image_from_url(tmp_path / "photo.png"), img)
    assert image_from_url(f"{server}/photo.png", max_size=6).shape == (6, 5, 3)
    iio.imwrite(tmp_path / "grey.png", img[:, :, 0])
    assert image_from_url(f"{server}/grey.png").shape == (12, 10, 3)
    assert capsys.readouterr().out == ""


def test_image_from_url_failures_return_none_with_the_reason(tmp_path, server, capsys):
    assert image_from_url(f"{server}/missing.jpg") is None
    assert "HTTP error 404" in capsys.readouterr().out
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image")
    assert image_from_url(f"{server}/junk.jpg") is None
    assert "cannot read an image" in capsys.readouterr().out
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert image_from_url(f"http://127.0.0.1:{port}/a.jpg", timeout=2) is None
    assert "cannot reach" in capsys.readouterr().out
    assert image_from_url(tmp_path / "absent.jpg") is None
    assert "not found" in capsys.readouterr().out


def test_read_rgb_image_drops_alpha(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 10, 255
    iio.imwrite(tmp_path / "a.png", rgba)
    img = read_rgb_image(tmp_path / "a.png")
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8 and img[0, 0, 0] == 10


def test_resize_bilinear_uses_half_pixel_centres_and_clamped_edges():
    row = np.array([[0.0, 1.0, 2.0, 3.0]])
    # Output pixel j of 8 samples the input at (j + 0.5) / 2 - 0.5, clamped to [0, 3].
    np.testing.assert_allclose(resize_bilinear(row, 1, 8), [[0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]])
    np.testing.assert_allclose(resize_bilinear(row, 1, 2), [[0.5, 2.5]])  # samples at 0.5 and 2.5
    X = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
    assert resize_bilinear(X, 5, 7).dtype == np.float32
    np.testing.assert_array_equal(resize_bilinear(X, 5, 7), X)  # the same size: X itself
    up = resize_bilinear(X, 10, 14)
    assert up.shape == (2, 3, 10, 14)
    np.testing.assert_allclose(up[..., ::2, ::2].mean(), X.mean(), atol=0.1)
    with pytest.raises(ValueError, match="to resize"):
        resize_bilinear(np.zeros(3), 2, 2)
