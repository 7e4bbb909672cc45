"""Evaluation layer: cross-validation, nested CV, technique comparison, statistics."""

from __future__ import annotations

from mritune.evaluation._stats import Estimate, PairedTest, mean_ci, paired_test, wilson_interval

__all__ = ["Estimate", "PairedTest", "mean_ci", "paired_test", "wilson_interval"]
