"""The manifest: one row per usable image, as parallel arrays (no pixels)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = ["Manifest", "Problem", "SPLITS"]

#: Split names used throughout mritune. ``train`` is ``Training/`` (or ``train/``), ``valid`` a
#: given validation folder, ``test`` is ``Testing/`` (or ``test/``).
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Problem:
    """A file that was found but skipped, with the reason."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclasses.dataclass
class Manifest:
    """Usable images of a dataset.

    Attributes:
        root: the dataset folder (or the CSV file's folder).
        paths: absolute file paths, one per image, in a stable sorted order.
        labels: int64 class index per image into ``classes``.
        classes: canonical class names, sorted.
        splits: split name per image (one of :data:`SPLITS`).
        augmented: True for images from ``*_Augmented`` folders (generated variants).
        sizes: (width, height) per image as stored on disk.
        modes: PIL mode per image as stored on disk.
        problems: files found but skipped, with reasons.
        layout: which layout was recognised (``kaggle``, ``train-valid-test``, ``flat``, ``csv``).
        class_aliases: canonical name -> folder spellings seen.
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    splits: np.ndarray
    augmented: np.ndarray
    sizes: list[tuple[int, int]]
    modes: list[str]
    problems: list[Problem]
    layout: str
    class_aliases: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def indices(self, split: str, *, augmented: bool | None = None) -> np.ndarray:
        """Indices of the images in ``split``; ``augmented`` filters generated variants."""
        mask = self.splits == split
        if augmented is not None:
            mask &= self.augmented == augmented
        return np.flatnonzero(mask)

    def has_split(self, split: str) -> bool:
        return bool(np.any(self.splits == split))

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}`` for every split present (augmented images counted in their own
        ``<split>_augmented`` entry)."""
        out: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            for aug in (False, True):
                idx = self.indices(split, augmented=aug)
                if len(idx) == 0:
                    continue
                key = f"{split}_augmented" if aug else split
                binc = np.bincount(self.labels[idx], minlength=len(self.classes))
                out[key] = {c: int(n) for c, n in zip(self.classes, binc)}
        return out

    def relpath(self, i: int) -> str:
        """Path of image ``i`` relative to the dataset root (for display)."""
        p = Path(self.paths[i])
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return p.as_posix()

    def file_stats(self) -> list[tuple[str, int, int]]:
        """(path, size in bytes, mtime in ns) per image: what cache fingerprints are made of."""
        out = []
        for p in self.paths:
            st = Path(p).stat()
            out.append((p, st.st_size, st.st_mtime_ns))
        return out
