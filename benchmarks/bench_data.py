"""Decode-per-epoch loading versus the decode-once cache, in images per second.

(a) decode: what a per-item dataset does every epoch: open each JPEG, convert to RGB, resize,
    and stack a uint8 batch.
(b) cache:  ``build_cache`` once, then every epoch reads batches ``cache.images[sorted idx]``.

Both read the same images, in the same random batches, for the same number of epochs. The cache
build is timed separately (it is paid once per dataset and size, not once per epoch or trial).
The data layer only: torch is never imported.

Usage::

    python benchmarks/bench_data.py [--per-class 100] [--src-size 256] [--size 128] [--epochs 2]

The last line is ``cache/decode speed-up: N.Nx``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mritune.data import build_cache, discover, generate_demo


def _batches(n: int, bs: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The same shuffled batches of indices for both loaders, epoch after epoch."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        perm = rng.permutation(n)
        out += [perm[s : s + bs] for s in range(0, n, bs)]
    return out


def _decode_batch(paths: list[str], idx: np.ndarray, size: int) -> np.ndarray:
    items = []
    for i in idx:
        with Image.open(paths[i]) as img:
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            items.append(np.asarray(rgb, dtype=np.uint8))
    return np.stack(items)


def _rate(n_images: int, seconds: float) -> float:
    return n_images / seconds if seconds > 0 else float("inf")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int, default=100, help="Training images per class (100)")
    p.add_argument("--src-size", type=int, default=256, help="side of the JPEGs on disk (256)")
    p.add_argument("--size", type=int, default=128, help="side the loaders resize to (128)")
    p.add_argument("--epochs", type=int, default=2, help="epochs read by each loader (2)")
    p.add_argument("--bs", type=int, default=64, help="batch size (64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mritune-bench-") as tmp:
        root = Path(tmp) / "data"
        t = time.perf_counter()
        generate_demo(root, train_per_class=args.per_class, test_per_class=1, size=args.src_size)
        print(f"demo data: {time.perf_counter() - t:.1f} s to write", flush=True)
        manifest = discover(root)
        train = manifest.indices("train")
        paths = [manifest.paths[i] for i in train]
        n = len(paths)
        batches = _batches(n, args.bs, args.epochs, args.seed)
        seen = sum(len(b) for b in batches)
        print(
            f"{n} training JPEGs of {args.src_size} px -> {args.size} px RGB, "
            f"{args.epochs} epochs, batches of {args.bs}",
            flush=True,
        )

        t = time.perf_counter()
        checksum_decode = 0
        for idx in batches:
            checksum_decode += int(_decode_batch(paths, idx, args.size).sum(dtype=np.int64))
        decode_s = time.perf_counter() - t
        decode_rate = _rate(seen, decode_s)
        print(f"(a) decode per epoch: {decode_rate:10.0f} images/s ({decode_s:.2f} s)", flush=True)

        # Cache only the training images, so both loaders read the same set.
        manifest.paths = paths
        manifest.labels = manifest.labels[train]
        t = time.perf_counter()
        cache = build_cache(manifest, args.size, channels=3, cache_dir=Path(tmp) / "cache")
        build_s = time.perf_counter() - t
        print(f"    cache build, once: {_rate(n, build_s):9.0f} images/s ({build_s:.2f} s)")

        t = time.perf_counter()
        checksum_cache = 0
        for idx in batches:
            batch = cache.images[np.sort(idx)]
            checksum_cache += int(batch.sum(dtype=np.int64))
        cache_s = time.perf_counter() - t
        cache_rate = _rate(seen, cache_s)
        print(f"(b) cached batches:   {cache_rate:10.0f} images/s ({cache_s:.3f} s)")
        # Same images, same work: the pixel sums differ only by the resize of JPEG-draft decoding.
        diff = abs(checksum_cache - checksum_decode) / max(checksum_decode, 1)
        print(f"    pixel-sum difference between the loaders: {diff:.3%}")
        del cache, batch

    assert "torch" not in sys.modules, "the data layer must not import torch"
    print(f"cache/decode speed-up: {cache_rate / decode_rate:.1f}x")
    return 0


if __name__ == "__main__":  # spawn workers of build_cache re-import this file: keep it guarded
    sys.exit(main())
