"""Model bundles: ``model.safetensors`` (weights) + ``model.json`` (everything else). No pickle."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from fastai.vision.learner import create_vision_model, model_meta
from safetensors.torch import load_file, save_file
from torch import nn

from mritune.engine._archs import get_arch
from mritune.errors import BundleError, ConfigError

__all__ = ["Bundle", "save_bundle", "load_bundle", "library_versions"]

BUNDLE_FORMAT = 1


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import fastai
    import numpy
    import torchvision

    import mritune

    out = {
        "mritune": mritune.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "fastai": fastai.__version__,
        "numpy": numpy.__version__,
    }
    from importlib.metadata import PackageNotFoundError, version

    try:
        out["optuna"] = version("optuna")  # read without importing it (layer rule)
    except PackageNotFoundError:  # pragma: no cover
        pass
    return out


@dataclasses.dataclass
class Bundle:
    """A loaded model: the network (eval mode, CPU) and its description."""

    model: nn.Module
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def img_size(self) -> int:
        return int(self.meta["img_size"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    @property
    def normalization(self) -> dict[str, list[float]]:
        return self.meta["normalization"]


def _build(arch: str, n_out: int, drop: float) -> nn.Module:
    spec = get_arch(arch)

    def make(*args: Any, **kwargs: Any) -> nn.Module:
        return spec.make()

    model_meta[make] = spec.meta
    try:
        return create_vision_model(make, n_out, pretrained=False, ps=drop)
    finally:
        model_meta.pop(make, None)


def save_bundle(
    model: nn.Module,
    out_dir: str | Path,
    *,
    arch: str,
    classes: list[str],
    img_size: int,
    channels: int,
    normalization: dict[str, list[float]],
    hyperparameters: dict[str, Any],
    data_fingerprint: str,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/model.json``; returns ``out_dir``.

    Both files are written to temporary names first and renamed into place, so an interrupted
    save never leaves a half-written bundle over a good one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": BUNDLE_FORMAT,
        "arch": arch,
        "classes": list(classes),
        "img_size": img_size,
        "channels": channels,
        "normalization": normalization,
        "drop": float(hyperparameters.get("drop", 0.5)),
        "hyperparameters": hyperparameters,
        "data_fingerprint": data_fingerprint,
        "metrics": metrics or {},
        "versions": library_versions(),
        "n_tensors": len(state),
        **(extra or {}),
    }
    tmp_w, tmp_j = out / ".model.safetensors.tmp", out / ".model.json.tmp"
    save_file(state, str(tmp_w), metadata={"format": "mritune", "arch": arch})
    tmp_j.write_text(json.dumps(meta, indent=2, default=float))
    os.replace(tmp_w, out / "model.safetensors")
    os.replace(tmp_j, out / "model.json")
    return out


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle folder (or its ``model.json`` / ``model.safetensors``); never unpickles.

    Raises:
        BundleError: a file is missing or unreadable, or the weights do not fit the description.
    """
    p = Path(path)
    folder = p.parent if p.is_file() else p
    jpath, wpath = folder / "model.json", folder / "model.safetensors"
    for f in (jpath, wpath):
        if not f.is_file():
            raise BundleError(
                f"{f}: missing; a model bundle is a folder written by `mritune train`"
            )
    try:
        meta = json.loads(jpath.read_text())
        arch, classes = meta["arch"], meta["classes"]
        int(meta["img_size"]), int(meta["channels"]), meta["normalization"]["mean"]
        drop = float(meta.get("drop", 0.5))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{jpath}: not a valid model description ({exc})") from None
    try:
        state = load_file(str(wpath))
    except Exception as exc:  # noqa: BLE001 - any reader error means a damaged file
        raise BundleError(f"{wpath}: cannot read the weights ({exc})") from None
    try:
        model = _build(arch, len(classes), drop)
    except ConfigError as exc:  # an architecture this mritune does not know (newer bundle?)
        raise BundleError(f"{jpath}: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        # torch's first line is only "Error(s) in loading state_dict for ..."; the next says what.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = (lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__)[:240]
        raise BundleError(
            f"{folder}: model.json ({arch}, {len(classes)} classes) and model.safetensors "
            f"disagree ({first}); the two files must come from the same `mritune train` run"
        ) from None
    return Bundle(model=model.eval(), meta=meta)
