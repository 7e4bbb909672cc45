"""Splits as index arrays over the manifest (scikit-learn's splitter contract; no data copied)."""

from __future__ import annotations

import numpy as np

from mritune.errors import ConfigError

# scikit-learn is imported inside the functions: it costs about a second, which `import
# mritune.data` (the CLI, and every spawned cache-decoding worker) should not pay.

__all__ = ["holdout", "kfold", "originals"]


def _check(indices: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0:
        raise ConfigError("cannot split an empty set of images")
    if groups is not None and len(groups) != len(labels):
        raise ConfigError(f"groups has {len(groups)} entries but labels has {len(labels)}")
    return indices


def holdout(
    indices: np.ndarray,
    labels: np.ndarray,
    *,
    valid_pct: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` (manifest indices) into (train, valid) manifest indices.

    Args:
        indices: the manifest indices to split (e.g. ``manifest.indices("train")``).
        labels: class index per manifest row (the whole manifest's ``labels``).
        valid_pct: fraction of ``indices`` that goes to validation, in (0, 1).
        seed: random seed.
        stratify: keep class proportions (exact to within one image per class).
        groups: group id per manifest row; a group is never split. With groups the validation
            share is one of ``round(1 / valid_pct)`` stratified group folds (above 50%, everything
            but one of ``round(1 / (1 - valid_pct))``), so it is close to, not exactly,
            ``valid_pct``.

    Example:
        >>> tr, va = holdout(np.arange(10), np.array([0, 1] * 5), valid_pct=0.2, seed=0)
        >>> len(tr), len(va)
        (8, 2)
    """
    indices = _check(indices, labels, groups)
    if not 0.0 < valid_pct < 1.0:
        raise ConfigError(f"valid_pct is {valid_pct}, but must be 0 < valid_pct < 1")
    y = labels[indices]
    if groups is not None and len(np.unique(groups[indices])) < len(indices):
        # One fold of round(1 / share) is the smaller side; above 50% it is the train side.
        share = min(valid_pct, 1.0 - valid_pct)
        n_splits = max(2, round(1.0 / share))
        smallest = int(np.bincount(y)[np.unique(y)].min())
        n_groups = len(np.unique(groups[indices]))
        if min(smallest, n_groups) < n_splits:
            raise ConfigError(
                f"cannot make a grouped {valid_pct:.0%} validation split: it needs at least "
                f"{n_splits} images per class and {n_splits} groups, but the smallest class has "
                f"{smallest} images and there are {n_groups} groups; use a valid_pct nearer 0.5"
            )
        rest, part = kfold(indices, labels, n_splits=n_splits, seed=seed, groups=groups)[0]
        return (rest, part) if valid_pct <= 0.5 else (part, rest)
    from sklearn.model_selection import train_test_split

    strat = y if stratify and len(np.unique(y)) > 1 else None
    try:
        tr, va = train_test_split(
            indices, test_size=valid_pct, random_state=seed, shuffle=True, stratify=strat
        )
    except ValueError as exc:
        raise ConfigError(f"cannot make a {valid_pct:.0%} validation split: {exc}") from None
    return np.sort(tr), np.sort(va)


def kfold(
    indices: np.ndarray,
    labels: np.ndarray,
    *,
    n_splits: int = 5,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold over ``indices``; grouped (groups never straddle folds) when given.

    Returns a list of ``(train, test)`` manifest-index arrays; the test folds together cover every
    index exactly once.

    Example:
        >>> folds = kfold(np.arange(12), np.array([0, 1, 2] * 4), n_splits=4, seed=0)
        >>> [len(te) for _, te in folds]
        [3, 3, 3, 3]
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    indices = _check(indices, labels, groups)
    if n_splits < 2:
        raise ConfigError(f"folds is {n_splits}, but must be folds >= 2")
    y = labels[indices]
    smallest = int(np.bincount(y)[np.unique(y)].min())
    if smallest < n_splits:
        raise ConfigError(
            f"the smallest class has {smallest} images, fewer than the {n_splits} folds asked for; "
            f"use --folds {max(2, smallest)} or fewer"
        )
    if groups is not None and len(np.unique(groups[indices])) < len(indices):
        n_groups = len(np.unique(groups[indices]))
        if n_groups < n_splits:
            raise ConfigError(
                f"the images form only {n_groups} groups (copies of one image stay together), "
                f"fewer than the {n_splits} folds asked for; use --folds {max(2, n_groups)} or fewer"
            )
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        parts = splitter.split(indices, y, groups[indices])
    else:
        parts = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(
            indices, y
        )
    return [(np.sort(indices[tr]), np.sort(indices[te])) for tr, te in parts]


def originals(manifest: object, idx: np.ndarray) -> np.ndarray:
    """``idx`` without generated variants (``*_Augmented/`` images).

    Augmented variants may train, but they never count in a score: a validation fold, holdout or
    test set is scored on original images only (their variants follow them through the groups).
    """
    idx = np.asarray(idx, dtype=np.int64)
    aug = getattr(manifest, "augmented", None)
    return idx if aug is None or len(idx) == 0 else idx[~np.asarray(aug)[idx]]
