"""Inference with a bundle: probabilities for arrays or image files, and Grad-CAM overlays."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from mritune.data import Problem, load_array
from mritune.data._image import IMAGE_FORMATS
from mritune.engine._bundle import Bundle
from mritune.engine._fit import resolve_device

__all__ = ["predict_arrays", "predict_files", "Prediction", "gradcam_overlays", "expand_paths"]

_IMAGE_EXTS = {ext for exts in IMAGE_FORMATS.values() for ext in exts}


def _to_tensor(batch: np.ndarray, bundle: Bundle, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float() / 255
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(bundle.normalization["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(bundle.normalization["std"], device=device).view(1, -1, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def predict_arrays(
    bundle: Bundle, images: np.ndarray, idx: Sequence[int] | None = None, *, bs: int = 64,
    device: str = "auto",
) -> np.ndarray:  # fmt: skip
    """Class probabilities (rows sum to 1) for uint8 (N, S, S, C) ``images`` (rows ``idx``)."""
    dev = resolve_device(device)
    model = bundle.model.to(dev).eval()
    rows = np.arange(len(images)) if idx is None else np.asarray(idx, dtype=np.int64)
    out = [
        torch.softmax(model(_to_tensor(images[rows[s : s + bs]], bundle, dev)).float(), dim=1)
        .cpu()
        .numpy()
        for s in range(0, len(rows), bs)
    ]
    model.to("cpu")
    if not out:
        return np.zeros((0, len(bundle.classes)), dtype=np.float32)
    return np.concatenate(out)


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Images named directly, plus images found (recursively, sorted) in named folders."""
    files: list[Path] = []
    problems: list[Problem] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _IMAGE_EXTS
            )
            if not found:
                problems.append(Problem(str(p), "folder holds no images"))
            files += found
        elif p.is_file():
            files.append(p)
        else:
            problems.append(Problem(str(p), "no such file or folder"))
    return files, problems


@dataclasses.dataclass
class Prediction:
    paths: list[str]
    probs: np.ndarray
    images: np.ndarray  # uint8 (N, S, S, C), as the model saw them
    problems: list[Problem]

    def labels(self, classes: Sequence[str]) -> list[str]:
        return [classes[i] for i in self.probs.argmax(1)]


def predict_files(
    bundle: Bundle,
    paths: Iterable[str | Path],
    *,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> Prediction:
    """Predict image files and folders; unreadable files are reported in ``problems`` and skipped."""
    files, problems = expand_paths(paths)
    ok, arrays = [], []
    for k, f in enumerate(files):
        try:
            arrays.append(load_array(f, bundle.img_size, bundle.channels))
            ok.append(str(f))
        except Exception as exc:  # noqa: BLE001 - any decoder error: report and go on
            problems.append(Problem(str(f), f"cannot decode: {exc}"))
        if progress:
            progress(k + 1, len(files))
    size, ch = bundle.img_size, bundle.channels
    images = np.stack(arrays) if arrays else np.zeros((0, size, size, ch), dtype=np.uint8)
    probs = predict_arrays(bundle, images, device=device)
    return Prediction(paths=ok, probs=probs, images=images, problems=problems)


def gradcam_overlays(
    bundle: Bundle, images: np.ndarray, targets: Sequence[int] | None = None, *, bs: int = 16
) -> list[np.ndarray]:
    """Grad-CAM heat maps over each image (uint8 RGB overlays), for ``targets`` classes (default:
    the predicted class). Uses the ``grad-cam`` package on the body's last block."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = bundle.model.cpu().eval()
    layer = model[0][-1]  # fastai vision model: Sequential(body, head); body's last block
    overlays: list[np.ndarray] = []
    with GradCAM(model=model, target_layers=[layer]) as cam:
        for s in range(0, len(images), bs):
            batch = images[s : s + bs]
            x = _to_tensor(batch, bundle, torch.device("cpu"))
            tg = None
            if targets is not None:
                tg = [ClassifierOutputTarget(int(t)) for t in targets[s : s + bs]]
            maps = cam(input_tensor=x, targets=tg)
            for img, heat in zip(batch, maps):
                rgb = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
                overlays.append(show_cam_on_image(rgb.astype(np.float32) / 255, heat, use_rgb=True))
    return overlays
