"""Opening images of any PIL-readable mode and converting them the same way every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["to_mode", "load_array", "IMAGE_FORMATS"]

#: PIL formats mritune accepts, with the extensions each may carry.
IMAGE_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
    "WEBP": (".webp",),
    "GIF": (".gif",),
    "PPM": (".ppm", ".pgm", ".pbm", ".pnm"),
}


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Min-max scale a high-bit-depth image to 0..255 (MRI PNGs often use 12 of 16 bits)."""
    arr = arr.astype(np.float64)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL image to ``L`` (channels=1) or ``RGB`` (channels=3), consistently.

    High bit depth (``I;16``, ``I``, ``F``) is min-max scaled to 8 bits; transparency is composited
    on black (the MRI background); palette, ``LA``, ``CMYK`` and ``YCbCr`` go through PIL's own
    conversion.
    """
    target = "L" if channels == 1 else "RGB"
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        img = Image.fromarray(_scale_to_uint8(np.asarray(img)), mode="L")
    elif mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != target:
        img = img.convert(target)
    return img


def load_array(path: str | Path, size: int, channels: int) -> np.ndarray:
    """Decode ``path``, convert it and resize it to ``size`` x ``size``; returns uint8 (S, S, C).

    The whole image is resized (no crop) so that lesions near the edge are kept. JPEGs are decoded
    at a reduced scale when they are much larger than ``size`` (PIL's ``draft``), which is exact
    enough for a later resize and several times faster.
    """
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("L" if channels == 1 else "RGB", (size, size))
        img.load()
        img = to_mode(img, channels)
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr
