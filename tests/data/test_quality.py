"""Tests for hashes, duplicates, leakage and augmented linking (mritune.data._quality)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from mritune.data import _quality
from mritune.data._manifest import Manifest
from mritune.data._quality import (
    ImageHashes,
    compute_hashes,
    find_duplicates,
    link_augmented,
)
from mritune.errors import ConfigError, DataError


def _pixels(seed: int, size: int = 256) -> np.ndarray:
    """A grayscale image with its own random coarse structure plus a little fine noise."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8))
    arr = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    arr += rng.normal(0, 4, arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _save(path: Path, pixels: np.ndarray, **kwargs: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return str(path)


def _manifest(
    root: Path,
    paths: list[str],
    splits: list[str],
    labels: list[int] | None = None,
    augmented: list[bool] | None = None,
) -> Manifest:
    n = len(paths)
    return Manifest(
        root=root,
        paths=paths,
        labels=np.array(labels if labels is not None else [0] * n, dtype=np.int64),
        classes=["glioma", "meningioma"],
        splits=np.array(splits),
        augmented=np.array(augmented if augmented is not None else [False] * n, dtype=bool),
        sizes=[(256, 256)] * n,
        modes=["L"] * n,
        problems=[],
        layout="kaggle",
    )


def _fake_hashes(phashes: list[int], contents: list[str] | None = None) -> ImageHashes:
    contents = contents or [f"c{k}" for k in range(len(phashes))]
    return ImageHashes(content=contents, phash=np.array(phashes, dtype=np.uint64))


def test_exact_copy_across_training_and_testing_is_leaked_as_exact(tmp_path: Path) -> None:
    a = _save(tmp_path / "Training/glioma/a.jpg", _pixels(1), quality=90)
    b = _save(tmp_path / "Training/glioma/b.jpg", _pixels(2), quality=90)
    copy = tmp_path / "Testing/glioma/a_copy.jpg"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(Path(a).read_bytes())
    m = _manifest(tmp_path, [a, b, str(copy)], ["train", "train", "test"])

    report = find_duplicates(m, compute_hashes(m.paths))

    assert report.exact_groups == [[0, 2]]
    assert report.near_groups == []
    assert report.leaked == [{"index": 2, "duplicate_of": 0, "kind": "exact", "distance": 0}]
    assert report.groups.tolist() == [0, 1, 0]


def test_resized_and_reencoded_copy_is_a_near_duplicate_leaked_as_near(tmp_path: Path) -> None:
    src = _pixels(3)
    a = _save(tmp_path / "Training/glioma/a.jpg", src, quality=95)
    b = _save(tmp_path / "Training/glioma/b.jpg", _pixels(4), quality=95)
    small = np.asarray(Image.fromarray(src).resize((200, 200), Image.Resampling.BILINEAR))
    c = _save(tmp_path / "Testing/glioma/c.jpg", small, quality=70)
    m = _manifest(tmp_path, [a, b, c], ["train", "train", "test"])

    report = find_duplicates(m, compute_hashes(m.paths))

    assert report.exact_groups == []
    assert report.near_groups == [[0, 2]]
    assert len(report.leaked) == 1
    assert report.leaked[0]["index"] == 2
    assert report.leaked[0]["duplicate_of"] == 0
    assert report.leaked[0]["kind"] == "near"
    assert report.leaked[0]["distance"] <= 6


def test_unrelated_images_are_not_grouped(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"Training/glioma/{k}.jpg", _pixels(100 + k)) for k in range(12)]
    m = _manifest(tmp_path, paths, ["train"] * 6 + ["test"] * 6)

    report = find_duplicates(m, compute_hashes(paths))

    assert report.exact_groups == report.near_groups == report.leaked == []
    assert sorted(report.groups.tolist()) == list(range(12))


def test_groups_are_connected_components_of_near_pairs(tmp_path: Path) -> None:
    # A~B and B~C at distance 3, A-C at distance 6 > threshold 3: still one group.
    # Image 4 is a byte copy of image 0.
    phash = [0b000000, 0b000111, 0b111111, 0xFFFF_0000_0000_0000, 0b000000]
    hashes = _fake_hashes(phash, ["a", "b", "c", "d", "a"])
    paths = [str(tmp_path / f"{k}.jpg") for k in range(5)]
    m = _manifest(tmp_path, paths, ["train"] * 5)

    report = find_duplicates(m, hashes, near_threshold=3)

    assert report.exact_groups == [[0, 4]]
    assert report.near_groups == [[0, 1, 2, 4]]
    assert report.groups.tolist() == [0, 0, 0, 1, 0]
    assert report.near_threshold == 3


def test_groups_of_byte_copies_only_are_not_near_groups(tmp_path: Path) -> None:
    hashes = _fake_hashes([5, 5, 0xFFFF_FFFF_0000_0000], ["x", "x", "y"])
    m = _manifest(tmp_path, [str(tmp_path / f"{k}.png") for k in range(3)], ["train"] * 3)

    report = find_duplicates(m, hashes)

    assert report.exact_groups == [[0, 1]]
    assert report.near_groups == []


def test_leak_names_the_closest_train_image_exact_first(tmp_path: Path) -> None:
    # test image 4: near to train 0 (distance 2) and 1 (distance 1), exact copy of train 2.
    # test image 5: near to train 0 (distance 1) and 1 (distance 2) -> train 0.
    # valid image 6: near only to another held-out image -> not leaked.
    phash = [0b0011, 0b0001, 1 << 50, 0, 0b0000, 0b0111, 0xF0F0_F0F0_0000_0000]
    contents = ["t0", "t1", "same", "v", "same", "w", "z"]
    hashes = _fake_hashes(phash, contents)
    paths = [str(tmp_path / f"{k}.jpg") for k in range(7)]
    splits = ["train", "train", "train", "valid", "test", "test", "valid"]
    m = _manifest(tmp_path, paths, splits)

    leaked = find_duplicates(m, hashes, near_threshold=2).leaked

    assert leaked == [
        {"index": 3, "duplicate_of": 1, "kind": "near", "distance": 1},
        {"index": 4, "duplicate_of": 2, "kind": "exact", "distance": 0},
        {"index": 5, "duplicate_of": 0, "kind": "near", "distance": 1},
    ]


def test_augmented_variants_link_to_their_source_and_share_its_group(tmp_path: Path) -> None:
    names = [
        ("Training/glioma/Tr-gl_0010.jpg", "train", 0, False),  # 0 source
        ("Training/glioma/Tr-gl_001.jpg", "train", 0, False),  # 1 shorter look-alike stem
        ("Training/meningioma/Tr-me_0010.jpg", "train", 1, False),  # 2
        ("Testing/glioma/Te-gl_0010.jpg", "test", 0, False),  # 3
        ("Training_Augmented/glioma/Tr-gl_0010_rot15.jpg", "train", 0, True),  # 4 -> 0
        ("Training_Augmented/glioma/aug_0_TR-GL_0010.JPG", "train", 0, True),  # 5 -> 0
        ("Training_Augmented/glioma/Tr-gl_00105.jpg", "train", 0, True),  # 6 cuts digits: none
        ("Training_Augmented/glioma/Tr-me_0010_flip.jpg", "train", 0, True),  # 7 wrong class
        ("Testing_Augmented/glioma/Te-gl_0010_flip.jpg", "test", 0, True),  # 8 -> 3
        ("Testing_Augmented/glioma/Tr-gl_001_x.jpg", "test", 0, True),  # 9 other split: none
        ("Training_Augmented/glioma/xTr-gl_001_zoom.jpg", "train", 0, True),  # 10 -> 1
    ]
    paths = [str(tmp_path / n) for n, *_ in names]
    m = _manifest(
        tmp_path,
        paths,
        [s for _, s, _, _ in names],
        [c for *_, c, _ in names],
        [a for *_, a in names],
    )

    assert link_augmented(m) == [(4, 0), (5, 0), (8, 3), (10, 1)]

    hashes = _fake_hashes([1 << k for k in range(len(names))])  # all distance 2 apart
    groups = find_duplicates(m, hashes, near_threshold=0).groups
    assert groups[4] == groups[5] == groups[0]
    assert groups[8] == groups[3]
    assert groups[10] == groups[1]
    assert len({groups[k] for k in (0, 1, 2, 3, 6, 7, 9)}) == 7


def test_no_augmented_images_means_no_links(tmp_path: Path) -> None:
    m = _manifest(tmp_path, [str(tmp_path / "Tr-gl_0001.jpg")], ["train"])
    assert link_augmented(m) == []


def test_second_call_reuses_the_cache_and_a_changed_file_is_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [_save(tmp_path / f"img/{k}.jpg", _pixels(10 + k, 64)) for k in range(5)]
    cache = tmp_path / "cache" / "hashes.json"
    calls: list[str] = []
    real = _quality._hash_one
    monkeypatch.setattr(_quality, "_hash_one", lambda p: calls.append(p) or real(p))

    first = compute_hashes(paths, cache_file=cache, workers=1)
    assert first.n_computed == 5 and len(calls) == 5
    assert cache.exists()
    assert not [f for f in cache.parent.iterdir() if f.name != "hashes.json"]  # no temp left

    second = compute_hashes(paths, cache_file=cache, workers=1)
    assert second.n_computed == 0 and len(calls) == 5
    assert second.content == first.content
    assert np.array_equal(second.phash, first.phash)

    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = compute_hashes(paths, cache_file=cache, workers=1)
    assert third.n_computed == 1 and calls[-1] == paths[2]
    assert third.content == first.content


def test_a_corrupt_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"{k}.png", _pixels(20 + k, 32)) for k in range(3)]
    cache = tmp_path / "hashes.json"
    expected = compute_hashes(paths)
    for garbage in ("{not json", "[1, 2]", json.dumps({"kind": "mritune-image-hashes"})):
        cache.write_text(garbage)
        got = compute_hashes(paths, cache_file=cache)
        assert got.n_computed == 3
        assert got.content == expected.content
        assert np.array_equal(got.phash, expected.phash)
        assert compute_hashes(paths, cache_file=cache).n_computed == 0


def test_hashes_match_blake2b_and_imagehash(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", _pixels(5, 64))
    got = compute_hashes([path])
    assert got.content == [hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()]
    assert f"{int(got.phash[0]):016x}" == str(imagehash.phash(Image.open(path), hash_size=8))
    assert got.ok.tolist() == [True]


def test_unreadable_files_get_a_flag_instead_of_an_error(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.jpg", _pixels(6))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(good).read_bytes()[:300])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    missing = tmp_path / "missing.jpg"
    paths = [good, str(truncated), str(text), str(missing)]

    got = compute_hashes(paths)

    assert got.ok.tolist() == [True, False, False, False]
    assert got.phash[1:].tolist() == [0, 0, 0]
    assert got.content[2] == hashlib.blake2b(b"not an image", digest_size=16).hexdigest()
    assert got.content[3] == ""
    m = _manifest(tmp_path, paths, ["train", "test", "test", "test"])
    report = find_duplicates(m, got)
    assert report.exact_groups == report.near_groups == report.leaked == []


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_every_image_mode_is_hashed_as_grayscale(tmp_path: Path, mode: str) -> None:
    gray = Image.fromarray(_pixels(7, 128))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    else:
        img = gray.convert(mode)  # RGBA / LA are fully opaque: compositing on black changes nothing
    ext = ".tif" if mode in ("CMYK", "I", "F") else ".png"
    path = tmp_path / f"img{ext}"
    img.save(path)
    ref = compute_hashes([_save(tmp_path / "ref.png", np.asarray(gray))])

    got = compute_hashes([str(path)])

    assert got.ok.tolist() == [True]
    distance = bin(int(got.phash[0]) ^ int(ref.phash[0])).count("1")
    assert distance <= (32 if mode == "1" else 2)


def test_process_pool_gives_the_same_hashes_and_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [_save(tmp_path / f"{k}.jpg", _pixels(30 + k, 48)) for k in range(40)]
    serial = compute_hashes(paths, workers=1)
    monkeypatch.setattr(_quality, "_PARALLEL_MIN", 4)
    seen: list[tuple[int, int]] = []

    pooled = compute_hashes(paths, workers=2, progress=lambda d, t: seen.append((d, t)))

    assert pooled.content == serial.content
    assert np.array_equal(pooled.phash, serial.phash)
    assert seen[0] == (0, 40) and seen[-1] == (40, 40)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize("bad", [-1, 65, 2.5, True])
def test_invalid_near_threshold_is_rejected(tmp_path: Path, bad: object) -> None:
    m = _manifest(tmp_path, [str(tmp_path / "a.jpg")], ["train"])
    with pytest.raises(ConfigError, match=r"`near_threshold` is .*`0 <= near_threshold <= 64`"):
        find_duplicates(m, _fake_hashes([0]), near_threshold=bad)  # type: ignore[arg-type]


def test_invalid_workers_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"`workers` is 0, but must be `workers >= 1`"):
        compute_hashes([], workers=0)


def test_hashes_of_another_length_are_rejected(tmp_path: Path) -> None:
    m = _manifest(tmp_path, [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")], ["train"] * 2)
    with pytest.raises(DataError, match="hashes cover 1 images but the manifest has 2"):
        find_duplicates(m, _fake_hashes([0]))


def test_empty_manifest_gives_an_empty_report(tmp_path: Path) -> None:
    report = find_duplicates(_manifest(tmp_path, [], []), _fake_hashes([]))
    assert report.exact_groups == report.near_groups == report.leaked == []
    assert report.groups.shape == (0,)


def test_popcount_lookup_table_matches_bit_counting() -> None:
    values = np.random.default_rng(0).integers(0, 2**63, (7, 5), dtype=np.uint64) * 2 + 1
    expected = [[bin(int(v)).count("1") for v in row] for row in values]
    assert _quality._popcount_lut(values).tolist() == expected
    assert _quality._popcount(values).tolist() == expected


def test_a_failing_process_pool_falls_back_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [_save(tmp_path / f"{k}.png", _pixels(40 + k, 32)) for k in range(6)]
    expected = compute_hashes(paths, workers=1)

    def no_pool(*args: object, **kwargs: object) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(_quality, "_PARALLEL_MIN", 2)
    monkeypatch.setattr(_quality, "ProcessPoolExecutor", no_pool)
    with pytest.warns(UserWarning, match="hashing in worker processes failed"):
        got = compute_hashes(paths, workers=2)
    assert got.content == expected.content
    assert np.array_equal(got.phash, expected.phash)
