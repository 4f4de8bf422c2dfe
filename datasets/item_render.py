"""Render Fashion-MNIST items onto colour images, a whole batch at a time.

Both default datasets are drawn with these functions: the TinyImageNet-format one pastes one item per image,
the COCO-format one pastes up to three. An item is scaled (bilinear), tinted with a colour, shaded by its own
grey levels so its texture stays visible, and laid over a background through an alpha mask made from its
silhouette. Everything is vectorized over the batch: per-image parameters are arrays of length N.
"""

import io

import numpy as np
from PIL import Image

ITEM_SIZE = 28  # Fashion-MNIST images are 28x28


def hsv_to_rgb(h, s, v):
    """
    Convert colours from HSV to RGB.

    Inputs:
    - h, s, v: arrays of the same shape, values in [0, 1].

    Returns:
    - rgb: array of that shape plus a last axis of 3, values in [0, 1].
    """
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    # For each sextant of the hue circle, which of (v, t, p, q) goes to R, G and B.
    table = np.array([[0, 1, 2], [3, 0, 2], [2, 0, 1], [2, 3, 0], [1, 2, 0], [0, 2, 3]])
    choices = np.stack([v, t, p, q], axis=-1)
    return np.take_along_axis(choices, table[i], axis=-1)


def resize_matrix(start, scale, out_size, in_size=ITEM_SIZE):
    """
    Bilinear interpolation matrices that place a signal of in_size samples at [start, start + scale).

    Inputs:
    - start: array (N,) of the first output coordinate covered by the item.
    - scale: array (N,) of the item's length in output pixels.
    - out_size, in_size: lengths of the output and input signals.

    Returns:
    - R: array (N, out_size, in_size); R[n] @ signal is the resampled signal, zero outside the item.
    """
    u = np.arange(out_size) + 0.5
    src = (u[None, :] - start[:, None]) * (in_size / scale[:, None]) - 0.5
    # The triangle kernel max(0, 1 - |distance|) is exactly bilinear interpolation, and vanishes off the item.
    return np.maximum(0.0, 1.0 - np.abs(src[:, :, None] - np.arange(in_size)[None, None, :]))


def silhouette(items):
    """
    Fill each item's outline: a pixel is inside when item pixels lie left, right, above and below it.

    Inputs:
    - items: array (N, 28, 28) of grey levels in [0, 1].

    Returns:
    - mask: float array (N, 28, 28) of 0s and 1s.
    """
    on = items > 0.05
    left = np.maximum.accumulate(on, axis=2)
    right = np.maximum.accumulate(on[:, :, ::-1], axis=2)[:, :, ::-1]
    top = np.maximum.accumulate(on, axis=1)
    bottom = np.maximum.accumulate(on[:, ::-1, :], axis=1)[:, ::-1, :]
    return (left & right & top & bottom).astype(items.dtype)


def backgrounds(rng, n, size, dark):
    """
    Draw varied backgrounds: a two-colour gradient in a random direction plus smooth blotches and grain.

    Inputs:
    - rng: numpy Generator.
    - n: number of backgrounds; size: their side in pixels.
    - dark: bool array (n,); True gives a dark background (value <= 0.45), False a light one (>= 0.6).

    Returns:
    - bg: array (n, size, size, 3) in [0, 1].
    """
    value_lo = np.where(dark, 0.05, 0.6)[:, None]
    value = value_lo + 0.4 * rng.random((n, 2))
    colours = hsv_to_rgb(rng.random((n, 2)), 0.7 * rng.random((n, 2)), value)  # (n, 2, 3)
    colours = colours.astype(np.float32)
    angle = rng.random(n) * 2 * np.pi
    coord = (np.arange(size) + 0.5) / size - 0.5
    t = np.cos(angle)[:, None, None] * coord[None, None, :] + np.sin(angle)[:, None, None] * coord[:, None]
    t = ((t + 0.71) / 1.42).astype(np.float32)[..., None]  # in [0, 1] for every direction
    bg = colours[:, None, None, 0, :] + t * (colours[:, None, None, 1, :] - colours[:, None, None, 0, :])
    # Smooth blotches: a coarse 5x5 grid of random offsets, resampled bilinearly to full size.
    grid = rng.normal(0.0, 0.06, size=(n, 3, 5, 5)).astype(np.float32)
    R = resize_matrix(np.full(n, -size / 8), np.full(n, size * 1.25), size, in_size=5).astype(np.float32)
    bg += (R[:, None] @ grid @ R[:, None].transpose(0, 1, 3, 2)).transpose(0, 2, 3, 1)
    bg += rng.standard_normal(size=(n, size, size, 3), dtype=np.float32) * np.float32(0.015)
    return np.clip(bg, 0.0, 1.0, out=bg)


def paste_items(canvas, items, tints, top, left, scale):
    """
    Paste one item into each canvas, in place, and return the items' bounding boxes.

    Inputs:
    - canvas: float array (N, S, S, 3) in [0, 1], modified in place.
    - items: uint8 array (N, 28, 28), Fashion-MNIST images (white item on black).
    - tints: array (N, 3) of RGB colours in [0, 1].
    - top, left: arrays (N,) of the item box's first row and column (may be fractional).
    - scale: array (N,) of the item box's side in pixels.

    Returns:
    - boxes: int array (N, 4) of x0, y0, x1, y1, the tight box (inclusive) of the pasted item's opaque pixels.
    """
    size = canvas.shape[1]
    grey = items.astype(np.float32) / np.float32(255.0)
    # Opaque where the item is bright, and fairly opaque inside its outline even where it is dark.
    alpha = np.maximum(np.clip(3.0 * grey, 0.0, 1.0), 0.9 * silhouette(grey))
    Ry = resize_matrix(np.asarray(top, float), np.asarray(scale, float), size).astype(np.float32)
    Rx = resize_matrix(np.asarray(left, float), np.asarray(scale, float), size).astype(np.float32)
    alpha = np.clip(Ry @ alpha @ Rx.transpose(0, 2, 1), 0.0, 1.0)[..., None]
    shade = (Ry @ grey @ Rx.transpose(0, 2, 1))[..., None]
    colour = tints[:, None, None, :].astype(np.float32) * (0.3 + 0.7 * shade)
    canvas *= 1.0 - alpha
    canvas += alpha * colour
    return tight_boxes(alpha[..., 0] > 0.5)


def tight_boxes(mask):
    """
    Bounding boxes of boolean masks.

    Inputs:
    - mask: bool array (N, H, W).

    Returns:
    - boxes: int array (N, 4) of x0, y0, x1, y1 (inclusive); a mask with no pixel gives the whole image.
    """
    n, h, w = mask.shape
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    empty = ~rows.any(axis=1)
    y0, y1 = rows.argmax(axis=1), h - 1 - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0, y0, x1, y1], axis=1)
    boxes[empty] = [0, 0, w - 1, h - 1]
    return boxes


def to_uint8(images):
    """Float images in [0, 1] to uint8, rounding to nearest."""
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def save_jpegs(images, paths, quality=90, decode=False):
    """
    Write images as JPEG files (fixed settings, so the same pixels always give the same bytes).

    Inputs:
    - images: uint8 array (N, H, W, 3).
    - paths: N file paths.
    - quality: JPEG quality.
    - decode: also return the pixels as a reader of the files will see them.

    Returns:
    - decoded: uint8 array (N, H, W, 3) of the decoded JPEGs when decode is True, else None.
    """
    decoded = np.empty_like(images) if decode else None
    for i, (image, path) in enumerate(zip(images, paths, strict=True)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        with open(path, "wb") as f:
            f.write(buffer.getvalue())
        if decode:
            decoded[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return decoded
