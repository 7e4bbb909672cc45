from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from mritune.engine._metrics import (
    accuracy,
    balanced_accuracy,
    calibration_bins,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    plot_confusion_matrix,
)

CLASSES = ["glioma", "meningioma", "notumor"]
# rows = true, cols = predicted:  [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
Y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PRED = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])


def _probs_for(pred: np.ndarray, n_classes: int) -> np.ndarray:
    probs = np.full((pred.size, n_classes), 0.4 / (n_classes - 1))
    probs[np.arange(pred.size), pred] = 0.6
    return probs


def test_confusion_matrix_counts_rows_true_columns_predicted():
    assert confusion_matrix(Y, PRED, 3).tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]


def test_confusion_matrix_rejects_out_of_range_and_float_probabilities():
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\]"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="integer class indices"):
        confusion_matrix(np.array([0.2, 0.8]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="must match"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 2)


def test_three_class_example_matches_hand_computed_values():
    m = classification_metrics(Y, _probs_for(PRED, 3), CLASSES)
    # glioma: tp=3 fp=1 fn=1 tn=5; meningioma and notumor: tp=2 fp=1 fn=1 tn=6
    g, me, nt = (m["per_class"][c] for c in CLASSES)
    assert g["precision"] == pytest.approx(0.75)
    assert g["recall"] == pytest.approx(0.75)
    assert g["specificity"] == pytest.approx(5 / 6)
    assert g["f1"] == pytest.approx(0.75)
    assert g["support"] == 4
    for c in (me, nt):
        assert c["precision"] == pytest.approx(2 / 3)
        assert c["recall"] == pytest.approx(2 / 3)
        assert c["specificity"] == pytest.approx(6 / 7)
        assert c["f1"] == pytest.approx(2 / 3)
        assert c["support"] == 3
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert m["macro_f1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert m["classes"] == CLASSES


def test_result_is_strict_json():
    rng = np.random.default_rng(0)
    y = np.array([0, 0, 1, 1])  # class 2 absent -> AUROC None, never NaN
    probs = rng.dirichlet(np.ones(3), size=4)
    json.dumps(classification_metrics(y, probs, CLASSES), allow_nan=False)


@pytest.mark.parametrize("seed", range(5))
def test_fast_helpers_match_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n_classes = 4
    y = rng.integers(0, n_classes, size=200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, n_classes, size=200))
    assert accuracy(y, pred) == pytest.approx(np.mean(y == pred))
    assert balanced_accuracy(y, pred, n_classes) == pytest.approx(balanced_accuracy_score(y, pred))
    assert macro_f1(y, pred, n_classes) == pytest.approx(f1_score(y, pred, average="macro"))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_helpers_match_sklearn_when_a_class_is_missing():
    # class 3 never occurs; class 2 is only predicted
    y = np.array([0, 0, 1, 1, 1, 0])
    pred = np.array([0, 1, 1, 2, 1, 0])
    assert balanced_accuracy(y, pred, 4) == pytest.approx(balanced_accuracy_score(y, pred))
    assert macro_f1(y, pred, 4) == pytest.approx(f1_score(y, pred, average="macro"))


def test_zero_division_gives_zero_not_nan():
    m = classification_metrics(np.array([0, 0]), np.array([[0.9, 0.1], [0.8, 0.2]]), ["a", "b"])
    b = m["per_class"]["b"]
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == (0.0, 0.0, 0.0, 0)
    assert accuracy(np.array([], dtype=int), np.array([], dtype=int)) == 0.0


def test_perfect_confident_predictions_score_one_everywhere_and_zero_ece():
    y = np.array([0, 1, 2, 2, 1, 0])
    probs = np.eye(3)[y]
    m = classification_metrics(y, probs, CLASSES)
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
    assert m["macro_auroc"] == 1.0
    for stats in m["per_class"].values():
        for key in ("precision", "recall", "specificity", "f1", "auroc"):
            assert stats[key] == 1.0
    assert m["ece"] == 0.0


def test_ece_of_a_small_example_matches_hand_computation():
    y = np.array([0, 1, 1, 0, 0])
    probs = np.array([[0.95, 0.05], [0.08, 0.92], [0.93, 0.07], [0.62, 0.38], [0.45, 0.55]])
    # bins of width 0.1: (0.9, 1] holds 3 (2 correct, mean conf 0.9333), (0.6, 0.7] holds one
    # correct at 0.62, (0.5, 0.6] one wrong at 0.55.
    expected = 3 / 5 * abs(2 / 3 - 2.8 / 3) + 1 / 5 * abs(1 - 0.62) + 1 / 5 * abs(0 - 0.55)
    assert expected == pytest.approx(0.346)
    assert expected_calibration_error(y, probs, n_bins=10) == pytest.approx(expected)
    assert classification_metrics(y, probs, ["a", "b"], n_bins=10)["ece"] == pytest.approx(expected)
    bins = calibration_bins(y, probs, n_bins=10)
    assert bins["count"] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 3]
    assert bins["accuracy"][9] == pytest.approx(2 / 3)


def test_auroc_matches_sklearn_including_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=300)
    probs = rng.dirichlet(np.ones(3), size=300).round(1)  # many tied scores
    probs /= probs.sum(axis=1, keepdims=True)
    m = classification_metrics(y, probs, CLASSES)
    expected = [roc_auc_score(y == k, probs[:, k]) for k in range(3)]
    assert [m["per_class"][c]["auroc"] for c in CLASSES] == pytest.approx(expected)
    assert m["macro_auroc"] == pytest.approx(np.mean(expected))


def test_auroc_is_none_for_an_absent_class_and_left_out_of_the_mean():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    m = classification_metrics(y, probs, CLASSES)
    assert m["per_class"]["notumor"]["auroc"] is None
    assert m["macro_auroc"] == 1.0  # mean of the two defined classes only


def test_classification_metrics_rejects_bad_probabilities():
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="apply softmax"):
        classification_metrics(y, np.array([[2.0, -1.0], [0.0, 3.0]]), ["a", "b"])
    with pytest.raises(ValueError, match="columns but there are 3 classes"):
        classification_metrics(y, np.array([[0.5, 0.5], [0.5, 0.5]]), CLASSES)
    with pytest.raises(ValueError, match="no predictions"):
        classification_metrics(np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="n_bins >= 1"):
        classification_metrics(y, np.array([[0.5, 0.5], [0.5, 0.5]]), ["a", "b"], n_bins=0)


def test_plot_confusion_matrix_writes_a_png(tmp_path):
    path = tmp_path / "plots" / "cm.png"
    plot_confusion_matrix([[3, 1, 0], [0, 0, 0], [1, 0, 2]], CLASSES, path, "Test set")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"expected \(3, 3\)"):
        plot_confusion_matrix([[1, 0], [0, 1]], CLASSES, path, "Test set")


def test_metrics_module_does_not_import_torch():
    # Load the file by path so the check does not depend on what `mritune.engine/__init__`
    # (which may legitimately import fastai) pulls in.
    module = Path(__file__).parents[2] / "src" / "mritune" / "engine" / "_metrics.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('_metrics', {str(module)!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['_metrics'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "import numpy as np\n"
        "mod.classification_metrics(np.array([0, 1]), np.eye(2), ['a', 'b'])\n"
        "bad = sorted(m for m in ('torch', 'fastai', 'optuna', 'sklearn') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
