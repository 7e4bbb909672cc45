"""Cross-validation logic with a fake fit: folds as trials, resumption, invariants, nested CV."""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from mritune.config import TrainConfig
from mritune.data import generate_demo
from mritune.engine import prepare
from mritune.errors import ConfigError
from mritune.evaluation import CVSpec, cv_summary, run_cv, run_nested, write_cv_outputs
from mritune.tuning import StudySpec, quick_space


@dataclasses.dataclass
class _Res:
    history: list
    probs: np.ndarray
    valid_idx: np.ndarray
    epochs_trained: int
    device: str = "cpu"
    stopped: bool = False


class FakeFit:
    """Predicts the true class for a share of images that grows with ``epochs``."""

    def __init__(self, labels: np.ndarray, n_classes: int) -> None:
        self.labels, self.k, self.calls = labels, n_classes, []

    def __call__(self, cache, train_idx, valid_idx, cfg, on_epoch=None):
        self.calls.append((np.asarray(train_idx), np.asarray(valid_idx), cfg))
        rng = np.random.default_rng(len(self.calls))
        good = rng.random(len(valid_idx)) < min(0.95, 0.3 + 0.2 * cfg.epochs)
        pred = np.where(good, self.labels[valid_idx], (self.labels[valid_idx] + 1) % self.k)
        probs = np.full((len(valid_idx), self.k), 0.1 / (self.k - 1))
        probs[np.arange(len(valid_idx)), pred] = 0.9
        hist = [{"epoch": e, "accuracy": float(good.mean()), "balanced_accuracy": float(good.mean()),
                 "macro_f1": float(good.mean()), "train_loss": 1.0} for e in range(cfg.epochs)]  # fmt: skip
        for e, m in enumerate(hist):
            if on_epoch and on_epoch(e, m) is False:
                break
        return _Res(hist, probs, np.asarray(valid_idx), cfg.epochs)


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    root = tmp_path_factory.mktemp("cvdata")
    generate_demo(root / "data", train_per_class=8, test_per_class=2, size=32, seed=1)
    return prepare(root / "data", 32, cache_dir=root / "cache")


def _spec(tmp_path, **kw) -> CVSpec:
    cfg = TrainConfig(arch="tiny", pretrained=False, img_size=32, epochs=2)
    return CVSpec(data="unused", config=cfg, study="cv-test",
                  storage=f"sqlite:///{tmp_path / 's.db'}", **kw)  # fmt: skip


def test_folds_cover_training_once_and_are_stored_as_trials(prep, tmp_path):
    fake = FakeFit(prep.manifest.labels, len(prep.manifest.classes))
    study = run_cv(_spec(tmp_path, folds=3), fit_fn=fake, prepared=prep)
    tests = np.concatenate([va for _, va, _ in fake.calls])
    pool = prep.manifest.indices("train")
    assert sorted(tests.tolist()) == sorted(pool.tolist())
    for tr, va, _ in fake.calls:
        assert not set(tr) & set(va)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    s = cv_summary(study)
    accs = [f["accuracy"] for f in s["folds"]]
    assert s["estimates"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert s["estimates"]["accuracy"]["n"] == 3
    assert (
        0.0 <= s["estimates"]["accuracy"]["ci_low"] <= s["estimates"]["accuracy"]["ci_high"] <= 1.0
    )
    files = write_cv_outputs(s, prep.manifest.labels, prep.manifest.paths, tmp_path / "out")
    assert all(p.is_file() for p in files.values())
    lines = files["oof"].read_text().splitlines()
    assert len(lines) == 1 + len(pool)  # every training image predicted out of fold exactly once


def test_repeats_use_other_seeds_and_resume_trains_only_missing_folds(prep, tmp_path):
    fake = FakeFit(prep.manifest.labels, len(prep.manifest.classes))
    spec = _spec(tmp_path, folds=2, repeats=2)
    run_cv(spec, fit_fn=fake, prepared=prep)
    assert len(fake.calls) == 4
    first, second = fake.calls[0][1], fake.calls[2][1]
    assert not np.array_equal(np.sort(first), np.sort(second))  # repeat 1 splits differently
    run_cv(spec, fit_fn=fake, prepared=prep)
    assert len(fake.calls) == 4  # nothing left to do
    # a fold lost (e.g. its worker died) is the only one run again
    storage = spec.storage
    study = optuna.load_study(study_name=spec.study, storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4


def test_changed_settings_are_refused(prep, tmp_path):
    fake = FakeFit(prep.manifest.labels, len(prep.manifest.classes))
    run_cv(_spec(tmp_path, folds=2), fit_fn=fake, prepared=prep)
    with pytest.raises(Exception, match="other settings"):
        run_cv(_spec(tmp_path, folds=3), fit_fn=fake, prepared=prep)


def test_invalid_fold_counts(tmp_path):
    with pytest.raises(ConfigError, match="folds >= 2"):
        _spec(tmp_path, folds=1)


def test_nested_cv_tunes_inside_each_outer_fold_only(prep, tmp_path):
    fake = FakeFit(prep.manifest.labels, len(prep.manifest.classes))
    storage = f"sqlite:///{tmp_path / 'n.db'}"
    base = TrainConfig(arch="tiny", pretrained=False, img_size=32)

    def tune_spec(name: str) -> StudySpec:
        return StudySpec(data="unused", study=name, storage=storage, technique="random",
                         n_trials=2, space=quick_space(), base=base, seed=0,
                         valid_pct=0.4)  # fmt: skip

    spec = CVSpec(data="unused", config=base, folds=2, study="nested", storage=storage)
    study = run_nested(spec, tune_spec, prepared=prep, fit_fn=fake)
    s = cv_summary(study)
    assert len(s["folds"]) == 2 and s["nested"]
    names = {x.study_name for x in optuna.get_all_study_summaries(storage)}
    assert {"nested-outer0.0", "nested-outer0.1"} <= names
    # per outer fold: 2 inner trials, then the outer fit; inner fits see only the outer training part
    assert len(fake.calls) == 6
    for g in range(2):
        *inner, (tr_o, va_o, _) = fake.calls[3 * g : 3 * g + 3]
        for tr_i, va_i, _ in inner:
            assert set(tr_i) | set(va_i) <= set(tr_o)
            assert not (set(tr_i) | set(va_i)) & set(va_o)
    for f in s["folds"]:
        assert f["config"]["arch"] in ("tiny", "resnet18")
