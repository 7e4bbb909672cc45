"""Evaluation layer: cross-validation, technique comparison, statistics."""

from __future__ import annotations

from mritune.evaluation._compare import (
    COMPARE_COLUMNS,
    compare_studies,
    comparison_markdown,
    comparison_rows,
    run_record,
    study_name_for,
)
from mritune.evaluation._cv import CVSpec, cv_summary, params_from, run_cv, write_cv_outputs
from mritune.evaluation._nested import run_nested
from mritune.evaluation._stats import Estimate, PairedTest, mean_ci, paired_test, wilson_interval

__all__ = [
    "COMPARE_COLUMNS",
    "CVSpec",
    "Estimate",
    "PairedTest",
    "compare_studies",
    "comparison_markdown",
    "comparison_rows",
    "cv_summary",
    "mean_ci",
    "paired_test",
    "params_from",
    "run_cv",
    "run_nested",
    "run_record",
    "study_name_for",
    "wilson_interval",
    "write_cv_outputs",
]
