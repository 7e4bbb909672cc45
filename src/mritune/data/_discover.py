"""Finding the images of a dataset: layouts, class names, and files that must be skipped."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mritune.data._image import IMAGE_FORMATS
from mritune.data._manifest import Manifest, Problem
from mritune.errors import DataError

__all__ = ["discover", "canonical_class", "class_gaps"]

# Folder name (lower case) -> (split, augmented)
_KAGGLE = {
    "training": ("train", False),
    "testing": ("test", False),
    "training_augmented": ("train", True),
    "testing_augmented": ("test", True),
}
_TVT = {
    "train": ("train", False),
    "valid": ("valid", False),
    "val": ("valid", False),
    "validation": ("valid", False),
    "test": ("test", False),
}
_CSV_SPLITS = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
    "testing": "test",
}
_EXT_TO_FORMAT = {ext: fmt for fmt, exts in IMAGE_FORMATS.items() for ext in exts}
_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}


def canonical_class(name: str) -> str:
    """Canonical class name: lower case without spaces, ``_`` or ``-``.

    >>> canonical_class("No Tumor"), canonical_class("no_tumor"), canonical_class("notumor")
    ('notumor', 'notumor', 'notumor')
    """
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def _check_file(path: Path) -> tuple[str | None, tuple[int, int], str]:
    """Return (problem reason or None, size, mode) without decoding the whole image.

    Truncation is found from the file's tail (JPEG end-of-image marker, PNG ``IEND`` chunk),
    which costs one small read instead of a full decode.
    """
    name = path.name
    if name.lower() in _SYSTEM_FILES or name.startswith("._"):
        return "system file (not an image)", (0, 0), ""
    if name.startswith("."):
        return "hidden file", (0, 0), ""
    try:
        nbytes = path.stat().st_size
    except OSError as exc:
        return f"cannot read: {exc.strerror}", (0, 0), ""
    if nbytes == 0:
        return "empty file (0 bytes)", (0, 0), ""
    try:
        with Image.open(path) as img:
            fmt, size, mode = img.format, img.size, img.mode
    except UnidentifiedImageError:
        return "not an image (unreadable by PIL)", (0, 0), ""
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"unreadable image: {exc}", (0, 0), ""
    ext = path.suffix.lower()
    claimed = _EXT_TO_FORMAT.get(ext)
    if claimed is None and ext:
        return f"unexpected extension '{path.suffix}' for a {fmt} image", size, mode
    if claimed is not None and fmt != claimed:
        return f"extension '{path.suffix}' but the content is {fmt}", size, mode
    tail_problem = _truncated(path, fmt, nbytes)
    if tail_problem:
        return tail_problem, size, mode
    return None, size, mode


def _truncated(path: Path, fmt: str | None, nbytes: int) -> str | None:
    if fmt not in ("JPEG", "PNG"):
        return None
    with open(path, "rb") as fh:
        fh.seek(max(0, nbytes - 64))
        tail = fh.read()
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def _walk_files(folder: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        # Hidden folders (.ipynb_checkpoints, .git) hold copies or tool files, never class images.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            yield Path(dirpath) / f


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class _Collector:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: list[tuple[str, str, str, bool, tuple[int, int], str]] = []
        self.problems: list[Problem] = []
        self.aliases: dict[str, set[str]] = {}

    def add(self, path: Path, label: str, split: str, augmented: bool) -> None:
        reason, size, mode = _check_file(path)
        if reason is not None:
            self.problem(path, reason)
            return
        canon = canonical_class(label)
        if not canon:
            self.problem(path, f"empty class name '{label}'")
            return
        self.aliases.setdefault(canon, set()).add(label)
        self.rows.append((str(path.resolve()), canon, split, augmented, size, mode))

    def problem(self, path: Path, reason: str) -> None:
        """Record a skipped file under its absolute path, as ``Manifest.paths`` are."""
        self.problems.append(Problem(str(path.resolve()), reason))

    def add_split_folder(self, folder: Path, split: str, augmented: bool) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.is_file():
                reason, _, _ = _check_file(entry)
                self.problem(entry, reason or "image outside a class folder (ignored)")
        for class_dir in _subdirs(folder):
            for f in _walk_files(class_dir):
                self.add(f, class_dir.name, split, augmented)


def _split_folders(root: Path) -> tuple[str, list[tuple[Path, str, bool]]]:
    subdirs = {p.name.lower(): p for p in _subdirs(root)}
    kaggle = [(subdirs[k], *v) for k, v in _KAGGLE.items() if k in subdirs]
    if kaggle:
        return "kaggle", kaggle
    tvt = [(subdirs[k], *v) for k, v in _TVT.items() if k in subdirs]
    if tvt:
        return "train-valid-test", tvt
    return "flat", [(root, "train", False)]


def _read_csv(csv_path: Path, col: _Collector) -> None:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
            if "path" not in fields or "label" not in fields:
                raise DataError(
                    f"{csv_path}: a manifest CSV needs the columns path,label[,split]; found "
                    f"{','.join(fields) or 'none'}"
                )
            for lineno, raw in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
                split_raw = row.get("split", "") or "train"
                split = _CSV_SPLITS.get(split_raw.lower())
                p = Path(row["path"])
                path = p if p.is_absolute() else csv_path.parent / p
                if split is None:
                    col.problem(path, f"line {lineno}: unknown split '{split_raw}'")
                elif not path.is_file():
                    col.problem(path, f"line {lineno}: file not found")
                else:
                    col.add(path, row["label"], split, False)
    except UnicodeDecodeError as exc:
        raise DataError(f"{csv_path}: not a UTF-8 text CSV ({exc.reason})") from None


def discover(path: str | Path) -> Manifest:
    """Find the images of a dataset and return its :class:`Manifest`.

    Layouts (folder names matched case-insensitively):

    - Kaggle: ``Training/``, ``Testing/`` and optionally ``Training_Augmented/``,
      ``Testing_Augmented/`` (generated variants of their split), each with one folder per class;
    - ``train/``, ``valid/`` (or ``val/``), ``test/``, each with class folders;
    - a flat folder of class folders (all images are ``train``; no test split);
    - a CSV file with columns ``path,label[,split]`` (paths relative to the CSV's folder).

    Class folder names are normalised (``No Tumor``, ``no_tumor`` and ``notumor`` are one class).
    Unusable files are listed in ``problems`` with a reason, never raised.

    Raises:
        DataError: the path is missing, holds no usable image, or fewer than two classes.

    Example:
        >>> m = discover("runs/demo/data")          # doctest: +SKIP
        >>> m.classes                                # doctest: +SKIP
        ['glioma', 'meningioma', 'notumor', 'pituitary']
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(
            f"{root}: no such file or folder; give the dataset folder or a CSV manifest"
        )
    col = _Collector(root.resolve() if root.is_dir() else root.resolve().parent)
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root}: expected a dataset folder or a .csv manifest")
        layout = "csv"
        _read_csv(root, col)
    else:
        layout, folders = _split_folders(root)
        for folder, split, augmented in folders:
            col.add_split_folder(folder, split, augmented)
    if not col.rows:
        hint = f" ({len(col.problems)} files skipped as unusable)" if col.problems else ""
        raise DataError(
            f"{root}: no usable images found{hint}; expected class folders "
            f"(e.g. Training/glioma/*.jpg) or a CSV manifest path,label[,split]"
        )
    classes = sorted({r[1] for r in col.rows})
    if len(classes) < 2:
        raise DataError(
            f"{root}: found only one class ({classes[0]}); a classifier needs at least two class "
            f"folders"
        )
    split_order = {"train": 0, "valid": 1, "test": 2}
    rows = sorted(col.rows, key=lambda r: (split_order[r[2]], r[3], r[1], r[0]))
    index = {c: i for i, c in enumerate(classes)}
    return Manifest(
        root=col.root,
        paths=[r[0] for r in rows],
        labels=np.array([index[r[1]] for r in rows], dtype=np.int64),
        classes=classes,
        splits=np.array([r[2] for r in rows], dtype="<U5"),
        augmented=np.array([r[3] for r in rows], dtype=bool),
        sizes=[r[4] for r in rows],
        modes=[r[5] for r in rows],
        problems=col.problems,
        layout=layout,
        class_aliases={k: sorted(v) for k, v in sorted(col.aliases.items())},
    )


def class_gaps(manifest: Manifest) -> list[str]:
    """Warnings for classes present in one split but missing from another."""
    present = {
        s: {manifest.classes[i] for i in np.unique(manifest.labels[manifest.indices(s)])}
        for s in ("train", "valid", "test")
        if manifest.has_split(s)
    }
    out = []
    for split, have in present.items():
        missing = sorted(set(manifest.classes) - have)
        if missing:
            out.append(f"split '{split}' has no images of class {', '.join(missing)}")
    return out
