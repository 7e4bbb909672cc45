"""Invariant tests for splits (holdout, stratified and grouped k-fold) over manifest indices."""

from __future__ import annotations

import numpy as np
import pytest

from mritune.data import holdout, kfold
from mritune.errors import ConfigError


def _labels(counts: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Shuffled labels with ``counts[c]`` images of class ``c``."""
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(y)


def _groups(n: int, seed: int = 0) -> np.ndarray:
    """Group ids with groups of 1 to 4 consecutive rows (like duplicate groups)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n)
    return np.repeat(np.arange(n), sizes)[:n]


def _never_straddle(groups: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    return not set(groups[a].tolist()) & set(groups[b].tolist())


# Labels cover the whole manifest; only the train split (every other row) is split.
LABELS = _labels((75, 46, 103, 23))
TRAIN = np.arange(0, len(LABELS), 2)


# ------------------------------------------------------------------------------- holdout


@pytest.mark.parametrize("valid_pct", [0.1, 0.2, 0.35, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_holdout_is_a_stratified_partition(valid_pct: float, seed: int) -> None:
    tr, va = holdout(TRAIN, LABELS, valid_pct=valid_pct, seed=seed)
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), TRAIN)
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    n_class = np.bincount(LABELS[TRAIN])
    n_valid = np.bincount(LABELS[va], minlength=len(n_class))
    assert np.all(np.abs(n_valid - valid_pct * n_class) <= 1), (n_valid, valid_pct * n_class)


def test_holdout_depends_on_the_seed_only() -> None:
    a = holdout(TRAIN, LABELS, valid_pct=0.2, seed=3)
    b = holdout(TRAIN, LABELS, valid_pct=0.2, seed=3)
    c = holdout(TRAIN, LABELS, valid_pct=0.2, seed=4)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("valid_pct", [0.2, 0.25, 0.5, 0.75])
def test_grouped_holdout_never_splits_a_group(valid_pct: float) -> None:
    groups = _groups(len(LABELS), seed=1)
    tr, va = holdout(TRAIN, LABELS, valid_pct=valid_pct, seed=0, groups=groups)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), TRAIN)
    assert _never_straddle(groups, tr, va)
    # One group fold: close to, not exactly, the share asked for (also above 50%).
    assert abs(len(va) / len(TRAIN) - valid_pct) < 0.06, len(va) / len(TRAIN)


def test_holdout_with_all_groups_distinct_is_the_plain_stratified_split() -> None:
    distinct = np.arange(len(LABELS))
    grouped = holdout(TRAIN, LABELS, valid_pct=0.2, seed=5, groups=distinct)
    plain = holdout(TRAIN, LABELS, valid_pct=0.2, seed=5)
    np.testing.assert_array_equal(grouped[1], plain[1])


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_holdout_rejects_a_valid_pct_outside_0_1(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"valid_pct is .*, but must be 0 < valid_pct < 1"):
        holdout(TRAIN, LABELS, valid_pct=bad)


def test_holdout_too_small_for_stratification_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot make a 50% validation split"):
        holdout(np.arange(4), np.array([0, 0, 0, 1]), valid_pct=0.5)


def test_grouped_holdout_too_small_names_valid_pct_not_folds() -> None:
    y = np.array([0] * 20 + [1] * 3)
    groups = np.arange(23) // 2
    with pytest.raises(ConfigError, match=r"grouped 20% validation split.*smallest class has 3"):
        holdout(np.arange(23), y, valid_pct=0.2, groups=groups)


def test_split_errors_for_empty_input_and_mismatched_groups() -> None:
    with pytest.raises(ConfigError, match="cannot split an empty set"):
        holdout(np.array([], dtype=np.int64), LABELS)
    with pytest.raises(ConfigError, match=r"groups has 3 entries but labels has \d+"):
        kfold(TRAIN, LABELS, groups=np.arange(3))


# --------------------------------------------------------------------------------- kfold


def _check_folds(folds: list, indices: np.ndarray, n_splits: int) -> None:
    assert len(folds) == n_splits
    for tr, te in folds:
        assert np.intersect1d(tr, te).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), indices)
        assert len(te) > 0
    tests = np.concatenate([te for _, te in folds])
    np.testing.assert_array_equal(np.sort(tests), indices)  # each index tested exactly once


@pytest.mark.parametrize("n_splits", [2, 3, 5, 9])
@pytest.mark.parametrize("seed", [0, 7])
def test_stratified_kfold_invariants(n_splits: int, seed: int) -> None:
    folds = kfold(TRAIN, LABELS, n_splits=n_splits, seed=seed)
    _check_folds(folds, TRAIN, n_splits)
    ideal = np.bincount(LABELS[TRAIN]) / n_splits
    for _, te in folds:
        per_class = np.bincount(LABELS[te], minlength=len(ideal))
        assert np.all(np.abs(per_class - ideal) < 1), (per_class, ideal)


@pytest.mark.parametrize("n_splits", [2, 4, 5])
@pytest.mark.parametrize("seed", [0, 3])
def test_grouped_kfold_keeps_each_group_in_one_fold(n_splits: int, seed: int) -> None:
    groups = _groups(len(LABELS), seed=seed + 10)
    folds = kfold(TRAIN, LABELS, n_splits=n_splits, seed=seed, groups=groups)
    _check_folds(folds, TRAIN, n_splits)
    for tr, te in folds:
        assert _never_straddle(groups, tr, te)
    fold_of = {}
    for k, (_, te) in enumerate(folds):
        for g in set(groups[te].tolist()):
            assert fold_of.setdefault(g, k) == k, f"group {g} is in folds {fold_of[g]} and {k}"


def test_kfold_is_reproducible_and_seeded() -> None:
    a = kfold(TRAIN, LABELS, n_splits=5, seed=1)
    b = kfold(TRAIN, LABELS, n_splits=5, seed=1)
    c = kfold(TRAIN, LABELS, n_splits=5, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))


def test_kfold_rejects_more_folds_than_the_smallest_class() -> None:
    smallest = int(np.bincount(LABELS[TRAIN]).min())
    with pytest.raises(
        ConfigError, match=rf"smallest class has {smallest} images.*use --folds {smallest} or fewer"
    ):
        kfold(TRAIN, LABELS, n_splits=smallest + 1)


def test_kfold_rejects_fewer_than_two_folds() -> None:
    with pytest.raises(ConfigError, match=r"folds is 1, but must be folds >= 2"):
        kfold(TRAIN, LABELS, n_splits=1)


def test_grouped_kfold_rejects_more_folds_than_groups() -> None:
    y = np.array([0, 1] * 10)
    groups = np.repeat(np.arange(5), 4)  # 5 groups, each holding both classes
    with pytest.raises(ConfigError, match=r"only 5 groups.*use --folds 5 or fewer"):
        kfold(np.arange(20), y, n_splits=6, groups=groups)
