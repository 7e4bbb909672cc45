"""Tuning layer: search spaces, the technique registry, the objective, the study runner.

Uses Optuna; never imports fastai directly (it calls the engine's ``fit``).
"""

from __future__ import annotations

from mritune.tuning._objective import METRICS, Objective
from mritune.tuning._results import (
    TRIAL_COLUMNS,
    best_summary,
    markdown_table,
    measured_on,
    trial_rows,
    write_trials,
)
from mritune.tuning._runner import (
    StudySpec,
    finished_count,
    load_study,
    make_splits,
    preset,
    run_study,
    work,
)
from mritune.tuning._space import Param, SearchSpace, load_space, quick_space, reference_space
from mritune.tuning._storage import DEFAULT_STORAGE, normalize_url, open_storage
from mritune.tuning._techniques import PrunerSettings, Technique, get_technique, list_techniques

__all__ = [
    "DEFAULT_STORAGE",
    "METRICS",
    "TRIAL_COLUMNS",
    "Objective",
    "Param",
    "PrunerSettings",
    "SearchSpace",
    "StudySpec",
    "Technique",
    "best_summary",
    "finished_count",
    "get_technique",
    "list_techniques",
    "load_space",
    "load_study",
    "make_splits",
    "markdown_table",
    "measured_on",
    "normalize_url",
    "open_storage",
    "preset",
    "quick_space",
    "reference_space",
    "run_study",
    "trial_rows",
    "work",
    "write_trials",
]
