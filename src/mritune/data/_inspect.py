"""Inspection: discovery + quality in one call, as plain data for printing and JSON."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mritune.data._cache import default_cache_dir
from mritune.data._discover import class_gaps, discover
from mritune.data._manifest import Manifest
from mritune.data._quality import ImageHashes, QualityReport, compute_hashes, find_duplicates

__all__ = ["Inspection", "inspect"]

DEFAULT_NEAR_THRESHOLD = 4


@dataclasses.dataclass
class Inspection:
    """A dataset's manifest, hashes and quality report."""

    manifest: Manifest
    hashes: ImageHashes
    quality: QualityReport
    warnings: list[str]

    def size_summary(self) -> dict[str, Any]:
        sizes = Counter(f"{w}x{h}" for w, h in self.manifest.sizes)
        modes = Counter(self.manifest.modes)
        return {"sizes": dict(sizes.most_common(10)), "n_sizes": len(sizes), "modes": dict(modes)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON written by ``mritune data inspect --json``."""
        m, q = self.manifest, self.quality
        rel = m.relpath
        return {
            "root": str(m.root),
            "layout": m.layout,
            "classes": list(m.classes),
            "class_aliases": m.class_aliases,
            "n_images": len(m),
            "counts": m.counts(),
            "images": self.size_summary(),
            "problems": [p.to_dict() for p in m.problems],
            "warnings": self.warnings,
            "duplicates": {
                "near_threshold": q.near_threshold,
                "exact": [[rel(i) for i in g] for g in q.exact_groups],
                "near": [[rel(i) for i in g] for g in q.near_groups],
            },
            "leaked": [
                {
                    "path": rel(x["index"]),
                    "split": str(m.splits[x["index"]]),
                    "duplicate_of": rel(x["duplicate_of"]),
                    "kind": x["kind"],
                    "distance": int(x.get("distance", 0)),
                }
                for x in q.leaked
            ],
            "n_groups": q.n_groups,
        }


def inspect(
    path: str | Path,
    *,
    near_threshold: int = DEFAULT_NEAR_THRESHOLD,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Inspection:
    """Discover ``path``, hash every image (cached beside the image cache), find duplicates and
    leakage.

    Example:
        >>> report = inspect("runs/demo/data")              # doctest: +SKIP
        >>> report.to_dict()["counts"]["test"]              # doctest: +SKIP
    """
    manifest = discover(path)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    hashes = compute_hashes(manifest.paths, cache_file=root / "hashes.json", progress=progress)
    quality = find_duplicates(manifest, hashes, near_threshold=near_threshold)
    warnings = class_gaps(manifest)
    n_aug = int(manifest.augmented.sum())
    if n_aug:
        linked = sum(1 for g in _aug_groups(manifest, quality) if g)
        warnings.append(
            f"{n_aug} augmented images; {linked} linked to their source image by file name "
            f"(kept on the same side of every split)"
        )
    return Inspection(manifest, hashes, quality, warnings)


def _aug_groups(manifest: Manifest, quality: QualityReport) -> list[bool]:
    """For each augmented image, whether it shares a group with a non-augmented image."""
    import numpy as np

    plain_groups = set(quality.groups[~manifest.augmented].tolist())
    return [int(g) in plain_groups for g in quality.groups[np.flatnonzero(manifest.augmented)]]
