"""Classification metrics from integer targets and class-probability matrices (numpy only).

Conventions:

* Zero division gives ``0.0`` (e.g. the precision of a class that is never predicted), never NaN,
  so every result is JSON-serialisable.
* ``balanced_accuracy`` averages recall over the classes that occur in ``y`` and ``macro_f1``
  averages F1 over the classes that occur in ``y`` or ``pred``; both match scikit-learn's
  defaults. A class absent from both is not evaluated, so it does not drag the mean to 0.
* AUROC is one-vs-rest, computed exactly from average ranks (the Mann-Whitney statistic, equal to
  ``sklearn.metrics.roc_auc_score``). A class without positives or without negatives has no AUROC
  (``None``) and is left out of ``macro_auroc``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "calibration_bins",
    "classification_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "macro_f1",
    "plot_confusion_matrix",
]


def _labels(values: np.ndarray | Sequence[int], name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D class indices, but has shape {arr.shape}.")
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise ValueError(
        f"`{name}` must hold integer class indices, but has dtype {arr.dtype}; "
        "pass class indices (e.g. probs.argmax(1)), not probabilities or names."
    )


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Count matrix with rows = true class and columns = predicted class.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
        [[1, 0], [1, 1]]
    """
    y, pred = _labels(y, "y"), _labels(pred, "pred")
    if y.shape != pred.shape:
        raise ValueError(f"`y` has {y.size} values but `pred` has {pred.size}; they must match.")
    if n_classes < 1:
        raise ValueError(f"The value of `n_classes` is {n_classes}, but must be `n_classes >= 1`.")
    for name, arr in (("y", y), ("pred", pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(
                f"`{name}` holds values in [{arr.min()}, {arr.max()}], but class indices must "
                f"be in [0, {n_classes - 1}] for n_classes={n_classes}."
            )
    flat = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num / den with 0.0 where den == 0."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)  # true count per class
    predicted = cm.sum(axis=0).astype(float)
    fp, fn = predicted - tp, support - tp
    tn = cm.sum() - tp - fp - fn
    precision, recall = _div(tp, predicted), _div(tp, support)
    return {
        "precision": precision,
        "recall": recall,
        "specificity": _div(tn, tn + fp),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "support": support,
        "predicted": predicted,
    }


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of correct predictions (0.0 for no samples).

    Example:
        >>> accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
        0.75
    """
    y, pred = _labels(y, "y"), _labels(pred, "pred")
    if y.shape != pred.shape:
        raise ValueError(f"`y` has {y.size} values but `pred` has {pred.size}; they must match.")
    return float(np.mean(y == pred)) if y.size else 0.0


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in ``y`` (0.0 for no samples).

    Example:
        >>> balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2)
        0.5
    """
    stats = _per_class(confusion_matrix(y, pred, n_classes))
    present = stats["support"] > 0
    return float(stats["recall"][present].mean()) if present.any() else 0.0


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in ``y`` or ``pred`` (0.0 for no samples).

    Example:
        >>> round(macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2), 4)
        0.7333
    """
    stats = _per_class(confusion_matrix(y, pred, n_classes))
    present = (stats["support"] > 0) | (stats["predicted"] > 0)
    return float(stats["f1"][present].mean()) if present.any() else 0.0


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new_group = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size, dtype=float)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(new_group) - 1]
    return ranks


def _auroc(positive: np.ndarray, score: np.ndarray) -> float | None:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = _average_ranks(score)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _check_probs(y: np.ndarray, probs: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[0] != y.size:
        raise ValueError(
            f"`probs` must have shape (n_samples, n_classes) = ({y.size}, ...), "
            f"but has shape {probs.shape}."
        )
    if n_classes is not None and probs.shape[1] != n_classes:
        raise ValueError(f"`probs` has {probs.shape[1]} columns but there are {n_classes} classes.")
    if probs.size and (
        not np.all(np.isfinite(probs)) or probs.min() < -1e-6 or probs.max() > 1 + 1e-6
    ):
        raise ValueError(
            "`probs` must hold finite probabilities in [0, 1]; apply softmax to the logits first."
        )
    return probs


def calibration_bins(y: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, list]:
    """Top-1 reliability data: equal-width confidence bins ``(lower, upper]`` over [0, 1].

    Returns lists ``lower``, ``upper``, ``count``, ``accuracy`` and ``confidence`` (mean top-1
    probability); empty bins have accuracy and confidence 0.0.

    Example:
        >>> calibration_bins(np.array([0, 1]), np.array([[0.9, 0.1], [0.7, 0.3]]), 2)["count"]
        [0, 2]
    """
    if n_bins < 1:
        raise ValueError(f"The value of `n_bins` is {n_bins}, but must be `n_bins >= 1`.")
    y = _labels(y, "y")
    probs = _check_probs(y, probs)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges, right=True) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    return {
        "lower": edges[:-1].tolist(),
        "upper": edges[1:].tolist(),
        "count": count.tolist(),
        "accuracy": _div(np.bincount(index, correct, n_bins), count).tolist(),
        "confidence": _div(np.bincount(index, confidence, n_bins), count).tolist(),
    }


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE: sum over bins of (bin size / n) * |accuracy - mean confidence| (0.0 for no samples).

    Example:
        >>> expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))
        0.0
    """
    bins = calibration_bins(y, probs, n_bins)
    count = np.asarray(bins["count"], dtype=float)
    if count.sum() == 0:
        return 0.0
    gap = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float(np.sum(count * gap) / count.sum())


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], *, n_bins: int = 15
) -> dict:
    """All reporting metrics of one prediction set, as a JSON-serialisable dict.

    Args:
        y_true: integer class index per sample, shape (n,).
        probs: class probabilities, shape (n, len(classes)); the prediction is the argmax.
        classes: class names, in index order.
        n_bins: equal-width confidence bins for the expected calibration error.

    Returns:
        ``n``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``per_class`` (name ->
        ``precision``, ``recall`` (= sensitivity), ``specificity``, ``f1``, ``support``,
        ``auroc`` or None), ``macro_auroc`` (None if no class has one), ``ece``,
        ``confusion_matrix`` (rows = true, columns = predicted) and ``classes``.

    Example:
        >>> m = classification_metrics(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]), ["a", "b"])
        >>> m["accuracy"], m["macro_auroc"], m["per_class"]["b"]["recall"]
        (1.0, 1.0, 1.0)
    """
    classes = [str(c) for c in classes]
    y = _labels(y_true, "y_true")
    if y.size == 0:
        raise ValueError("`y_true` is empty: there are no predictions to score.")
    probs = _check_probs(y, probs, len(classes))
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(y, pred, len(classes))
    stats = _per_class(cm)
    aurocs = [_auroc(y == k, probs[:, k]) for k in range(len(classes))]
    per_class = {
        name: {
            "precision": float(stats["precision"][k]),
            "recall": float(stats["recall"][k]),
            "specificity": float(stats["specificity"][k]),
            "f1": float(stats["f1"][k]),
            "support": int(stats["support"][k]),
            "auroc": aurocs[k],
        }
        for k, name in enumerate(classes)
    }
    defined = [a for a in aurocs if a is not None]
    return {
        "n": int(y.size),
        "accuracy": accuracy(y, pred),
        "balanced_accuracy": balanced_accuracy(y, pred, len(classes)),
        "macro_f1": macro_f1(y, pred, len(classes)),
        "per_class": per_class,
        "macro_auroc": float(np.mean(defined)) if defined else None,
        "ece": expected_calibration_error(y, probs, n_bins),
        "confusion_matrix": cm.tolist(),
        "classes": classes,
    }


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[int]],
    classes: Sequence[str],
    path: str | os.PathLike[str],
    title: str,
) -> None:
    """Write a PNG of ``cm``: counts in the cells, colour = row-normalised fraction (recall).

    Uses matplotlib's Agg canvas directly, so no global backend or pyplot state is touched.

    Example:
        >>> plot_confusion_matrix([[5, 1], [0, 4]], ["glioma", "notumor"], "cm.png", "Test")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(
            f"`cm` has shape {cm.shape} but there are {k} classes; expected ({k}, {k})."
        )
    fraction = _div(cm, np.broadcast_to(cm.sum(axis=1, keepdims=True), cm.shape))
    side = max(4.0, 1.0 + 0.9 * k)
    fig = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    for i in range(k):
        for j in range(k):
            colour = "white" if fraction[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=colour)
    ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, format="png")
