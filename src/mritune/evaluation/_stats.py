"""Statistics for reporting estimates honestly: intervals over folds/seeds and paired tests.

A mean over a handful of folds or seeds is reported with its Student-t interval; an accuracy on
a test set of ``n`` images with its Wilson interval; two techniques run on the same seeds are
compared with a Wilcoxon signed-rank test, whose summary says plainly when the number of pairs is
too small for any result to be significant.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["Estimate", "PairedTest", "mean_ci", "paired_test", "wilson_interval"]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(
            f"The value of `confidence` is {confidence}, but must be `0 < confidence < 1` "
            "(e.g. 0.95)."
        )


def _finite_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D sequence of numbers, but has shape {arr.shape}.")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"`{name}` holds non-finite values at positions {bad.tolist()}; drop failed runs "
            "before summarising (and report how many failed)."
        )
    return arr


def _percent(confidence: float) -> str:
    return f"{confidence * 100:.10g}%"


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean with its sample standard deviation and a confidence interval for the mean.

    For ``n == 1`` there is no spread to estimate: ``std``, ``ci_low`` and ``ci_high`` are NaN.
    """

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def half_width(self) -> float:
        """Half the interval width (NaN for ``n == 1``)."""
        return (self.ci_high - self.ci_low) / 2.0

    def format(self, digits: int = 3) -> str:
        """Text such as ``0.912 ± 0.021 (95% CI 0.886–0.938, n=5)``."""
        if self.n < 2:
            return f"{self.mean:.{digits}f} (n={self.n}, no interval)"
        return (
            f"{self.mean:.{digits}f} ± {self.std:.{digits}f} ({_percent(self.confidence)} CI "
            f"{self.ci_low:.{digits}f}–{self.ci_high:.{digits}f}, n={self.n})"
        )

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready fields; NaN becomes None."""
        return {
            f.name: (None if isinstance(v, float) and math.isnan(v) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Estimate:
    """Mean with a Student-t interval, for a metric measured over folds or seeds.

    ``std`` is the sample standard deviation (ddof=1); the interval is
    ``mean ± t((1 + confidence) / 2, n - 1) * std / sqrt(n)``.

    Example:
        >>> print(mean_ci([0.90, 0.92, 0.94]))
        0.920 ± 0.020 (95% CI 0.870–0.970, n=3)
    """
    _check_confidence(confidence)
    arr = _finite_1d(values, "values")
    n = int(arr.size)
    if n == 0:
        raise ValueError("`values` is empty: at least one fold or seed is needed for a mean.")
    mean = float(arr.mean())
    if n == 1:
        return Estimate(mean, math.nan, 1, math.nan, math.nan, confidence)
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return Estimate(mean, std, n, mean - half, mean + half, confidence)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion, e.g. an accuracy on a test set of ``n`` images.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and is sensible near 0 and 1.

    Example:
        >>> tuple(round(x, 4) for x in wilson_interval(45, 50))
        (0.7864, 0.9565)
    """
    _check_confidence(confidence)
    if isinstance(successes, bool) or isinstance(n, bool):
        raise ValueError("`successes` and `n` must be integer counts, not booleans.")
    if int(successes) != successes or int(n) != n:
        raise ValueError(f"`successes` ({successes}) and `n` ({n}) must be integer counts.")
    successes, n = int(successes), int(n)
    if n < 1:
        raise ValueError(f"The value of `n` is {n}, but must be `n >= 1` (the number of images).")
    if not 0 <= successes <= n:
        raise ValueError(
            f"The value of `successes` is {successes}, but must be `0 <= successes <= n` (n={n})."
        )
    z = float(stats.norm.ppf((1.0 + confidence) / 2.0))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _format_p(p: float) -> str:
    if p < 0.001:
        return "p<0.001"
    return f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """Result of a paired comparison of ``a`` and ``b`` (differences are ``a - b``).

    ``min_p_value`` is the smallest p-value the test could have given with these pairs (all
    differences the same sign): when it exceeds alpha, no outcome could have been significant.
    ``note`` explains special cases (all differences zero, zero differences dropped).
    """

    a: str
    b: str
    n: int
    statistic: float
    p_value: float
    mean_difference: float
    test: str
    min_p_value: float = 0.0
    note: str = ""
    unit: str = "seeds"

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether ``p_value < alpha``."""
        return self.p_value < alpha

    def summary(self, alpha: float = 0.05) -> str:
        """One sentence in words, e.g. ``tpe-sh vs random: mean difference +0.012 over 3 paired
        seeds, Wilcoxon signed-rank p=0.25: no significant difference at R=3 (alpha 0.05)``."""
        text = (
            f"{self.a} vs {self.b}: mean difference {self.mean_difference:+.3f} over {self.n} "
            f"paired {self.unit}, {self.test} {_format_p(self.p_value)}: "
        )
        if self.significant(alpha):
            higher = self.a if self.mean_difference > 0 else self.b
            text += f"significant difference at alpha {alpha:g} ({higher} higher)"
        else:
            text += f"no significant difference at R={self.n} (alpha {alpha:g})"
            if self.min_p_value >= alpha:
                text += (
                    f"; with these {self.n} pairs even a consistent difference could not reach "
                    f"p<{alpha:g} (smallest possible p={self.min_p_value:.2g}), so run more "
                    f"{self.unit}"
                )
        if self.note:
            text += f". {self.note}"
        return text


def _wilcoxon_method(d: np.ndarray) -> str:
    """Name of the method ``scipy.stats.wilcoxon(method='auto')`` uses (SciPy >= 1.13)."""
    nonzero = np.abs(d[d != 0])
    has_ties = np.unique(nonzero).size < nonzero.size
    if d.size <= 50 and not has_ties and nonzero.size == d.size:
        return "exact"
    if d.size <= 13:
        return "exact permutation"
    return "normal approximation"


def paired_test(
    a_values: Sequence[float] | np.ndarray,
    b_values: Sequence[float] | np.ndarray,
    *,
    a_name: str,
    b_name: str,
    unit: str = "seeds",
) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of ``a`` against ``b`` on paired runs.

    Pairs are the same seed (or fold) for both techniques. Zero differences are dropped
    (Wilcoxon's convention); small samples get an exact p-value. If every difference is zero,
    the result is ``p_value=1.0`` with a note instead of SciPy's NaN.

    Example:
        >>> r = paired_test([0.91, 0.93, 0.92], [0.90, 0.91, 0.92], a_name="tpe", b_name="random")
        >>> r.p_value, r.n
        (0.5, 3)
    """
    a = _finite_1d(a_values, "a_values")
    b = _finite_1d(b_values, "b_values")
    if a.size != b.size:
        raise ValueError(
            f"`a_values` has {a.size} values but `b_values` has {b.size}; a paired test needs "
            f"one value of each per {unit[:-1] if unit.endswith('s') else unit}."
        )
    if a.size < 2:
        raise ValueError(
            f"A paired test needs at least 2 pairs, but got {a.size}; run more {unit} "
            f"(with fewer than 6 pairs no Wilcoxon test can reach p<0.05)."
        )
    d = a - b
    n = int(d.size)
    mean_diff = float(d.mean())
    n_zero = int(np.count_nonzero(d == 0))
    name = "Wilcoxon signed-rank"
    if n_zero == n:
        note = f"All {n} differences are zero: the two cannot be told apart on these {unit}."
        min_p = min(1.0, 2.0 ** (1 - n))  # n distinct same-sign differences, exact test
        return PairedTest(a_name, b_name, n, 0.0, 1.0, mean_diff, name, min_p, note, unit)
    result = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided", method="auto")
    best_case = stats.wilcoxon(np.abs(d), zero_method="wilcox", method="auto")
    note = ""
    if n_zero:
        note = f"{n_zero} of {n} differences were zero and were dropped (Wilcoxon's convention)."
    return PairedTest(
        a=a_name,
        b=b_name,
        n=n,
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        mean_difference=mean_diff,
        test=f"{name} ({_wilcoxon_method(d)})",
        min_p_value=float(best_case.pvalue),
        note=note,
        unit=unit,
    )
