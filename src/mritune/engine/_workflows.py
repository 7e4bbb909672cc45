"""Train, evaluate and predict as whole jobs (what the ``train``/``evaluate``/``predict`` commands
call): data in, files out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mritune.config import TrainConfig
from mritune.data import ImageCache, Inspection, build_cache, holdout, inspect, originals
from mritune.engine._bundle import Bundle, load_bundle, save_bundle
from mritune.engine._fit import EpochCallback, FitResult, fit
from mritune.engine._metrics import classification_metrics, plot_confusion_matrix
from mritune.engine._predict import predict_arrays
from mritune.errors import ConfigError, DataError

__all__ = [
    "Prepared",
    "prepare",
    "reference_split",
    "train_model",
    "evaluate_split",
    "evaluate_model",
    "TrainOutcome",
]


@dataclasses.dataclass
class Prepared:
    """A dataset ready for training: inspection (manifest + duplicates) and the image cache."""

    inspection: Inspection
    cache: ImageCache

    @property
    def manifest(self):  # noqa: ANN201
        return self.inspection.manifest

    @property
    def groups(self) -> np.ndarray:
        return self.inspection.quality.groups


def prepare(
    data: str | Path,
    img_size: int,
    *,
    cache_dir: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Prepared:
    """Inspect ``data`` (hashes cached) and build or reuse its image cache at ``img_size``."""

    def stage(name: str) -> Callable[[int, int], None] | None:
        return (lambda d, t: progress(name, d, t)) if progress else None

    insp = inspect(data, cache_dir=cache_dir, progress=stage("hashing images"))
    cache = build_cache(
        insp.manifest, img_size, cache_dir=cache_dir, progress=stage("caching images")
    )
    return Prepared(insp, cache)


def reference_split(prepared: Prepared, valid_pct: float = 0.2, seed: int = 42):  # noqa: ANN201
    """The reference notebook's split, reproduced: fastai ``get_image_files`` over ``Training/``
    and ``RandomSplitter(valid_pct, seed)``; returns (train, valid) manifest indices."""
    from fastai.data.transforms import RandomSplitter, get_image_files

    if not 0.0 < valid_pct < 1.0:
        raise ConfigError(f"valid_pct is {valid_pct}, but must be 0 < valid_pct < 1")
    m = prepared.manifest
    train_dirs = {Path(m.paths[i]).parent.parent for i in m.indices("train", augmented=False)}
    if len(train_dirs) != 1:
        raise ConfigError("the reference split needs a Training/ folder of class folders")
    files = [str(Path(f).resolve()) for f in get_image_files(next(iter(train_dirs)))]
    where = {p: i for i, p in enumerate(m.paths)}
    tr, va = RandomSplitter(valid_pct=valid_pct, seed=seed)(files)
    # files that the manifest skipped as unusable are dropped here too
    to_idx = lambda ix: np.array(sorted(where[files[k]] for k in ix if files[k] in where))  # noqa: E731
    return to_idx(tr), to_idx(va)


def evaluate_split(
    probs: np.ndarray, idx: np.ndarray, prepared: Prepared, classes: list[str]
) -> dict[str, Any]:
    """All metrics of ``probs`` (rows = ``idx``), plus leaked vs novel accuracy when the data
    layer found test images that duplicate training images."""
    m = prepared.manifest
    y = m.labels[idx]
    out = classification_metrics(y, probs, classes)
    leaked = {x["index"] for x in prepared.inspection.quality.leaked}
    is_leaked = np.array([i in leaked for i in idx], dtype=bool)
    if is_leaked.any():
        pred = probs.argmax(1)
        for name, mask in (("leaked", is_leaked), ("novel", ~is_leaked)):
            n = int(mask.sum())
            acc = float((pred[mask] == y[mask]).mean()) if n else None
            out[name] = {"n": n, "accuracy": acc}
    return out


@dataclasses.dataclass
class TrainOutcome:
    result: FitResult
    valid_metrics: dict[str, Any] | None
    test_metrics: dict[str, Any] | None
    bundle_dir: Path


def train_model(
    data: str | Path,
    config: TrainConfig,
    out: str | Path,
    *,
    valid_pct: float = 0.2,
    split: str = "stratified",
    cache_dir: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainOutcome:
    """Train on ``Training/`` minus a validation holdout, test on ``Testing/`` if present, and
    write a model bundle to ``out``.

    ``split``: ``stratified`` (class-stratified, grouped by duplicate groups so no near-copy
    straddles train and valid), ``reference`` (the notebook's ``RandomSplitter(0.2, seed=42)``), or
    ``none`` (train on all of ``Training/``; no validation).
    """
    prep = prepare(data, config.img_size, cache_dir=cache_dir, progress=progress)
    m = prep.manifest
    pool = m.indices("train")
    if len(pool) == 0:
        raise DataError(f"{data}: no training images (expected Training/ or train/)")
    if split == "reference":
        tr, va = reference_split(prep, valid_pct, seed=42)
    elif split == "none":
        tr, va = pool, np.array([], dtype=np.int64)
    elif split == "stratified":
        if m.has_split("valid"):
            tr, va = pool, m.indices("valid")
        else:
            tr, va = holdout(
                pool, m.labels, valid_pct=valid_pct, seed=config.seed, groups=prep.groups
            )
    else:
        raise ConfigError(f"split '{split}' is unknown; choose stratified, reference or none")
    va = originals(m, va)  # augmented variants train, never score
    res = fit(prep.cache, tr, va, config, on_epoch)
    valid_metrics = evaluate_split(res.probs, res.valid_idx, prep, m.classes) if len(va) else None
    test_metrics = None
    test_idx = prep.cache.usable(m.indices("test", augmented=False))
    out = Path(out)
    meta_split = {"train": int(len(tr)), "valid": int(len(va)), "split": split}
    bundle_dir = save_bundle(
        res.model, out, arch=config.arch, classes=m.classes, img_size=config.img_size,
        channels=prep.cache.channels, normalization=res.normalization,
        hyperparameters=config.to_dict(), data_fingerprint=prep.cache.fingerprint,
        extra={"data": str(m.root), "split": meta_split, "epochs_trained": res.epochs_trained,
               "history": res.history},
    )  # fmt: skip
    if len(test_idx):
        bundle = load_bundle(bundle_dir)
        test_metrics = evaluate_on(bundle, prep, test_idx, out / "test", device=config.device)
    return TrainOutcome(res, valid_metrics, test_metrics, bundle_dir)


def evaluate_on(
    bundle: Bundle, prep: Prepared, idx: np.ndarray, out: Path | None, *, device: str = "auto"
) -> dict[str, Any]:
    """Metrics of ``bundle`` on manifest rows ``idx``; writes ``confusion_matrix.png`` under
    ``out`` when given."""
    if prep.cache.size != bundle.img_size:
        raise ConfigError("internal: cache size differs from the model's image size")
    probs = predict_arrays(bundle, prep.cache.images, idx, device=device)
    metrics = evaluate_split(probs, idx, prep, bundle.classes)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion_matrix(
            np.array(metrics["confusion_matrix"]), bundle.classes, out / "confusion_matrix.png",
            title=f"confusion matrix (n={metrics['n']})",
        )  # fmt: skip
    return metrics


def evaluate_model(
    model_dir: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a saved bundle on a split of ``data`` (``test``, ``valid`` or ``train``)."""
    bundle = load_bundle(model_dir)
    prep = prepare(data, bundle.img_size, cache_dir=cache_dir, progress=progress)
    m = prep.manifest
    if list(m.classes) != bundle.classes:
        raise DataError(
            f"{data}: classes {m.classes} differ from the model's {bundle.classes}; evaluate on "
            f"data with the same class folders"
        )
    idx = prep.cache.usable(m.indices(split, augmented=False))
    if len(idx) == 0:
        raise DataError(
            f"{data}: no images in split '{split}' (splits here: {', '.join(sorted(set(m.splits.tolist())))})"
        )
    metrics = evaluate_on(bundle, prep, idx, Path(out) if out else None, device=device)
    metrics["split"] = split
    metrics["model"] = str(model_dir)
    metrics["data"] = str(m.root)
    return metrics
