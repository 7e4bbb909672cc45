"""Data layer: discovery, quality (duplicates, leakage), decode-once cache, splits, demo data.

Never imports torch, fastai or optuna (checked by import-linter).
"""

from __future__ import annotations

from mritune.data._cache import (
    ImageCache,
    build_cache,
    cache_fingerprint,
    data_fingerprint,
    default_cache_dir,
)
from mritune.data._demo import CLASSES as DEMO_CLASSES
from mritune.data._demo import generate_demo
from mritune.data._discover import canonical_class, class_gaps, discover
from mritune.data._fetch import DEFAULT_HANDLE, fetch
from mritune.data._image import load_array, to_mode
from mritune.data._inspect import Inspection, inspect
from mritune.data._manifest import SPLITS, Manifest, Problem
from mritune.data._quality import (
    ImageHashes,
    QualityReport,
    compute_hashes,
    find_duplicates,
    link_augmented,
)
from mritune.data._splits import holdout, kfold, originals

__all__ = [
    "DEFAULT_HANDLE",
    "DEMO_CLASSES",
    "SPLITS",
    "ImageCache",
    "ImageHashes",
    "Inspection",
    "Manifest",
    "Problem",
    "QualityReport",
    "build_cache",
    "cache_fingerprint",
    "canonical_class",
    "data_fingerprint",
    "class_gaps",
    "compute_hashes",
    "default_cache_dir",
    "discover",
    "fetch",
    "find_duplicates",
    "generate_demo",
    "holdout",
    "inspect",
    "kfold",
    "link_augmented",
    "originals",
    "load_array",
    "to_mode",
]
