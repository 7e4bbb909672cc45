from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mritune.evaluation._stats import Estimate, PairedTest, mean_ci, paired_test, wilson_interval


def test_mean_ci_matches_student_t_by_hand():
    est = mean_ci([0.90, 0.92, 0.94])
    assert est.mean == pytest.approx(0.92)
    assert est.std == pytest.approx(0.02)  # sample std, ddof=1
    assert est.n == 3
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t(0.975, df=2)
    assert half == pytest.approx(0.0497, abs=1e-4)
    assert stats.t.ppf(0.975, 2) == pytest.approx(4.302652729911275)
    assert (est.ci_low, est.ci_high) == pytest.approx((0.92 - half, 0.92 + half))
    assert est.half_width == pytest.approx(half)
    assert est.confidence == 0.95
    assert str(est) == "0.920 ± 0.020 (95% CI 0.870–0.970, n=3)"


def test_mean_ci_other_confidence_is_wider_and_named():
    e90, e99 = mean_ci([1.0, 2.0, 4.0], 0.90), mean_ci([1.0, 2.0, 4.0], 0.99)
    assert e99.half_width > e90.half_width
    assert "99% CI" in str(e99) and "90% CI" in str(e90)


def test_mean_ci_of_one_value_has_no_interval():
    est = mean_ci([0.912])
    assert est.n == 1 and est.mean == pytest.approx(0.912)
    assert math.isnan(est.std) and math.isnan(est.ci_low) and math.isnan(est.ci_high)
    assert str(est) == "0.912 (n=1, no interval)"
    assert est.to_dict() == {
        "mean": 0.912,
        "std": None,
        "n": 1,
        "ci_low": None,
        "ci_high": None,
        "confidence": 0.95,
    }


def test_mean_ci_of_identical_values_is_a_point():
    est = mean_ci([0.8, 0.8, 0.8])
    assert (est.std, est.ci_low, est.ci_high) == pytest.approx((0.0, 0.8, 0.8))


def test_mean_ci_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        mean_ci([])
    with pytest.raises(ValueError, match=r"non-finite values at positions \[1\]"):
        mean_ci([0.9, float("nan")])
    with pytest.raises(ValueError, match="0 < confidence < 1"):
        mean_ci([0.9, 0.8], confidence=95)


def test_estimate_is_frozen():
    with pytest.raises(AttributeError):
        Estimate(0.9, 0.01, 3, 0.88, 0.92, 0.95).mean = 1.0  # type: ignore[misc]


def test_wilson_interval_for_45_of_50():
    low, high = wilson_interval(45, 50)
    assert (low, high) == pytest.approx((0.7864, 0.9565), abs=1e-4)
    # The Wilson bounds are where the score statistic equals z: check that independently.
    z = stats.norm.ppf(0.975)
    for p in (low, high):
        assert abs(0.9 - p) / math.sqrt(p * (1 - p) / 50) == pytest.approx(z)


def test_wilson_interval_stays_in_unit_range_at_the_extremes():
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    low, high = wilson_interval(10, 10)
    assert 0.6 < low < 1.0


def test_wilson_interval_rejects_bad_counts():
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(51, 50)
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="integer counts"):
        wilson_interval(4.5, 10)  # type: ignore[arg-type]


def test_paired_test_matches_scipy_wilcoxon():
    a = np.array([0.91, 0.93, 0.90, 0.95, 0.92, 0.96, 0.89, 0.94])
    b = np.array([0.90, 0.936, 0.87, 0.91, 0.922, 0.902, 0.865, 0.937])  # distinct |a - b|
    ref = stats.wilcoxon(a, b)
    res = paired_test(a, b, a_name="tpe-sh", b_name="random")
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.mean_difference == pytest.approx(np.mean(a - b))
    assert (res.a, res.b, res.n) == ("tpe-sh", "random", 8)
    assert res.test == "Wilcoxon signed-rank (exact)"


def test_paired_test_exact_p_for_six_consistent_wins_is_significant():
    res = paired_test([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0], a_name="a", b_name="b")
    assert res.p_value == pytest.approx(2 / 2**6)  # exact: both extreme sign patterns of 64
    assert res.significant()
    assert res.summary() == (
        "a vs b: mean difference +3.500 over 6 paired seeds, Wilcoxon signed-rank (exact) "
        "p=0.03: significant difference at alpha 0.05 (a higher)"
    )


def test_paired_test_summary_says_three_seeds_cannot_be_significant():
    res = paired_test([0.93, 0.95, 0.94], [0.92, 0.93, 0.90], a_name="tpe-sh", b_name="random")
    assert res.p_value == pytest.approx(0.25)
    assert res.min_p_value == pytest.approx(0.25)
    text = res.summary()
    assert text.startswith(
        "tpe-sh vs random: mean difference +0.023 over 3 paired seeds, "
        "Wilcoxon signed-rank (exact) p=0.25: no significant difference at R=3 (alpha 0.05)"
    )
    assert "smallest possible p=0.25" in text


def test_paired_test_with_all_differences_zero_gives_p_one_and_a_note():
    res = paired_test([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], a_name="a", b_name="b", unit="folds")
    assert (res.p_value, res.statistic, res.mean_difference) == (1.0, 0.0, 0.0)
    assert "All 3 differences are zero" in res.note
    assert "over 3 paired folds" in res.summary()
    assert "no significant difference" in res.summary()


def test_paired_test_reports_dropped_zero_differences():
    res = paired_test([0.91, 0.93, 0.92, 0.95], [0.90, 0.91, 0.92, 0.90], a_name="a", b_name="b")
    ref = stats.wilcoxon([0.91, 0.93, 0.92, 0.95], [0.90, 0.91, 0.92, 0.90])
    assert res.p_value == pytest.approx(ref.pvalue)
    assert "1 of 4 differences were zero" in res.note


def test_paired_test_rejects_bad_input():
    with pytest.raises(ValueError, match="has 3 values but `b_values` has 2"):
        paired_test([1, 2, 3], [1, 2], a_name="a", b_name="b")
    with pytest.raises(ValueError, match="at least 2 pairs, but got 1"):
        paired_test([1], [2], a_name="a", b_name="b")
    with pytest.raises(ValueError, match="non-finite"):
        paired_test([1, float("nan")], [2, 3], a_name="a", b_name="b")


def test_paired_test_is_frozen_dataclass():
    res = paired_test([1, 2, 3], [0, 0, 0], a_name="a", b_name="b")
    assert isinstance(res, PairedTest)
    with pytest.raises(AttributeError):
        res.p_value = 0.0  # type: ignore[misc]


def test_stats_module_does_not_import_torch():
    # Load the file by path so the check does not depend on what package `__init__` files pull in.
    module = Path(__file__).parents[2] / "src" / "mritune" / "evaluation" / "_stats.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('_stats', {str(module)!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['_stats'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "mod.paired_test([1, 2, 3], [0, 0, 0], a_name='a', b_name='b'); mod.mean_ci([1, 2])\n"
        "bad = sorted(m for m in ('torch', 'fastai', 'optuna') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
