"""The objective with a fake ``fit``: epochs reported as steps, pruning, cross-validation, failures."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from _tuning_fakes import BASE, FakeFit, FakePrepared, MakeSpec, curve, fake_space
from optuna.pruners import NopPruner, SuccessiveHalvingPruner
from optuna.trial import TrialState

from mritune.errors import TrainingDiverged, TuningError
from mritune.tuning import Objective, SearchSpace, finished_count, run_study
from mritune.tuning._objective import BudgetReached

optuna.logging.set_verbosity(optuna.logging.ERROR)

GOOD = {"arch": "good", "wd": 1e-4, "epochs": 5, "drop": 0.2}
POOR = {"arch": "poor", "wd": 1e-2, "epochs": 5, "drop": 0.2}


def splits(k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds over 24 fake images (k=1: one holdout)."""
    idx = np.arange(24)
    if k == 1:
        return [(idx[:18], idx[18:])]
    return [(np.setdiff1d(idx, idx[f::k]), idx[f::k]) for f in range(k)]


def study_with(pruner: optuna.pruners.BasePruner, *params: dict) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for p in params:
        study.enqueue_trial(p)
    return study


def test_every_epoch_is_reported_as_a_step_counted_from_one() -> None:
    fit = FakeFit()
    study = study_with(NopPruner(), GOOD)

    study.optimize(Objective(fit, None, splits(1), BASE, fake_space()), n_trials=1)

    t = study.trials[0]
    cfg = BASE.replace(**GOOD)
    assert t.state == TrialState.COMPLETE
    assert sorted(t.intermediate_values) == [1, 2, 3, 4, 5]
    assert t.intermediate_values[3] == pytest.approx(curve(cfg, 2, fold=18 % 3))
    assert t.value == pytest.approx(curve(cfg, 4, fold=0))
    assert t.user_attrs["epochs_trained"] == 5
    assert "fold_values" not in t.user_attrs  # a holdout has no folds
    assert len(t.user_attrs["history"][0]) == 5
    assert t.user_attrs["device"] == "cpu"


def test_pruned_trial_keeps_its_last_value() -> None:
    pruner = SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    study = study_with(pruner, GOOD, GOOD, POOR)

    study.optimize(Objective(FakeFit(), None, splits(1), BASE, fake_space()), n_trials=3)

    poor = study.trials[2]
    assert poor.state == TrialState.PRUNED
    last = max(poor.intermediate_values)
    assert poor.value == poor.intermediate_values[last]
    assert math.isfinite(poor.value)
    assert poor.user_attrs["epochs_trained"] == last < 5
    assert study.best_trial.number in (0, 1)  # a pruned trial is never the best


def test_cv_stores_fold_values_and_scores_their_mean() -> None:
    fit = FakeFit()
    study = study_with(NopPruner(), GOOD)

    study.optimize(Objective(fit, None, splits(3), BASE, fake_space()), n_trials=1)

    t = study.trials[0]
    folds = t.user_attrs["fold_values"]
    assert fit.calls == 3
    assert len(folds) == 3 and len(set(folds)) == 3  # the fake curve differs per fold
    assert t.value == pytest.approx(float(np.mean(folds)))
    assert sorted(t.intermediate_values) == list(range(1, 16))  # steps run on across folds
    assert t.intermediate_values[5] == pytest.approx(folds[0])
    assert t.intermediate_values[10] == pytest.approx(np.mean(folds[:2]))
    assert t.user_attrs["epochs_trained"] == 15


def test_poor_trial_is_pruned_during_its_first_fold() -> None:
    pruner = SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    fit = FakeFit()
    study = study_with(pruner, GOOD, GOOD, POOR)

    study.optimize(Objective(fit, None, splits(3), BASE, fake_space()), n_trials=3)

    poor = study.trials[2]
    assert poor.state == TrialState.PRUNED
    assert poor.user_attrs["epochs_trained"] < 5  # fewer than one fold's epochs
    assert poor.user_attrs["fold_values"] == []
    assert fit.calls == 3 + 3 + 1  # the poor trial never started a second fold


def test_unknown_metric_and_no_split_are_refused() -> None:
    with pytest.raises(TuningError, match="metric 'auc' is unknown; choose one of accuracy"):
        Objective(FakeFit(), None, splits(1), BASE, fake_space(), "auc")
    with pytest.raises(TuningError, match="no train/validation split"):
        Objective(FakeFit(), None, [], BASE, fake_space())


def test_trial_past_the_budget_is_not_run() -> None:
    fit = FakeFit()
    study = optuna.create_study(direction="maximize")
    objective = Objective(fit, None, splits(1), BASE, fake_space(), n_trials=2)
    study.optimize(objective, n_trials=2)

    with pytest.raises(BudgetReached, match="not run: 2 trials"):
        objective(study.ask())
    assert fit.calls == 2


def test_diverged_trial_fails_with_its_reason_and_the_study_goes_on(make_spec: MakeSpec) -> None:
    fit = FakeFit(diverge_calls=(2,))
    spec = make_spec(technique="random", n_trials=4)

    study = run_study(spec, fit_fn=fit, prepared=FakePrepared())

    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [1]
    assert failed[0].user_attrs["fail_reason"].startswith("training loss became nan in epoch 0")
    assert failed[0].user_attrs["epochs_trained"] == 0
    assert finished_count(study) == 4
    assert fit.calls == 5


def test_trials_that_all_fail_the_same_way_stop_the_study(make_spec: MakeSpec) -> None:
    fit = FakeFit(diverge_calls="all")

    with pytest.raises(TuningError, match="the last 3 trials all failed with: training loss"):
        run_study(make_spec(technique="random"), fit_fn=fit, prepared=FakePrepared())
    assert fit.calls == 3


def test_engine_errors_are_recorded_not_swallowed() -> None:
    def broken_fit(*args: object) -> None:
        raise TrainingDiverged("loss is nan")

    study = optuna.create_study(direction="maximize")
    with pytest.raises(TrainingDiverged):
        study.optimize(Objective(broken_fit, None, splits(1), BASE, fake_space()), n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.FAIL
    assert t.user_attrs["fail_reason"] == "loss is nan"
    assert t.user_attrs["epochs_trained"] == 0


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_trial_is_never_pruned_after_its_last_epoch() -> None:
    study = study_with(AlwaysPrune(), {"arch": "poor", "wd": 1e-2, "drop": 0.2})
    no_epochs = SearchSpace(tuple(p for p in fake_space().params if p.name != "epochs"))

    objective = Objective(FakeFit(), None, splits(1), BASE.replace(epochs=1), no_epochs)
    study.optimize(objective, n_trials=1)

    t = study.trials[0]
    assert t.state == TrialState.COMPLETE  # pruning would save nothing: it trained its one epoch
    assert t.user_attrs["epochs_trained"] == 1
