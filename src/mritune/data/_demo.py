"""Synthetic brain-MRI demo data set in the Kaggle brain-tumour layout.

:func:`generate_demo` writes grayscale JPEG axial slices that look roughly like T1-weighted MRI:
dark background, scalp, a bright skull ring, a textured brain with butterfly-shaped ventricles, a
smooth intensity bias field, Rician-like noise, random pose, scale, contrast and gamma. Three of the
four classes carry a lesion (glioma, meningioma, pituitary); every class carries look-alike
distractors (vessel-like bright spots, a normal pituitary gland, asymmetric ventricles, faint
patches), so the classes are learnable but not separable by a threshold.

Each image has its own random generator derived from ``(seed, split, class, index)``: the same
arguments always give byte-identical files, and the images do not depend on the counts asked for.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from mritune.errors import ConfigError, DataError

__all__ = ["CLASSES", "DIFFICULTIES", "generate_demo"]

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
DIFFICULTIES = ("easy", "normal", "hard")

_ABBREV = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}
_SPLITS = (("Training", "Tr"), ("Testing", "Te"))
_MAX_SIZE = 2048
_JPEG_QUALITY = 90
_MAX_WORKERS = 4


class _Level(NamedTuple):
    """How one difficulty renders lesions and nuisances."""

    lesion: float  # lesion size factor
    contrast: float  # lesion contrast factor
    noise: float  # noise standard deviation (tissue is about 0.47)
    bias: float  # bias-field strength
    faint: float  # probability that a lesion is low-contrast
    decoy: float  # how often / how strongly look-alike distractors appear


_LEVELS = {
    "easy": _Level(lesion=1.8, contrast=3.4, noise=0.03, bias=0.06, faint=0.0, decoy=0.4),
    "normal": _Level(lesion=1.6, contrast=2.8, noise=0.045, bias=0.12, faint=0.1, decoy=0.8),
    "hard": _Level(lesion=1.35, contrast=2.2, noise=0.065, bias=0.3, faint=0.3, decoy=1.2),
}


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step from 0 (x <= -width/2) to 1 (x >= width/2), linear in between."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def _blob(u: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    """Axis-aligned gaussian bump with peak 1 at (cu, cv)."""
    du, dv = (u - float(cu)) / float(su), (v - float(cv)) / float(sv)
    return np.exp(-0.5 * (du * du + dv * dv))


def _texture(rng: np.random.Generator, size: int, sigma_frac: float) -> np.ndarray:
    """Smoothed white noise with zero mean and unit standard deviation.

    The noise is smoothed on a grid just fine enough for its correlation length and then resized,
    so the cost hardly grows with ``size``.
    """
    low = min(size, max(8, int(np.ceil(1.5 / sigma_frac))))
    noise = rng.standard_normal((low, low), dtype=np.float32)
    field = ndimage.gaussian_filter(noise, sigma_frac * low)
    if low < size:
        resized = Image.fromarray(field).resize((size, size), Image.Resampling.BICUBIC)
        field = np.asarray(resized, dtype=np.float32)
    return (field - field.mean()) / (field.std() + 1e-8)


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] (float32, read-only), x to the right, y downwards."""
    t = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    x, y = np.meshgrid(t, t)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _slice(rng: np.random.Generator, cls: str, size: int, lv: _Level) -> np.ndarray:
    """Render one axial slice of class ``cls`` as a uint8 ``size`` x ``size`` array."""
    x, y = _grid(size)
    px = 2.0 / size  # one pixel in normalised units
    # Pose: rotation, translation and scale map image coordinates to head coordinates (u, v).
    theta = rng.uniform(-0.2, 0.2)
    scale = rng.uniform(0.88, 1.02)
    tx, ty = rng.uniform(-0.05, 0.05, size=2).tolist()
    c, s = math.cos(theta), math.sin(theta)
    u = (c * (x - tx) + s * (y - ty)) / scale
    v = (-s * (x - tx) + c * (y - ty)) / scale
    edge = 1.5 * px / scale

    # Head outline: an ellipse with a slightly irregular, lobed contour.
    a, b = rng.uniform(0.64, 0.74), rng.uniform(0.80, 0.90)
    # cos(k * phi + p) for k = 2, 3, 5 from cos(phi) and sin(phi), without trigonometry per pixel.
    norm = np.sqrt(u * u + v * v) + 1e-6
    c1, s1 = u / norm, v / norm
    c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
    c3, s3 = c2 * c1 - s2 * s1, s2 * c1 + c2 * s1
    c5, s5 = c3 * c2 - s3 * s2, s3 * c2 + c3 * s2
    wobble = 1.0
    for ck, sk in ((c2, s2), (c3, s3), (c5, s5)):
        w, p = rng.uniform(0.0, 0.025), rng.uniform(0, 2 * np.pi)
        wobble = wobble + w * (math.cos(p) * ck - math.sin(p) * sk)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wobble
    skin, bone_out, bone_in, csf_in = 1.0, rng.uniform(0.91, 0.96), rng.uniform(0.85, 0.88), 0.83
    redge = edge / min(a, b)
    head = _ramp(skin - rho, redge)
    skull = _ramp(bone_out - rho, redge) * _ramp(rho - bone_in, redge)
    inner = _ramp(bone_in - rho, redge)
    brain = _ramp(csf_in - rho, 2 * redge)

    img = 0.02 + rng.uniform(0.25, 0.7) * head  # scalp (fat is bright on T1)
    img = img * (1 - skull) + rng.uniform(0.8, 1.25) * skull
    img = img * (1 - inner) + 0.12 * inner
    tex = 0.05 * _texture(rng, size, 0.012) + 0.04 * _texture(rng, size, 0.04)
    cortex = 0.06 * np.exp(-(((csf_in - rho) / 0.06) ** 2))  # grey-matter ribbon
    tissue = rng.uniform(0.42, 0.52) + tex - cortex
    img = img * (1 - brain) + tissue * brain

    # Ventricles: two tilted ellipses mirrored about the midline (a butterfly), often asymmetric.
    vc = rng.uniform(-0.12, 0.0)
    vs = rng.uniform(0.7, 1.2)
    for side in (-1.0, 1.0):
        asym = rng.uniform(0.65, 1.35) if rng.random() < 0.5 * lv.decoy else 1.0
        alpha = side * rng.uniform(0.25, 0.5)
        du, dv = u - side * 0.11 * vs, v - vc
        ca, sa = math.cos(alpha), math.sin(alpha)
        ru = (ca * du + sa * dv) / (0.05 * vs * asym)
        rv = (ca * dv - sa * du) / (0.19 * vs * asym)
        vent = _ramp(1.0 - np.sqrt(ru**2 + rv**2), 0.25)
        img = img * (1 - vent) + 0.13 * vent

    bu, bv = csf_in * a * 0.95, csf_in * b * 0.95  # approximate brain semi-axes
    amp = lv.contrast * (rng.uniform(0.25, 0.55) if rng.random() < lv.faint else 1.0)

    # Distractors present in every class.
    for _ in range(rng.poisson(2.5 * lv.decoy)):  # vessel-like bright spots anywhere in the brain
        r, ang = math.sqrt(rng.uniform(0, 0.8)), rng.uniform(0, 2 * np.pi)
        sd = rng.uniform(0.012, 0.03)
        img += rng.uniform(0.25, 0.7) * _blob(
            u, v, r * bu * math.cos(ang), r * bv * math.sin(ang), sd, sd
        )
    if rng.random() < 0.6:  # normal pituitary gland / sellar vessels
        sd = rng.uniform(0.02, 0.035)
        img += rng.uniform(0.1, 0.4) * lv.decoy * _blob(u, v, 0.0, 0.62 * bv, sd * 1.3, sd)
    if rng.random() < 0.35 * lv.decoy:  # small dural bump at the skull's inner edge
        ang, sd = rng.uniform(0, 2 * np.pi), rng.uniform(0.02, 0.035)
        cu, cv = 0.97 * bu * math.cos(ang), 0.97 * bv * math.sin(ang)
        img += rng.uniform(0.15, 0.5) * _blob(u, v, cu, cv, sd, sd)
    if rng.random() < 0.3 * lv.decoy:  # faint diffuse patch (partial volume, flow artefact)
        cu, cv = rng.uniform(-0.45, 0.45) * bu, rng.uniform(-0.6, 0.6) * bv
        sd = rng.uniform(0.08, 0.15)
        img += (
            float(rng.choice((-1.0, 1.0)))
            * rng.uniform(0.05, 0.12)
            * _blob(u, v, cu, cv, sd, sd)
            * brain
        )

    if cls == "glioma":  # lobulated, diffuse, heterogeneous, inside one hemisphere
        side = float(rng.choice((-1.0, 1.0)))
        cu, cv = side * rng.uniform(0.25, 0.6) * bu, rng.uniform(-0.55, 0.45) * bv
        r = rng.uniform(0.12, 0.2) * lv.lesion
        mass = np.zeros_like(u)
        for _ in range(rng.integers(3, 7)):
            ou, ov = rng.normal(0, 0.55 * r, size=2).tolist()
            sd = r * rng.uniform(0.4, 0.75)
            mass = np.maximum(mass, _blob(u, v, cu + ou, cv + ov, sd, sd * rng.uniform(0.7, 1.3)))
        mass *= 1.0 + 0.5 * _texture(rng, size, 0.02)
        if rng.random() < 0.4:  # necrotic core with an enhancing rim
            mass *= 1.0 - 0.8 * _blob(u, v, cu, cv, 0.45 * r, 0.45 * r)
        halo = _blob(u, v, cu, cv, 2.2 * r, 2.2 * r)  # surrounding oedema
        hemi = _ramp(side * u, 4 * edge)
        sign = -1.0 if rng.random() < 0.2 else 1.0
        img += amp * hemi * brain * (sign * rng.uniform(0.22, 0.4) * mass - 0.06 * halo)
    elif cls == "meningioma":  # round, well bounded, bright, abutting the skull's inner edge
        ang = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.07, 0.12) * lv.lesion
        ex, ey = bu * math.cos(ang), bv * math.sin(ang)
        k = 1.0 - 0.85 * r / math.hypot(ex, ey)
        d = np.sqrt((u - k * ex) ** 2 + (v - k * ey) ** 2)
        disk = _ramp(r - d, 2 * edge) * inner
        disk *= 1.0 + 0.1 * _texture(rng, size, 0.015)
        img += amp * rng.uniform(0.25, 0.42) * disk
    elif cls == "pituitary":  # small mass near the midline at the skull base
        r = rng.uniform(0.05, 0.085) * lv.lesion
        cu, cv = rng.uniform(-0.03, 0.03), rng.uniform(0.56, 0.66) * bv
        d = np.sqrt(((u - cu) / 1.2) ** 2 + (v - cv) ** 2)
        img += amp * rng.uniform(0.28, 0.45) * _ramp(r - d, 3 * edge) * brain

    # Acquisition: blur (point spread), smooth multiplicative bias field, Rician-like noise.
    img = ndimage.gaussian_filter(img, 0.5 * size / 96)
    coef = rng.normal(0.0, lv.bias, size=5).tolist()
    img *= np.exp(
        coef[0] * x + coef[1] * y + 0.5 * (coef[2] * x * x + coef[3] * x * y + coef[4] * y * y)
    )
    sigma = lv.noise * rng.uniform(0.7, 1.3)
    img = np.hypot(
        img + sigma * rng.standard_normal(img.shape, dtype=np.float32),
        sigma * rng.standard_normal(img.shape, dtype=np.float32),
    )
    # Display: contrast and gamma.
    img = np.clip(img * rng.uniform(0.95, 1.2), 0.0, 1.0) ** rng.uniform(0.75, 1.3)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _cpu_count() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} {value!r} is invalid; it must be a whole number of at least 1")
    return int(value)


def generate_demo(
    out: str | Path,
    *,
    train_per_class: int = 60,
    test_per_class: int = 20,
    size: int = 96,
    seed: int = 0,
    difficulty: str = "normal",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, int]]:
    """Write a synthetic brain-MRI data set in the Kaggle brain-tumour folder layout.

    Files are ``OUT/Training/<class>/Tr-<ab>_<NNNN>.jpg`` and ``OUT/Testing/<class>/Te-<ab>_<NNNN>.jpg``
    (``ab`` is ``gl``, ``me``, ``no`` or ``pi``), grayscale JPEG, ``size`` x ``size`` pixels.
    Existing files with the same names are overwritten; other files are left alone.

    Args:
        out: the data set folder to write (created if missing).
        train_per_class: images per class in ``Training/``.
        test_per_class: images per class in ``Testing/``.
        size: image width and height in pixels (32 to 2048).
        seed: non-negative seed; the same seed gives byte-identical files.
        difficulty: ``"easy"`` (large, bright lesions), ``"normal"`` or ``"hard"`` (small, faint
            lesions, more noise and bias).
        progress: called as ``progress(done, total)`` after each image is written.

    Returns:
        Image counts per split and class: ``{"Training": {class: n}, "Testing": {class: n}}``.

    Raises:
        ConfigError: an argument is out of range or unknown.
        DataError: the folder or a file cannot be written.
    """
    n_train = _check_count("train_per_class", train_per_class)
    n_test = _check_count("test_per_class", test_per_class)
    if (
        isinstance(size, bool)
        or not isinstance(size, (int, np.integer))
        or not 32 <= size <= _MAX_SIZE
    ):
        raise ConfigError(
            f"size {size!r} is invalid; it must be a whole number from 32 to {_MAX_SIZE}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed {seed!r} is invalid; it must be a whole number of at least 0")
    if difficulty not in DIFFICULTIES:
        raise ConfigError(
            f"difficulty {difficulty!r} is unknown; choose one of {', '.join(DIFFICULTIES)}"
        )
    level = _LEVELS[difficulty]
    root = Path(out)
    counts = {"Training": n_train, "Testing": n_test}
    jobs: list[tuple[Path, list[int], str]] = []
    try:
        for split_no, (split, prefix) in enumerate(_SPLITS):
            for cls_no, cls in enumerate(CLASSES):
                folder = root / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(counts[split]):
                    name = f"{prefix}-{_ABBREV[cls]}_{i:04d}.jpg"
                    jobs.append((folder / name, [int(seed), split_no, cls_no, i], cls))

        def write(job: tuple[Path, list[int], str]) -> None:
            path, key, cls = job
            pixels = _slice(np.random.default_rng(key), cls, int(size), level)
            Image.fromarray(pixels).save(path, "JPEG", quality=_JPEG_QUALITY)

        # numpy, scipy and Pillow release the GIL in their loops, so threads scale well enough.
        workers = min(_MAX_WORKERS, _cpu_count()) if len(jobs) >= 64 else 1
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            try:
                for done, _ in enumerate(pool.map(write, jobs), start=1):
                    if progress is not None:
                        progress(done, len(jobs))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except OSError as exc:
        raise DataError(f"cannot write the demo data set to {root}: {exc}") from exc
    return {split: dict.fromkeys(CLASSES, n) for split, n in counts.items()}
