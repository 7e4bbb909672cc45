"""Data quality: content and perceptual hashes, duplicate groups, train/test leakage.

Two images are *exact* duplicates when their files have the same bytes, and *near* duplicates when
their 64-bit perceptual hashes (``imagehash.phash`` of the grayscale image) differ in at most
``near_threshold`` bits *and* their 64-bit difference hashes (``imagehash.dhash``) differ in at
most ``max(2, near_threshold // 2)`` bits. The second, independent hash is there because distinct
brain slices often share a coarse phash (on 7,000 generated slices, phash <= 4 alone flagged 155
test images as leaked; with the dhash check, 3), while resized and re-encoded copies keep both
hashes close (100 of 100 such copies found). Public audits of the Kaggle brain-tumour data found many test images that
are exact or near copies of training images; :func:`find_duplicates` reports them so that an
accuracy measured on ``Testing/`` can be read honestly, and returns group ids so that grouped splits
never put two copies of one image on both sides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mritune.data._image import to_mode
from mritune.data._manifest import Manifest
from mritune.errors import ConfigError, DataError

__all__ = ["ImageHashes", "QualityReport", "compute_hashes", "find_duplicates", "link_augmented"]

_DRAFT_PX = 64  # JPEGs are decoded at >= this size: phash only looks at a 32x32 thumbnail
_PARALLEL_MIN = 256  # below this many files a process pool costs more than it saves
_POP8 = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)
_CACHE_KIND = "mritune-image-hashes"
_CACHE_ALGO = "blake2b-128/phash-8/dhash-8/draft-64/gray-v2"  # change when hashing changes

_Result = tuple[str, int, bool, int]  # (content hex, phash, phash ok, dhash)


@dataclasses.dataclass
class ImageHashes:
    """Hashes of a list of image files, in the order given.

    Attributes:
        content: hex BLAKE2b (16-byte) digest of each file's bytes; ``""`` when it was unreadable.
        phash: uint64 perceptual hash per image (8x8 ``imagehash.phash`` bits, row-major, first
            bit most significant: ``f"{phash[i]:016x}"`` equals ``str(imagehash.phash(...))``).
        ok: False where the image could not be decoded (its ``phash`` is 0 and is never compared).
        n_computed: how many files were hashed by this call (the rest came from the cache).
    """

    content: list[str]
    phash: np.ndarray
    ok: np.ndarray | None = None
    n_computed: int = 0
    dhash: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.phash = np.asarray(self.phash, dtype=np.uint64)
        if self.dhash is not None:
            self.dhash = np.asarray(self.dhash, dtype=np.uint64)
        if self.ok is None:
            self.ok = np.ones(len(self.content), dtype=bool)
        self.ok = np.asarray(self.ok, dtype=bool)

    def __len__(self) -> int:
        return len(self.content)


@dataclasses.dataclass
class QualityReport:
    """Duplicates and leakage found in a manifest (indices are manifest rows).

    Attributes:
        exact_groups: groups (size >= 2) of files with identical bytes.
        near_groups: connected components of the graph whose edges are exact pairs and near pairs
            (phash distance <= ``near_threshold``), kept when they hold at least one near pair of
            files whose bytes differ. Groups of byte-identical copies only are in ``exact_groups``.
        leaked: one ``{"index": i, "duplicate_of": j, "kind": "exact" | "near", "distance": d}``
            per ``valid``/``test`` image ``i`` that duplicates a ``train`` image (augmented train
            images included); ``j`` is the closest such image (exact first, then smallest phash
            distance, then lowest index).
        groups: int64 group id per image (0..G-1, numbered by first member): connected components
            over exact, near and augmented-variant-to-source links; pass it to grouped splits.
        near_threshold: the threshold used.

    All index lists are sorted ascending, and groups are sorted by their first index.
    """

    exact_groups: list[list[int]]
    near_groups: list[list[int]]
    leaked: list[dict]
    groups: np.ndarray
    near_threshold: int

    @property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1 if len(self.groups) else 0


# ---------------------------------------------------------------------------------------- hashing


def _load_gray(source: str | Path | io.BytesIO) -> Image.Image:
    """Decode an image as 8-bit grayscale, the same way for every mode.

    Conversion is :func:`mritune.data._image.to_mode` (16-bit and float min-max scaled, alpha
    composited on black, palette / CMYK through PIL). JPEGs are decoded at a reduced scale
    (``draft``) of at least 64 px, plenty for a 32x32 phash and several times faster.
    """
    with Image.open(source) as img:
        if img.format == "JPEG":
            img.draft("L" if img.mode in ("L", "RGB") else None, (_DRAFT_PX, _DRAFT_PX))
        img.load()
        gray = to_mode(img, 1)
        return gray.copy() if gray is img else gray


def _phash_int(gray: Image.Image) -> int:
    bits = imagehash.phash(gray, hash_size=8).hash.ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _dhash_int(gray: Image.Image) -> int:
    bits = imagehash.dhash(gray, hash_size=8).hash.ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _hash_one(path: str) -> _Result:
    """Hash one file; never raises (an undecodable image gets phash 0 and ``ok=False``)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return "", 0, False, 0
    content = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        gray = _load_gray(io.BytesIO(data))
        return content, _phash_int(gray), True, _dhash_int(gray)
    except Exception:  # PIL raises many kinds for damaged files; the caller only needs a flag
        return content, 0, False, 0


def _hash_chunk(paths: list[str]) -> list[_Result]:
    return [_hash_one(p) for p in paths]


def _hash_many(
    paths: list[str], workers: int, report: Callable[[int], None]
) -> list[_Result | None]:
    """Hash ``paths`` in chunks on a process pool (serially when few or ``workers == 1``)."""
    results: list[_Result | None] = [None] * len(paths)
    if workers > 1 and len(paths) > _PARALLEL_MIN:
        chunk = int(np.clip(len(paths) // (workers * 8), 32, 512))
        starts = range(0, len(paths), chunk)
        try:
            with ProcessPoolExecutor(
                max_workers=min(workers, len(starts)), mp_context=get_context("spawn")
            ) as pool:
                futures = {pool.submit(_hash_chunk, paths[s : s + chunk]): s for s in starts}
                for future in as_completed(futures):
                    s = futures[future]
                    part = future.result()
                    results[s : s + len(part)] = part
                    report(len(part))
        except (OSError, BrokenProcessPool) as exc:
            warnings.warn(
                f"hashing in worker processes failed ({exc}); continuing in this one",
                stacklevel=3,
            )
    for k, p in enumerate(paths):
        if results[k] is None:
            results[k] = _hash_one(p)
            report(1)
    return results


def _read_cache(cache_file: Path) -> dict[str, list] | None:
    """Entries of a hash cache, or None when it is missing, corrupt or from another algorithm."""
    try:
        doc = json.loads(cache_file.read_text(encoding="utf-8"))
        if doc.get("kind") != _CACHE_KIND or doc.get("algo") != _CACHE_ALGO:
            return None
        entries = doc["entries"]
        return entries if isinstance(entries, dict) else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _write_cache(cache_file: Path, entries: dict[str, list]) -> None:
    """Write the cache atomically (temporary file in the same folder, then ``os.replace``)."""
    doc = {"kind": _CACHE_KIND, "algo": _CACHE_ALGO, "entries": entries}
    tmp = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=cache_file.parent, prefix=f".{cache_file.name}.", suffix=".tmp"
        )
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        os.replace(tmp, cache_file)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        warnings.warn(f"could not write the hash cache {cache_file}: {exc}", stacklevel=3)


def _cached(entry: object, size: int, mtime_ns: int) -> _Result | None:
    """The cached result when ``entry`` is well-formed and matches the file's size and mtime."""
    try:
        e_size, e_mtime, content, phash_hex, ok, dhash_hex = entry  # type: ignore[misc]
        if e_size != size or e_mtime != mtime_ns or not isinstance(content, str) or not content:
            return None
        mask = 0xFFFF_FFFF_FFFF_FFFF
        return content, int(phash_hex, 16) & mask, bool(ok), int(dhash_hex, 16) & mask
    except (TypeError, ValueError):
        return None


def compute_hashes(
    paths: Sequence[str | Path],
    *,
    cache_file: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageHashes:
    """Content and perceptual hashes of image files, reusing a cache when given.

    Args:
        paths: image files (normally ``manifest.paths``).
        cache_file: JSON file of earlier results keyed by (absolute path, size, mtime_ns); only
            changed or new files are hashed again. Missing or corrupt caches are rebuilt.
        workers: processes to hash with (default ``os.cpu_count()``); used above a few hundred
            files to hash.
        progress: called as ``progress(done, total)`` with ``total == len(paths)``; cached files
            count as done at once, and the last call is ``(total, total)``.

    Returns:
        :class:`ImageHashes` in the order of ``paths``.

    Raises:
        ConfigError: ``workers`` is below 1.

    Example:
        >>> hashes = compute_hashes(manifest.paths, cache_file="hashes.json")  # doctest: +SKIP
        >>> report = find_duplicates(manifest, hashes)  # doctest: +SKIP
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"The value of `workers` is {workers}, but must be `workers >= 1`")
    workers = workers or os.cpu_count() or 1
    paths = [os.fspath(p) for p in paths]
    n = len(paths)
    cache_path = Path(cache_file) if cache_file is not None else None
    old = _read_cache(cache_path) if cache_path is not None else None
    entries = old or {}

    results: list[_Result | None] = [None] * n
    keys: list[tuple[str, int, int] | None] = [None] * n
    for i, p in enumerate(paths):
        ap = os.path.abspath(p)
        try:
            st = os.stat(ap)
        except OSError:
            continue
        keys[i] = (ap, st.st_size, st.st_mtime_ns)
        if ap in entries:
            results[i] = _cached(entries[ap], st.st_size, st.st_mtime_ns)
    todo = [i for i in range(n) if results[i] is None]

    done = n - len(todo)
    if progress is not None:
        progress(done, n)

    def report(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, n)

    for i, res in zip(todo, _hash_many([paths[i] for i in todo], workers, report), strict=True):
        results[i] = res

    if cache_path is not None and (todo or old is None):
        keep = {k: v for k, v in entries.items() if os.path.exists(k)}
        for key, res in zip(keys, results, strict=True):
            if key is not None and res is not None and res[0]:
                keep[key[0]] = [key[1], key[2], res[0], f"{res[1]:016x}", res[2], f"{res[3]:016x}"]
        _write_cache(cache_path, keep)

    final = [r if r is not None else ("", 0, False, 0) for r in results]
    return ImageHashes(
        content=[r[0] for r in final],
        phash=np.array([r[1] for r in final], dtype=np.uint64),
        ok=np.array([r[2] for r in final], dtype=bool),
        n_computed=len(todo),
        dhash=np.array([r[3] for r in final], dtype=np.uint64),
    )


# ------------------------------------------------------------------------------------- duplicates


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element, as uint8 (``np.bitwise_count`` from numpy 2.0 on)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _popcount_lut(x)


def _popcount_lut(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.uint64)
    return _POP8[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def _near_pairs(phash: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with Hamming distance <= threshold, as (i, j, distance) arrays."""
    n = len(phash)
    block = max(1, min(n, 4_000_000 // max(n, 1)))
    out_i, out_j, out_d = [], [], []
    for s in range(0, n, block):
        rows = phash[s : s + block]
        dist = _popcount(rows[:, None] ^ phash[None, s:])  # columns from s: upper triangle only
        r, c = np.nonzero(dist <= threshold)
        keep = c > r  # column offset is relative to s, so c > r means j > i
        r, c = r[keep], c[keep]
        out_i.append((r + s).astype(np.int32))
        out_j.append((c + s).astype(np.int32))
        out_d.append(dist[r, c])
    if not out_i:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty, np.zeros(0, dtype=np.uint8)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


def _confirm_threshold(threshold: int) -> int:
    """dhash distance that confirms a phash near pair (scaled with the phash threshold)."""
    return max(2, threshold // 2)


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component id per node, numbered in order of each component's lowest index."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[labels]


def _member_lists(labels: np.ndarray, wanted: np.ndarray) -> list[list[int]]:
    """Index lists of the components flagged in ``wanted`` (sorted, by first index)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [g.tolist() for g in np.split(order, bounds) if len(g) and wanted[labels[g[0]]]]
    return sorted(groups, key=lambda g: g[0])


def find_duplicates(
    manifest: Manifest, hashes: ImageHashes, *, near_threshold: int = 6
) -> QualityReport:
    """Exact and near duplicates, train/test leakage and duplicate groups of a manifest.

    Args:
        manifest: the images.
        hashes: :func:`compute_hashes` of ``manifest.paths``, in that order.
        near_threshold: largest phash Hamming distance (0..64 bits) counted as a near duplicate.
            6 finds resized and re-encoded copies while keeping distinct MRI slices apart.

    Returns:
        A :class:`QualityReport`.

    Raises:
        ConfigError: ``near_threshold`` is not an integer in 0..64.
        DataError: ``hashes`` does not have one entry per manifest row.

    Example:
        >>> report = find_duplicates(manifest, compute_hashes(manifest.paths))  # doctest: +SKIP
        >>> len(report.leaked), report.n_groups  # doctest: +SKIP
    """
    if (
        isinstance(near_threshold, bool)
        or not isinstance(near_threshold, (int, np.integer))
        or not 0 <= near_threshold <= 64
    ):
        raise ConfigError(
            f"The value of `near_threshold` is {near_threshold!r}, but must be an integer with "
            f"`0 <= near_threshold <= 64` (bits of a 64-bit perceptual hash)"
        )
    n = len(manifest)
    if len(hashes) != n or len(hashes.phash) != n:
        raise DataError(
            f"hashes cover {len(hashes)} images but the manifest has {n}; "
            f"compute them with compute_hashes(manifest.paths)"
        )
    threshold = int(near_threshold)

    # Exact: identical bytes (unreadable files, content "", never match anything).
    by_content: dict[str, list[int]] = {}
    for k, c in enumerate(hashes.content):
        if c:
            by_content.setdefault(c, []).append(k)
    exact_groups = [g for g in by_content.values() if len(g) >= 2]  # dicts keep first-seen order
    ids = {c: k for k, c in enumerate(by_content)}
    content_id = np.array([ids.get(c, -1 - k) for k, c in enumerate(hashes.content)], np.int64)
    ex_i = np.array([g[0] for g in exact_groups for _ in g[1:]], dtype=np.int32)
    ex_j = np.array([m for g in exact_groups for m in g[1:]], dtype=np.int32)

    # Near: phash distance <= threshold among decodable images.
    usable = np.flatnonzero(hashes.ok)
    ni, nj, nd = _near_pairs(hashes.phash[usable], threshold)
    ni, nj = usable[ni], usable[nj]
    if hashes.dhash is not None:
        # Confirm with an independent gradient hash: similar-looking but different slices often
        # share a coarse phash; a resized or re-encoded copy keeps both hashes close.
        confirmed = _popcount(hashes.dhash[ni] ^ hashes.dhash[nj]) <= _confirm_threshold(threshold)
        ni, nj, nd = ni[confirmed], nj[confirmed], nd[confirmed]
    is_near = content_id[ni] != content_id[nj]

    dup_i, dup_j = np.concatenate([ex_i, ni]), np.concatenate([ex_j, nj])
    dup_labels = _components(n, dup_i, dup_j)
    has_near = np.zeros(dup_labels.max() + 1 if n else 0, dtype=bool)
    has_near[dup_labels[ni[is_near]]] = True
    near_groups = _member_lists(dup_labels, has_near) if n else []

    leaked = _leaks(manifest, exact_groups, ni, nj, nd)

    aug = np.array(link_augmented(manifest), dtype=np.int64).reshape(-1, 2)
    groups = _components(n, np.concatenate([dup_i, aug[:, 0]]), np.concatenate([dup_j, aug[:, 1]]))
    return QualityReport(exact_groups, near_groups, leaked, groups, threshold)


def _leaks(
    manifest: Manifest,
    exact_groups: list[list[int]],
    ni: np.ndarray,
    nj: np.ndarray,
    nd: np.ndarray,
) -> list[dict]:
    """Held-out (valid/test) images that duplicate a train image, with the closest train image."""
    splits = np.asarray(manifest.splits)
    train = splits == "train"
    held = np.isin(splits, ("valid", "test"))
    best: dict[int, tuple[int, int, int]] = {}  # held index -> (rank, distance, train index)
    for g in exact_groups:
        in_train = [k for k in g if train[k]]
        best.update({k: (0, 0, in_train[0]) for k in g if in_train and held[k]})

    # Near pairs oriented (held, train); the smallest distance, then lowest train index, wins.
    h = np.concatenate([ni, nj])
    t = np.concatenate([nj, ni])
    d = np.concatenate([nd, nd]).astype(np.int64)
    keep = held[h] & train[t]
    h, t, d = h[keep], t[keep], d[keep]
    order = np.lexsort((t, d, h))
    h, t, d = h[order], t[order], d[order]
    _, first = np.unique(h, return_index=True)
    for k in first:
        hk = int(h[k])
        if hk not in best:
            best[hk] = (1, int(d[k]), int(t[k]))
    return [
        {"index": i, "duplicate_of": j, "kind": "exact" if r == 0 else "near", "distance": dist}
        for i, (r, dist, j) in sorted(best.items())
    ]


# -------------------------------------------------------------------------------------- augmented


def _cuts_run(s: str, a: int, b: int, chars: Callable[[str], bool]) -> bool:
    """True when ``s[a:b]`` starts or ends inside a run of characters matching ``chars``."""
    return (a > 0 and chars(s[a - 1]) and chars(s[a])) or (
        b < len(s) and chars(s[b - 1]) and chars(s[b])
    )


def _best_source(stem: str, index: dict[str, int], lengths: list[int]) -> int | None:
    """The source whose stem is the longest one inside ``stem`` (see :func:`link_augmented`)."""
    fallback: int | None = None
    for ell in lengths:  # longest first
        if ell > len(stem):
            continue
        for a in range(len(stem) - ell + 1):
            src = index.get(stem[a : a + ell])
            if src is None or _cuts_run(stem, a, a + ell, str.isdigit):
                continue
            if not _cuts_run(stem, a, a + ell, str.isalnum):
                return src  # on token boundaries: the best possible match
            if fallback is None:
                fallback = src
    return fallback


def link_augmented(manifest: Manifest) -> list[tuple[int, int]]:
    """Link each augmented image to the source image it was generated from.

    The source is the non-augmented image of the same split and class whose file stem
    (case-insensitive, at least 3 characters) is the longest stem contained in the augmented
    file's stem: ``Tr-gl_0010.jpg`` is the source of ``Tr-gl_0010_rot15.jpg`` and of
    ``aug_0_Tr-gl_0010.jpg``. Matches on token boundaries (not cutting a run of letters or digits)
    win over others, and a match never cuts a run of digits (``Tr-gl_001`` is not the source of
    ``Tr-gl_0010_rot15``). Unmatched augmented images are not linked.

    Returns:
        ``(augmented index, source index)`` pairs, sorted by augmented index.

    Example:
        >>> link_augmented(manifest)[:1]  # doctest: +SKIP
        [(5712, 10)]
    """
    augmented = np.asarray(manifest.augmented, dtype=bool)
    if not augmented.any():
        return []
    stems = [Path(p).stem.casefold() for p in manifest.paths]
    splits = np.asarray(manifest.splits)
    labels = np.asarray(manifest.labels)
    index: dict[tuple[str, int], dict[str, int]] = {}
    for i in np.flatnonzero(~augmented):
        if len(stems[i]) >= 3:
            key = (str(splits[i]), int(labels[i]))
            index.setdefault(key, {}).setdefault(stems[i], int(i))
    lengths = {key: sorted({len(s) for s in d}, reverse=True) for key, d in index.items()}
    links = []
    for i in np.flatnonzero(augmented):
        key = (str(splits[i]), int(labels[i]))
        if key in index:
            src = _best_source(stems[i], index[key], lengths[key])
            if src is not None:
                links.append((int(i), src))
    return links
