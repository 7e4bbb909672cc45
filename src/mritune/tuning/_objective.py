"""The objective: one trial = suggest parameters, fit (on a holdout or K folds), report every epoch.

Steps reported to the pruner are **epochs trained so far in the trial**, counted from 1 across the
frozen and unfrozen phases and, with ``--cv K``, across folds (fold 2's first epoch continues
where fold 1 stopped). The value reported at a step is the running cross-validated estimate:
``(sum of the finished folds' final values + the current fold's value now) / folds started``.
With a holdout that is simply the metric after each epoch. So the pruner can stop a poor trial
during its first fold (comparing fold-1 learning curves at equal epochs) and at any later step.
A trial's value is the metric after its last epoch (mean over folds with ``--cv``); a pruned
trial keeps its last reported value and records the epochs it actually trained. A trial is never
pruned after its very last epoch: it has nothing left to save, so it completes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna

from mritune.config import TrainConfig
from mritune.errors import EngineError, TuningError
from mritune.tuning._space import SearchSpace

__all__ = ["Objective", "METRICS", "BudgetReached"]

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")

Split = tuple[np.ndarray, np.ndarray]


class BudgetReached(TuningError):
    """Another worker already holds the last of the trial budget; this trial is not run."""


class Objective:
    """Callable for ``study.optimize``.

    Args:
        fit_fn: ``fit(cache, train_idx, valid_idx, config, on_epoch) -> FitResult``-like object
            with ``history``, ``epochs_trained`` and ``device`` (the engine's ``fit``, or a fake).
        cache: what ``fit_fn`` trains from.
        splits: one ``(train, valid)`` pair for a holdout, K pairs for cross-validation.
        base: fixed settings; tuned parameters replace its fields.
        space: the search space.
        metric: one of :data:`METRICS`, maximised.
        n_trials: the study's budget; a trial whose number is past it (because other workers got
            there first) is not run.
        on_event: optional progress hook, called with dicts (``kind``: ``trial``/``epoch``).
    """

    def __init__(
        self,
        fit_fn: Callable[..., Any],
        cache: Any,
        splits: Sequence[Split],
        base: TrainConfig,
        space: SearchSpace,
        metric: str = "accuracy",
        *,
        n_trials: int | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if metric not in METRICS:
            raise TuningError(f"metric '{metric}' is unknown; choose one of {', '.join(METRICS)}")
        if not splits:
            raise TuningError("no train/validation split to tune on")
        self.fit_fn, self.cache, self.splits = fit_fn, cache, list(splits)
        self.base, self.space, self.metric = base, space, metric
        self.n_trials, self.on_event = n_trials, on_event

    def _check_budget(self, trial: optuna.Trial) -> None:
        if self.n_trials is None:
            return
        states = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.RUNNING,
        )
        ahead = sum(
            1
            for t in trial.study.get_trials(deepcopy=False, states=states)
            if t.number < trial.number
        )
        if ahead >= self.n_trials:
            raise BudgetReached(f"not run: {self.n_trials} trials were already finished or running")

    def __call__(self, trial: optuna.Trial) -> float:
        self._check_budget(trial)
        params = self.space.suggest(trial)
        cfg = self.base.replace(**params)
        t0 = time.perf_counter()
        fold_values: list[float] = []
        history: list[list[dict[str, Any]]] = []
        state = {"epochs": 0, "pruned": False, "device": cfg.device}
        k_folds = len(self.splits)
        if self.on_event:
            self.on_event({"kind": "trial", "number": trial.number, "params": params,
                           "max_epochs": cfg.total_epochs * k_folds})  # fmt: skip

        def on_epoch(epoch: int, m: dict[str, Any]) -> bool:
            state["epochs"] += 1
            current = float(m.get(self.metric, float("nan")))
            value = (sum(fold_values) + current) / (len(fold_values) + 1)
            step = state["epochs"]
            if math.isfinite(value):
                trial.report(value, step)
            if self.on_event:
                self.on_event({"kind": "epoch", "number": trial.number, "step": step,
                               "fold": len(fold_values), "value": value})  # fmt: skip
            last = step >= cfg.total_epochs * k_folds  # nothing left to save by pruning
            if math.isfinite(value) and not last and trial.should_prune():
                state["pruned"] = True
                return False
            return True

        try:
            for train_idx, valid_idx in self.splits:
                res = self.fit_fn(self.cache, train_idx, valid_idx, cfg, on_epoch)
                history.append(res.history)
                state["device"] = res.device
                if state["pruned"]:
                    break
                fold_values.append(float(res.history[-1][self.metric]))
        except EngineError as exc:
            self._record(trial, state, history, fold_values, t0, fail_reason=str(exc))
            raise
        except Exception as exc:
            self._record(trial, state, history, fold_values, t0,
                         fail_reason=f"{type(exc).__name__}: {exc}")  # fmt: skip
            raise
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the trial ends FAIL, with what it did
            self._record(trial, state, history, fold_values, t0, fail_reason="interrupted")
            raise
        self._record(trial, state, history, fold_values, t0)
        if state["pruned"]:
            raise optuna.TrialPruned(f"pruned after {state['epochs']} epochs")
        return float(np.mean(fold_values))

    def _record(
        self, trial: optuna.Trial, state: dict[str, Any], history: list, fold_values: list[float],
        t0: float, fail_reason: str | None = None,
    ) -> None:  # fmt: skip
        trial.set_user_attr("epochs_trained", int(state["epochs"]))
        trial.set_user_attr("duration", round(time.perf_counter() - t0, 3))
        trial.set_user_attr("device", str(state["device"]))
        trial.set_user_attr("history", _compact(history))
        if len(self.splits) > 1:
            trial.set_user_attr("fold_values", fold_values)
        if fail_reason:
            trial.set_user_attr("fail_reason", fail_reason[:500])


def _compact(history: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    keep = (
        "epoch",
        "train_loss",
        "valid_loss",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "epoch_time",
    )
    return [
        [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.items() if k in keep}
            for e in fold
        ]
        for fold in history
    ]
