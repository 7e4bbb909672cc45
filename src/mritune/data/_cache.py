"""The decode-once image cache: every image decoded and resized once, into a shared memmap."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from filelock import FileLock

from mritune.data._image import load_array
from mritune.data._manifest import Manifest, Problem
from mritune.errors import CacheError

__all__ = [
    "ImageCache",
    "build_cache",
    "cache_fingerprint",
    "data_fingerprint",
    "default_cache_dir",
]

_FORMAT_VERSION = 1
_PARALLEL_MIN = 256
_SPAWN_COST_S = 1.5  # seconds to start worker processes that import mritune.data (measured: ~1)
_CHUNK = 64


def default_cache_dir() -> Path:
    """``$MRITUNE_CACHE_DIR`` if set, else ``runs/cache`` under the working directory."""
    return Path(os.environ.get("MRITUNE_CACHE_DIR", "runs/cache"))


@dataclasses.dataclass
class ImageCache:
    """Decoded images of a manifest: ``images[i]`` is image ``i`` as uint8 (S, S, C).

    ``images`` is a read-only memory map, shared between processes through the page cache.
    ``bad[i]`` is True when image ``i`` could not be decoded (its pixels are zero and it must not be
    used; :meth:`usable` filters index arrays).
    """

    directory: Path
    images: np.ndarray
    labels: np.ndarray
    bad: np.ndarray
    size: int
    channels: int
    fingerprint: str
    classes: list[str]
    problems: list[Problem]
    decoded: int = 0  # images decoded by this call (0 when the cache was reused)

    def __len__(self) -> int:
        return len(self.labels)

    def usable(self, idx: np.ndarray) -> np.ndarray:
        """``idx`` without the images that failed to decode."""
        idx = np.asarray(idx, dtype=np.int64)
        return idx[~self.bad[idx]]


def cache_fingerprint(
    manifest: Manifest,
    size: int,
    channels: int,
    stats: Sequence[tuple[str, int, int]] | None = None,
) -> str:
    """Hash of (file list, byte sizes, mtimes, labels, target size, channels, format version)."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"v{_FORMAT_VERSION}|{size}|{channels}|{','.join(manifest.classes)}\n".encode())
    for (path, nbytes, mtime), label in zip(stats or manifest.file_stats(), manifest.labels):
        h.update(f"{path}|{nbytes}|{mtime}|{int(label)}\n".encode())
    return h.hexdigest()


def _decode_chunk(
    images_path: str, paths: list[str], start: int, size: int, channels: int
) -> list[tuple[int, str]]:
    """Decode ``paths`` into rows ``start...`` of the memmap at ``images_path``; returns failures."""
    out = np.load(images_path, mmap_mode="r+")
    failures = []
    for k, p in enumerate(paths):
        try:
            out[start + k] = load_array(p, size, channels)
        except Exception as exc:  # noqa: BLE001 - any decoder error means: skip this image
            failures.append((start + k, f"cannot decode: {exc}"))
    out.flush()
    del out
    return failures


def _load(directory: Path, decoded: int = 0) -> ImageCache:
    meta = json.loads((directory / "meta.json").read_text())
    return ImageCache(
        directory=directory,
        images=np.load(directory / "images.npy", mmap_mode="r"),
        labels=np.load(directory / "labels.npy"),
        bad=np.load(directory / "bad.npy"),
        size=meta["size"],
        channels=meta["channels"],
        fingerprint=meta["fingerprint"],
        classes=meta["classes"],
        problems=[Problem(**p) for p in meta["problems"]],
        decoded=decoded,
    )


def build_cache(
    manifest: Manifest,
    size: int,
    *,
    channels: int = 3,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageCache:
    """Return the cache for ``manifest`` at ``size`` px, building it only if it does not exist.

    The cache lives in ``cache_dir/<fingerprint>/``. It is built in a temporary folder and renamed
    into place, under a file lock, so two processes asking at once decode once and neither ever
    sees a half-written cache. A file that fails to decode is reported in ``problems``, marked in
    ``bad`` and skipped by :meth:`ImageCache.usable`; it never stops the build.

    Example:
        >>> cache = build_cache(discover("runs/demo/data"), 64)   # doctest: +SKIP
        >>> cache.images.shape                                    # doctest: +SKIP
        (320, 64, 64, 3)
    """
    if size < 8 or size > 4096:
        raise CacheError(f"image size {size} is out of range; choose 8 <= size <= 4096")
    if channels not in (1, 3):
        raise CacheError(f"channels {channels} is not supported; choose 1 or 3")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"{root}: cannot create the cache folder ({exc.strerror})") from None
    try:
        fp = cache_fingerprint(manifest, size, channels)
    except OSError as exc:  # a file was moved or deleted after discovery
        raise CacheError(
            f"{exc.filename}: cannot read it ({exc.strerror}); the data changed after it was "
            f"discovered, so discover it again"
        ) from None
    final = root / fp
    if (final / "meta.json").exists():
        return _load(final)
    with FileLock(str(root / f"{fp}.lock")):
        if (final / "meta.json").exists():  # another process built it while we waited
            return _load(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{fp}.", dir=root))
        try:
            problems = _decode_all(manifest, tmp, size, channels, workers, progress)
            bad = np.zeros(len(manifest), dtype=bool)
            for i, _ in problems:
                bad[i] = True
            np.save(tmp / "labels.npy", manifest.labels.astype(np.int64))
            np.save(tmp / "bad.npy", bad)
            meta = {
                "format": _FORMAT_VERSION,
                "fingerprint": fp,
                "size": size,
                "channels": channels,
                "n": len(manifest),
                "classes": manifest.classes,
                "paths": manifest.paths,
                "problems": [{"path": manifest.paths[i], "reason": r} for i, r in problems],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / "meta.json").write_text(json.dumps(meta))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _load(final, decoded=len(manifest))


def _decode_all(
    manifest: Manifest,
    tmp: Path,
    size: int,
    channels: int,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> list[tuple[int, str]]:
    n = len(manifest)
    images_path = str(tmp / "images.npy")
    arr = np.lib.format.open_memmap(
        images_path, mode="w+", dtype=np.uint8, shape=(n, size, size, channels)
    )
    del arr
    chunks = [(s, manifest.paths[s : s + _CHUNK]) for s in range(0, n, _CHUNK)]
    workers = workers or os.cpu_count() or 1
    failures: list[tuple[int, str]] = []
    done = 0
    # Decode here first. Worker processes take over only when the time left, measured on the
    # chunks done so far, is well above what starting them costs: for a few hundred small images
    # spawning workers (each imports numpy, Pillow and mritune) is slower than decoding them.
    t0 = time.perf_counter()
    k = 0
    while k < len(chunks):
        start, paths = chunks[k]
        failures += _decode_chunk(images_path, paths, start, size, channels)
        done += len(paths)
        k += 1
        if progress:
            progress(done, n)
        if workers > 1 and n >= _PARALLEL_MIN:
            left_s = (time.perf_counter() - t0) / done * (n - done)
            if left_s > 2 * _SPAWN_COST_S:  # then left/workers + spawn cost < left
                break
    if k == len(chunks):
        return failures
    # spawn, not fork: the parent may hold torch/OpenMP threads that a fork would deadlock on.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [
            (len(paths), pool.submit(_decode_chunk, images_path, paths, start, size, channels))
            for start, paths in chunks[k:]
        ]
        for count, fut in futures:
            failures += fut.result()
            done += count
            if progress:
                progress(done, n)
    return failures


def data_fingerprint(manifest: Manifest) -> str:
    """Hash of the dataset alone (files, byte sizes, mtimes, labels), whatever the image size."""
    return cache_fingerprint(manifest, 0, 0)
