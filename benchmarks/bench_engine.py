"""How close mritune's training engine comes to the cost of the model itself.

One run, the same architecture, image size, batch size and images for three pipelines:

1. reference: the reference notebook's data path, fastai ``ImageDataLoaders.from_folder`` with an
   item ``Resize``, decoding every JPEG again in every epoch;
2. mritune: ``mritune.engine.fit`` over the decode-once cache (augmentation off, as (1) has none);
3. ceiling: a plain PyTorch loop over pre-made, normalised tensors: forward, loss, backward and a
   fused AdamW step (PyTorch's fastest update) per training batch, then a forward pass over the
   validation images: the work every epoch of (1) and (2) must do as well, and nothing else.

All three train the same network (fastai's body + head for ``--arch``, random initialisation) on
``Training/`` and validate on ``Testing/`` of a generated dataset, with ``--threads`` torch
threads and no data-loader worker processes. Each pipeline first runs ``--warmup`` epochs that
are not measured (allocator, thread pool and lazy-import warm-up); an epoch's time is the time
between the ends of two consecutive epochs, so it includes everything the pipeline does per
epoch. With ``--repeats R`` the three pipelines run R times in turn and the median epoch is kept,
which evens out a noisy machine; ``--clock cpu`` measures the process's CPU time instead of wall
time, which other programs on a shared machine disturb far less (use it with ``--threads 1``, or
with ``OMP_WAIT_POLICY=PASSIVE`` in the environment so that threads waiting on a busy machine are
not counted as working).
The ratios are printed last:

    (1)/(2)  how much faster mritune's data path is than the reference's
    (2)/(3)  mritune's overhead over the bare model (target on CPU: at most 1.05)

Usage:
    python benchmarks/bench_engine.py                      # resnet18, 64 px, bs 32, 256 images
    python benchmarks/bench_engine.py --size 96 --repeats 3 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

N_CLASSES = 4

#: The clock every pipeline stamps epoch ends with (``--clock``).
_clock = time.perf_counter


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18", help="registered architecture (resnet18)")
    p.add_argument("--size", type=int, default=64, help="image side the models see, px (64)")
    p.add_argument("--source-size", type=int, default=256, help="side of the JPEG files (256)")
    p.add_argument("--bs", type=int, default=32, help="batch size (32)")
    p.add_argument("--n", type=int, default=256, help="training images, a multiple of 4 (256)")
    p.add_argument("--n-valid", type=int, default=64, help="validation images (64)")
    p.add_argument("--epochs", type=int, default=2, help="measured epochs per pipeline (2)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured epochs first (1)")
    p.add_argument("--repeats", type=int, default=1, help="rounds of the three pipelines (1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="what to time (wall)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", metavar="DIR", help="keep data and cache here (default: temp)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.n % N_CLASSES or args.n_valid % N_CLASSES:
        p.error(f"--n and --n-valid must be multiples of {N_CLASSES}")
    if args.epochs < 1 or args.warmup < 0 or args.repeats < 1:
        p.error("need --epochs >= 1, --warmup >= 0 and --repeats >= 1")
    return args


# --- the three pipelines; each returns the times between consecutive epoch ends -------------------


def _measured(stamps: list[float], warmup: int) -> list[float]:
    """Epoch durations from ``[start, end of epoch 1, end of epoch 2, ...]``, warm-up dropped."""
    return [float(d) for d in np.diff(stamps)[warmup:]]


def run_reference(data: Path, args: argparse.Namespace) -> list[float]:
    """fastai's own folder pipeline with an item ``Resize``: decodes every file in every epoch."""
    from fastai.callback.core import Callback
    from fastai.data.transforms import Normalize
    from fastai.losses import CrossEntropyLossFlat
    from fastai.vision.augment import Resize
    from fastai.vision.core import imagenet_stats
    from fastai.vision.data import ImageDataLoaders
    from fastai.vision.learner import model_meta, vision_learner

    from mritune.engine import get_arch

    class Stamp(Callback):
        order = 99

        def before_fit(self) -> None:
            self.stamps = [_clock()]

        def after_epoch(self) -> None:
            self.stamps.append(_clock())

    torch.manual_seed(args.seed)
    dls = ImageDataLoaders.from_folder(
        data, train="Training", valid="Testing", item_tfms=Resize(args.size), bs=args.bs,
        batch_tfms=Normalize.from_stats(*imagenet_stats), num_workers=0, device="cpu",
        seed=args.seed,
    )  # fmt: skip

    spec = get_arch(args.arch)  # the registry's network, as mritune builds it (random weights)

    def arch(*a: Any, **k: Any) -> torch.nn.Module:
        return spec.make()

    model_meta[arch] = spec.meta
    learn = vision_learner(
        dls, arch, pretrained=False, normalize=False, loss_func=CrossEntropyLossFlat(),
        wd=1e-4, ps=0.5,
    )  # fmt: skip
    stamp = Stamp()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.warmup + args.epochs, 1e-3, cbs=[stamp])
    return _measured(stamp.stamps, args.warmup)


def run_mritune(cache: Any, tr: np.ndarray, va: np.ndarray, args: argparse.Namespace) -> list:
    """``mritune.engine.fit`` over the cache; the epoch-end stamps come from ``on_epoch``."""
    from mritune.config import TrainConfig
    from mritune.engine import fit

    cfg = TrainConfig(
        arch=args.arch, pretrained=False, img_size=args.size, bs=args.bs,
        epochs=args.warmup + args.epochs, wd=1e-4, drop=0.5, lr=1e-3, seed=args.seed,
        augment=False, device="cpu", workers=args.threads,
    )  # fmt: skip
    stamps: list[float] = []
    t0 = _clock()

    def on_epoch(epoch: int, metrics: dict) -> bool:
        stamps.append(_clock())
        return True

    fit(cache, tr, va, cfg, on_epoch)
    return _measured([t0, *stamps], args.warmup)


def run_ceiling(cache: Any, tr: np.ndarray, va: np.ndarray, args: argparse.Namespace) -> list:
    """The same network on pre-made normalised tensors: the least work an epoch can be."""
    from mritune.engine._bundle import _build
    from mritune.engine._loader import IMAGENET_MEAN, IMAGENET_STD

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(cache.images[idx])).permute(0, 3, 1, 2)
        x = x.float().div(255)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(), torch.from_numpy(cache.labels[idx])

    xt, yt = tensors(tr)
    xv, yv = tensors(va)
    torch.manual_seed(args.seed)
    model = _build(args.arch, N_CLASSES, 0.5)
    fused = {"fused": True} if hasattr(torch, "_fused_adamw_") else {}
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=1e-4, **fused
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    vbs = max(args.bs, 64)
    stamps = [_clock()]
    for _ in range(args.warmup + args.epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(xt), args.bs):
            b = order[s : s + args.bs]
            loss = loss_fn(model(xt[b]), yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for s in range(0, len(xv), vbs):
                model(xv[s : s + vbs])
        stamps.append(_clock())
    return _measured(stamps, args.warmup)


# --- driver -----------------------------------------------------------------------------------------


def _prepare(
    root: Path, args: argparse.Namespace
) -> tuple[Path, Any, np.ndarray, np.ndarray, float]:
    from mritune.data import build_cache, discover, generate_demo

    data = root / "data"
    generate_demo(
        data, train_per_class=args.n // N_CLASSES, test_per_class=args.n_valid // N_CLASSES,
        size=args.source_size, seed=args.seed,
    )  # fmt: skip
    manifest = discover(data)
    t0 = time.perf_counter()
    cache = build_cache(manifest, args.size, cache_dir=root / "cache", workers=1)
    decode_s = time.perf_counter() - t0
    return data, cache, manifest.indices("train"), manifest.indices("test"), decode_s


def _summary(name: str, periods: list[float], n_images: int) -> dict[str, Any]:
    med = statistics.median(periods)
    return {
        "pipeline": name,
        "epoch_s": [round(p, 4) for p in periods],
        "median_epoch_s": med,
        "images_per_s": n_images / med,
    }


def main(argv: list[str] | None = None) -> int:
    global _clock
    args = _parse(argv)
    _clock = time.perf_counter if args.clock == "wall" else time.process_time
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="mritune-bench-") as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        data, cache, tr, va, decode_s = _prepare(root, args)
        print(
            f"mritune engine benchmark: {args.arch}, {args.size} px (files {args.source_size} px), "
            f"bs {args.bs}, {len(tr)} training + {len(va)} validation images, {args.warmup} "
            f"warm-up + {args.epochs} measured epochs, {args.repeats} round(s), "
            f"{torch.get_num_threads()} torch threads, {args.clock} clock, torch {torch.__version__}, "
            f"{platform.processor() or platform.machine()}"
        )
        print(f"  decode-once cache built in {decode_s:.2f} s (once per dataset and size)")
        runs: dict[str, Callable[[], list[float]]] = {
            "(1) reference: fastai from_folder + Resize": lambda: run_reference(data, args),
            "(2) mritune engine over the cache": lambda: run_mritune(cache, tr, va, args),
            "(3) ceiling: model on pre-made tensors": lambda: run_ceiling(cache, tr, va, args),
        }
        periods: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(args.repeats):
            for name, fn in runs.items():
                torch.set_num_threads(args.threads)
                got = fn()
                periods[name] += got
                print(f"  round {r + 1} {name}: " + ", ".join(f"{p:.3f} s" for p in got))
        rows = [_summary(name, p, len(tr)) for name, p in periods.items()]
    print()
    print(f"{'pipeline':<45} {'epoch s (median)':>17} {'train images/s':>15}")
    for row in rows:
        print(f"{row['pipeline']:<45} {row['median_epoch_s']:>17.3f} {row['images_per_s']:>15.1f}")
    ref, eng, ceil = (row["median_epoch_s"] for row in rows)
    ratios = {"reference/mritune": ref / eng, "mritune/ceiling": eng / ceil}
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "decode_s": decode_s, "rows": rows, "ratios": ratios},
                       indent=2)
        )  # fmt: skip
    print()
    print(f"(1)/(2) reference / mritune: {ratios['reference/mritune']:.2f}x")
    print(f"(2)/(3) mritune / ceiling:   {ratios['mritune/ceiling']:.3f} (target <= 1.05 on CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
