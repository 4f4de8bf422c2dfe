"""Images in and out of the pretrained CNN: reading, fetching, mean subtraction and blurring.

The CNN takes float32 batches (N, 3, H, W) with the mean training image subtracted; people look at uint8
images (H, W, 3). preprocess_image and deprocess_image go from one to the other.
"""

import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

# The classic kit's blur: a 3x3 kernel that keeps 94% of each pixel and spreads the rest to its neighbours.
BLUR_KERNEL = np.array([[1, 2, 1], [2, 188, 2], [1, 2, 1]], dtype=np.float64) / 200.0


def blur_image(X):
    """
    Blur every channel of a batch of images with a small Gaussian-like 3x3 kernel (zero padding).

    Inputs:
    - X: images (N, C, H, W).

    Returns the blurred images, same shape (float32 for integer input, else the same dtype).
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {X.shape}")
    if X.dtype.kind != "f":
        X = X.astype(np.float32)
    # The kernel mixes pixels within one channel of one image only.
    return ndimage.convolve(X, BLUR_KERNEL.astype(X.dtype)[None, None], mode="constant", cval=0.0)


def _bilinear_weights(size_in, size_out):
    """The (size_out, size_in) matrix of 1-D bilinear interpolation: pixel centres at half-integers,
    source positions clamped to the edge pixels (torch's interpolate with align_corners=False)."""
    source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    weights = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    np.add.at(weights, (rows, low), 1 - (source - low))
    np.add.at(weights, (rows, high), source - low)
    return weights


def resize_bilinear(X, height, width):
    """
    Resize images or maps bilinearly (no antialiasing), as torch's interpolate(mode='bilinear',
    align_corners=False); the same size gives X back exactly.

    Inputs:
    - X: array (..., h, w), e.g. images (N, C, h, w) or maps (N, h, w).
    - height, width: the output size.

    Returns an array (..., height, width) of X's float dtype (float32 for integer input).
    """
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"expected an array (..., h, w) to resize, got shape {X.shape}")
    dtype = X.dtype if X.dtype.kind == "f" else np.float32
    rows = _bilinear_weights(X.shape[-2], int(height)).astype(dtype)
    cols = _bilinear_weights(X.shape[-1], int(width)).astype(dtype)
    return rows @ X.astype(dtype, copy=False) @ cols.T


def _mean_for(mean, mean_img, image_shape):
    """The mean to subtract for mean = 'image', 'pixel' or 'none', checked against an image's (3, H, W)."""
    if mean == "none":
        return np.zeros((3, 1, 1), np.float32)
    mean_img = np.asarray(mean_img, dtype=np.float32)
    if mean_img.ndim != 3 or mean_img.shape[0] != 3:
        raise ValueError(f"expected mean_img of shape (3, H, W), got {mean_img.shape}")
    if mean == "pixel":
        return mean_img.mean(axis=(1, 2), keepdims=True)
    if mean == "image":
        if mean_img.shape[1:] != tuple(image_shape[1:]):
            raise ValueError(
                f"mean='image' needs an image of the mean image's size {mean_img.shape[1:]}, "
                f"got {tuple(image_shape[1:])}: use mean='pixel' for other sizes"
            )
        return mean_img
    raise ValueError(f"mean must be 'image', 'pixel' or 'none', got {mean!r}")


def preprocess_image(img, mean_img, mean="image"):
    """
    Turn an image into a one-image float32 batch for the CNN, with the mean subtracted.

    Inputs:
    - img: image (H, W, 3), uint8 or float, pixel values in [0, 255].
    - mean_img: mean training image (3, H0, W0).
    - mean: 'image' subtracts mean_img (needs H, W = H0, W0), 'pixel' its per-channel mean, 'none'
      nothing.

    Returns an array of shape (1, 3, H, W), dtype float32.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    chw = img.astype(np.float32).transpose(2, 0, 1)
    return (chw - _mean_for(mean, mean_img, chw.shape))[None]


def deprocess_image(img, mean_img, mean="image", renorm=False):
    """
    Turn a CNN input back into a viewable image: add the mean back, clip to [0, 255], cast to uint8.

    Inputs:
    - img: image (1, 3, H, W) or (3, H, W).
    - mean_img, mean: as in preprocess_image.
    - renorm: stretch the values to fill [0, 255] instead of adding the mean back as is (for images
      whose range means nothing, such as class visualizations).

    Returns an array of shape (H, W, 3), dtype uint8.
    """
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected an image (1, 3, H, W) or (3, H, W), got shape {img.shape}")
    img = (img + _mean_for(mean, mean_img, img.shape)).transpose(1, 2, 0)
    if renorm:
        low, high = img.min(), img.max()
        img = 255.0 * (img - low) / max(high - low, 1e-8)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def read_rgb_image(path):
    """
    Read an image file as RGB.

    Inputs:
    - path: image file or file-like object (any format Pillow reads: JPEG, PNG, GIF, ...).

    Returns an array of shape (H, W, 3), dtype uint8: grey images get three equal channels, an alpha
    channel is dropped and palettes are applied.
    """
    with Image.open(path) as img:
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def read_image(path, max_size=None):
    """
    Read an image file as RGB, optionally shrunk so that its longer side is at most max_size.

    Inputs:
    - path: image file.
    - max_size: optional largest side in pixels; the aspect ratio is kept, small images stay as they are.

    Returns an array of shape (H, W, 3), dtype uint8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    return _shrink(read_rgb_image(path), max_size)


def _shrink(img, max_size):
    """Resize (antialiased) so that the longer side is at most max_size."""
    height, width = img.shape[:2]
    if max_size is None or max(height, width) <= max_size:
        return img
    scale = max_size / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


def image_from_url(url, timeout=10, max_size=None):
    """
    Fetch an image from an http(s) URL, a file:// URL or a local path.

    Many URLs of the classic data are dead and the machine may be offline: failures print the reason
    and return None instead of raising.

    Inputs:
    - url: 'http://...', 'https://...', 'file://...' or a path.
    - timeout: seconds to wait for a server.
    - max_size: as in read_image.

    Returns an array of shape (H, W, 3), dtype uint8, or None.
    """
    url = str(url)
    try:
        if url.startswith(("http://", "https://", "file://")):
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
            return _shrink(read_rgb_image(io.BytesIO(data)), max_size)
        return read_image(url, max_size)
    except urllib.error.HTTPError as e:
        print(f"image_from_url: HTTP error {e.code} ({e.reason}) for {url}")
    except urllib.error.URLError as e:
        print(f"image_from_url: cannot reach {url}: {e.reason} (offline?)")
    except TimeoutError:
        print(f"image_from_url: no answer from {url} within {timeout} s")
    except (OSError, ValueError) as e:
        print(f"image_from_url: cannot read an image from {url}: {e}")
    return None
