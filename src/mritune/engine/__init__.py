"""Training engine: the only layer that imports fastai.

``fit(cache, train_idx, valid_idx, config, on_epoch)`` is the seam the tuning and evaluation layers
call; bundles, prediction and Grad-CAM live here too.
"""

from __future__ import annotations

from mritune.engine._archs import ArchSpec, get_arch, list_archs, register_arch
from mritune.engine._bundle import Bundle, library_versions, load_bundle, save_bundle
from mritune.engine._fit import EpochCallback, FitResult, fit, resolve_device, seed_everything
from mritune.engine._metrics import classification_metrics, plot_confusion_matrix
from mritune.engine._predict import (
    Prediction,
    expand_paths,
    gradcam_overlays,
    predict_arrays,
    predict_files,
)
from mritune.engine._workflows import (
    Prepared,
    TrainOutcome,
    evaluate_model,
    evaluate_on,
    evaluate_split,
    prepare,
    reference_split,
    train_model,
)

__all__ = [
    "Prepared",
    "TrainOutcome",
    "evaluate_model",
    "evaluate_on",
    "evaluate_split",
    "prepare",
    "reference_split",
    "train_model",
    "ArchSpec",
    "Bundle",
    "EpochCallback",
    "FitResult",
    "Prediction",
    "classification_metrics",
    "expand_paths",
    "fit",
    "get_arch",
    "gradcam_overlays",
    "library_versions",
    "list_archs",
    "load_bundle",
    "plot_confusion_matrix",
    "predict_arrays",
    "predict_files",
    "register_arch",
    "resolve_device",
    "save_bundle",
    "seed_everything",
]
