"""Nested cross-validation: an inner tuning study per outer fold, so the outer-fold scores
estimate "tune, then train" without the optimism of scoring the configuration that tuning chose
on the same data."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from mritune.config import TrainConfig
from mritune.data import holdout
from mritune.engine import Prepared, prepare
from mritune.errors import TuningError
from mritune.evaluation._cv import CVSpec, run_cv
from mritune.tuning import StudySpec, work

__all__ = ["run_nested"]


def run_nested(
    spec: CVSpec,
    tune_spec: Callable[[str], StudySpec],
    *,
    prepared: Prepared | None = None,
    fit_fn: Callable[..., Any] | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> optuna.Study:
    """Outer stratified K folds; in each, an inner study (``tune_spec(name)``) tunes on a holdout
    of the outer-training part only; the chosen configuration is trained on the whole outer
    training part and scored on the outer test fold. Inner studies are named
    ``<cv study>-outer<repeat>.<fold>`` in the same storage and resume like any study."""
    prep = prepared or prepare(spec.data, spec.config.img_size, cache_dir=spec.cache_dir)

    def config_for(r: int, k: int, train_idx: np.ndarray) -> TrainConfig:
        ts = tune_spec(f"{spec.study}-outer{r}.{k}")
        ts = dataclasses.replace(ts, seed=ts.seed + 100 * r + k)  # independent inner searches
        inner = holdout(train_idx, prep.manifest.labels, valid_pct=ts.valid_pct, seed=ts.seed + k,
                        groups=prep.groups)  # fmt: skip
        kwargs: dict[str, Any] = {"prepared": prep, "splits": [inner]}
        if fit_fn is not None:
            kwargs["fit_fn"] = fit_fn
        study = work(ts, **kwargs)
        study.set_user_attr("nested_in", spec.study)
        try:
            best = study.best_trial
        except ValueError:
            raise TuningError(f"inner study {ts.study} has no completed trial") from None
        return ts.base.replace(**best.params)

    tmpl = tune_spec("x")
    config_for.description = f"{tmpl.technique}, {tmpl.n_trials} trials per outer fold"  # type: ignore[attr-defined]
    kwargs: dict[str, Any] = {"prepared": prep, "on_fold": on_fold, "config_for": config_for}
    if fit_fn is not None:
        kwargs["fit_fn"] = fit_fn
    return run_cv(dataclasses.replace(spec, config=tmpl.base), **kwargs)
