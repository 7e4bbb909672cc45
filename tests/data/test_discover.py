"""Tests for dataset discovery (layouts, class names, unusable files) and image conversion."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mritune.data import canonical_class, class_gaps, discover, load_array
from mritune.errors import DataError

S = 32  # load_array target size in these tests


def _gray(seed: int, size: int = 40) -> np.ndarray:
    """A grayscale image with coarse random structure (every seed looks different)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC))


def _save(path: Path, img: Image.Image | np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    img.save(path, fmt)
    return path


def _jpeg_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_gray(seed)).save(buf, "JPEG")
    return buf.getvalue()


# Files of the malformed corpus that must be skipped: relative path -> pattern of the reason.
UNUSABLE = {
    "Training/glioma/truncated.jpg": r"truncated JPEG \(no end-of-image marker\)",
    "Training/glioma/header_cut.jpg": r"unreadable image|not an image",
    "Training/glioma/zero.jpg": r"empty file \(0 bytes\)",
    "Training/glioma/text.jpg": r"not an image",
    "Training/glioma/.DS_Store": r"system file",
    "Training/glioma/._g0.jpg": r"system file",
    "Training/glioma/png_named.jpg": r"extension '\.jpg' but the content is PNG",
    "Training/glioma/notes.txt": r"not an image",
    "Training/stray.jpg": r"image outside a class folder",
}
# Files that must be accepted: relative path -> (class, split, PIL mode on disk).
ACCEPTED = {
    "Training/glioma/g0.jpg": ("glioma", "train", "L"),
    "Training/glioma/UPPER.JPG": ("glioma", "train", "L"),
    "Training/glioma/rgba.png": ("glioma", "train", "RGBA"),
    "Training/glioma/deep16.png": ("glioma", "train", "I;16"),
    "Training/glioma/cmyk.jpg": ("glioma", "train", "CMYK"),
    "Training/glioma/palette.png": ("glioma", "train", "P"),
    "Training/glioma/rgb.jpeg": ("glioma", "train", "RGB"),
    "Training/glioma/sub/nested.jpg": ("glioma", "train", "L"),
    "Training/no_tumor/n0.jpg": ("notumor", "train", "L"),
    "Training/notumor/n1.jpg": ("notumor", "train", "L"),
    "Testing/No Tumor/t0.jpg": ("notumor", "test", "L"),
    "Testing/glioma/t1.jpg": ("glioma", "test", "L"),
}


def _malformed_corpus(root: Path) -> Path:
    """A Kaggle-layout folder holding every kind of file real data sets contain."""
    t = root / "Training"
    _save(t / "glioma/g0.jpg", _gray(0))
    _save(t / "glioma/UPPER.JPG", _gray(1), "JPEG")
    a = _gray(2)
    alpha = np.where(np.arange(40)[None, :] < 20, 0, 255).astype(np.uint8) * np.ones_like(a)
    _save(t / "glioma/rgba.png", np.dstack([a, a, a, alpha]))  # left half fully transparent
    ramp = np.linspace(1000, 4000, 40 * 40).reshape(40, 40).astype(np.uint16)  # 12 of 16 bits
    _save(t / "glioma/deep16.png", ramp)
    _save(t / "glioma/cmyk.jpg", Image.fromarray(np.dstack([_gray(3)] * 3)).convert("CMYK"))
    _save(t / "glioma/palette.png", Image.fromarray(np.dstack([_gray(4)] * 3)).convert("P"))
    _save(t / "glioma/rgb.jpeg", np.dstack([_gray(5), _gray(6), _gray(7)]))
    _save(t / "glioma/sub/nested.jpg", _gray(8))
    _save(t / "glioma/.ipynb_checkpoints/g0-checkpoint.jpg", _gray(0))  # hidden folder: skipped
    _save(t / "no_tumor/n0.jpg", _gray(9))
    _save(t / "notumor/n1.jpg", _gray(10))
    _save(t / "glioma/png_named.jpg", _gray(11), "PNG")
    jpeg = _jpeg_bytes(12)
    (t / "glioma/truncated.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])  # cut in the scan data
    (t / "glioma/header_cut.jpg").write_bytes(jpeg[:200])  # cut before the image size
    (t / "glioma/zero.jpg").write_bytes(b"")
    (t / "glioma/text.jpg").write_text("this is not a JPEG\n")
    (t / "glioma/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (t / "glioma/._g0.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(100))  # AppleDouble
    (t / "glioma/notes.txt").write_text("scanner notes\n")
    _save(t / "stray.jpg", _gray(13))
    _save(root / "Testing/No Tumor/t0.jpg", _gray(14))
    _save(root / "Testing/glioma/t1.jpg", _gray(15))
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return _malformed_corpus(tmp_path / "corpus")


def _rel(manifest_root: Path, path: str) -> str:
    return Path(path).relative_to(manifest_root).as_posix()


# ------------------------------------------------------------------------ malformed files


def test_every_unusable_file_is_reported_with_its_reason(corpus: Path) -> None:
    m = discover(corpus)
    reasons = {_rel(m.root, p.path): p.reason for p in m.problems}
    assert set(reasons) == set(UNUSABLE)
    for rel, pattern in UNUSABLE.items():
        assert re.search(pattern, reasons[rel]), f"{rel}: {reasons[rel]!r} !~ {pattern!r}"


def test_problem_paths_are_absolute_like_manifest_paths(corpus: Path, monkeypatch) -> None:
    monkeypatch.chdir(corpus.parent)
    m = discover("corpus")  # a relative path, as typed on the command line
    assert all(Path(p).is_absolute() for p in m.paths)
    assert all(Path(p.path).is_absolute() and Path(p.path).exists() for p in m.problems)


def test_usable_files_are_accepted_with_class_split_and_mode(corpus: Path) -> None:
    m = discover(corpus)
    got = {
        _rel(m.root, p): (m.classes[lab], str(split), mode)
        for p, lab, split, mode in zip(m.paths, m.labels, m.splits, m.modes)
    }
    assert got == ACCEPTED
    assert m.layout == "kaggle"
    assert all(size == (40, 40) for size in m.sizes)


def test_hidden_folders_inside_class_folders_are_skipped(corpus: Path) -> None:
    m = discover(corpus)
    assert not any(".ipynb_checkpoints" in p for p in m.paths)


def test_class_folders_spelled_differently_across_splits_are_one_class(corpus: Path) -> None:
    m = discover(corpus)
    assert m.classes == ["glioma", "notumor"]
    assert m.class_aliases["notumor"] == ["No Tumor", "no_tumor", "notumor"]
    assert m.counts() == {"train": {"glioma": 8, "notumor": 2}, "test": {"glioma": 1, "notumor": 1}}
    assert class_gaps(m) == []


@pytest.mark.parametrize("channels", [1, 3])
def test_every_accepted_mode_loads_as_uint8_of_the_asked_shape(corpus: Path, channels: int) -> None:
    m = discover(corpus)
    for path in m.paths:
        arr = load_array(path, S, channels)
        assert arr.dtype == np.uint8 and arr.shape == (S, S, channels), path


def test_gray_images_load_the_same_in_one_and_three_channels(corpus: Path) -> None:
    m = discover(corpus)
    for path, mode in zip(m.paths, m.modes):
        if mode == "RGB" or mode == "P":  # colour content: channels legitimately differ
            continue
        rgb, gray = load_array(path, S, 3), load_array(path, S, 1)[..., 0]
        for c in range(3):
            np.testing.assert_array_equal(rgb[..., c], gray, err_msg=f"{path} channel {c}")


def test_16_bit_images_are_min_max_scaled_to_8_bits(corpus: Path) -> None:
    arr = load_array(corpus / "Training/glioma/deep16.png", 40, 1)[..., 0]
    ramp = np.linspace(1000, 4000, 40 * 40).reshape(40, 40).astype(np.uint16).astype(float)
    expected = np.round((ramp - ramp.min()) * 255.0 / (ramp.max() - ramp.min()))
    assert arr.min() == 0 and arr.max() == 255
    assert np.abs(arr - expected).max() <= 1  # 1: rounding of values exactly halfway


def test_transparency_is_composited_on_black(corpus: Path) -> None:
    arr = load_array(corpus / "Training/glioma/rgba.png", 40, 3)
    assert not arr[:, :20].any()  # transparent half
    np.testing.assert_array_equal(arr[:, 20:, 0], _gray(2)[:, 20:])  # opaque half unchanged


def test_cmyk_and_palette_images_keep_their_content(corpus: Path) -> None:
    cmyk = load_array(corpus / "Training/glioma/cmyk.jpg", 40, 1)[..., 0].astype(int)
    assert np.abs(cmyk - _gray(3)).mean() < 4  # not inverted, not blank
    pal_path = corpus / "Training/glioma/palette.png"
    with Image.open(pal_path) as img:
        expected = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(load_array(pal_path, 40, 3), expected)


def test_jpeg_with_a_valid_end_marker_but_garbage_inside_passes_discovery(
    tmp_path: Path, write_damaged_jpeg
) -> None:
    # Discovery only reads headers and tails; such a file is caught later, by the cache build.
    write_damaged_jpeg(tmp_path / "a/bad.jpg")
    _save(tmp_path / "b/ok.jpg", _gray(1))
    assert len(discover(tmp_path)) == 2
    with pytest.raises(OSError):
        load_array(tmp_path / "a/bad.jpg", S, 3)


# -------------------------------------------------------------------------------- layouts


def test_kaggle_augmented_folders_are_marked_augmented(tmp_path: Path) -> None:
    for split in ("Training", "Testing", "Training_Augmented"):
        for c, cls in enumerate(("glioma", "pituitary")):
            _save(tmp_path / split / cls / f"{split[:2]}-{c}.jpg", _gray(len(split) * 10 + c))
    m = discover(tmp_path)
    assert m.layout == "kaggle"
    aug = [_rel(m.root, m.paths[i]) for i in np.flatnonzero(m.augmented)]
    assert sorted(aug) == [
        "Training_Augmented/glioma/Tr-0.jpg",
        "Training_Augmented/pituitary/Tr-1.jpg",
    ]
    assert set(m.splits[m.augmented]) == {"train"}
    assert set(m.counts()) == {"train", "train_augmented", "test"}
    assert len(m.indices("train", augmented=False)) == 2 and len(m.indices("train")) == 4


def test_kaggle_folder_names_are_case_insensitive(tmp_path: Path) -> None:
    for k, split in enumerate(("TRAINING", "testing", "Training_augmented")):
        for c, cls in enumerate(("Glioma", "PITUITARY")):
            _save(tmp_path / split / cls / "x.png", _gray(10 * k + c))
    m = discover(tmp_path)
    assert m.layout == "kaggle"
    assert m.classes == ["glioma", "pituitary"]
    assert m.counts() == {
        "train": {"glioma": 1, "pituitary": 1},
        "train_augmented": {"glioma": 1, "pituitary": 1},
        "test": {"glioma": 1, "pituitary": 1},
    }


@pytest.mark.parametrize("valid_name", ["valid", "val", "Validation", "VAL"])
def test_train_valid_test_layout(tmp_path: Path, valid_name: str) -> None:
    for k, split in enumerate(("Train", valid_name, "TEST")):
        for c, cls in enumerate(("a", "b")):
            for i in range(k + 1):
                _save(tmp_path / split / cls / f"{i}.jpg", _gray(100 * k + 10 * c + i))
    m = discover(tmp_path)
    assert m.layout == "train-valid-test"
    assert m.counts() == {
        "train": {"a": 1, "b": 1},
        "valid": {"a": 2, "b": 2},
        "test": {"a": 3, "b": 3},
    }
    assert list(m.splits) == ["train"] * 2 + ["valid"] * 4 + ["test"] * 6  # stable split order


def test_flat_folder_of_class_folders_is_all_train(tmp_path: Path) -> None:
    for c, cls in enumerate(("cat", "dog", "emu")):
        _save(tmp_path / cls / "img.jpg", _gray(c))
    (tmp_path / "README.md").write_text("# my data\n")
    m = discover(tmp_path)
    assert m.layout == "flat"
    assert m.classes == ["cat", "dog", "emu"]
    assert set(m.splits) == {"train"} and not m.has_split("test")
    assert [_rel(m.root, p.path) for p in m.problems] == ["README.md"]
    assert class_gaps(m) == []


def test_csv_manifest_with_splits(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    for i in range(6):
        _save(imgs / f"{i}.jpg", _gray(i))
    absolute = _save(tmp_path / "elsewhere/abs.jpg", _gray(9))
    (tmp_path / "labels.csv").write_text(
        "Path,Label,Split\n"  # header names are case-insensitive
        "imgs/0.jpg,Glioma,Training\n"
        "imgs/1.jpg,No Tumor,train\n"
        "imgs/2.jpg,glioma,val\n"
        "imgs/3.jpg,notumor,Testing\n"
        f"{absolute},no_tumor,test\n"
        "imgs/4.jpg,glioma,holdout\n"
        "imgs/missing.jpg,glioma,train\n"
        "imgs/5.jpg,glioma,\n"  # empty split means train
    )
    m = discover(tmp_path / "labels.csv")
    assert m.layout == "csv"
    assert m.root == tmp_path.resolve()
    assert m.classes == ["glioma", "notumor"]
    assert m.counts() == {
        "train": {"glioma": 2, "notumor": 1},
        "valid": {"glioma": 1, "notumor": 0},
        "test": {"glioma": 0, "notumor": 2},
    }
    reasons = {_rel(m.root, p.path): p.reason for p in m.problems}
    assert reasons == {
        "imgs/4.jpg": "line 7: unknown split 'holdout'",
        "imgs/missing.jpg": "line 8: file not found",
    }


def test_csv_manifest_without_split_column_is_all_train(tmp_path: Path) -> None:
    for i in range(4):
        _save(tmp_path / f"{i}.png", _gray(i))
    (tmp_path / "m.csv").write_text("path,label\n0.png,a\n1.png,a\n2.png,b\n3.png,b\n")
    m = discover(tmp_path / "m.csv")
    assert m.counts() == {"train": {"a": 2, "b": 2}}


def test_csv_manifest_without_required_columns_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,class\n0.png,a\n")
    with pytest.raises(
        DataError, match=r"needs the columns path,label\[,split\]; found file,class"
    ):
        discover(tmp_path / "m.csv")


def test_csv_manifest_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(b"path,label\n\xff\xfe\x00bad,a\n")
    with pytest.raises(DataError, match="not a UTF-8 text CSV"):
        discover(tmp_path / "m.csv")


def test_class_missing_from_a_split_is_flagged(tmp_path: Path) -> None:
    for c, cls in enumerate(("glioma", "meningioma", "pituitary")):
        _save(tmp_path / "Training" / cls / "a.jpg", _gray(c))
    _save(tmp_path / "Testing/glioma/b.jpg", _gray(10))
    _save(tmp_path / "Testing/pituitary/b.jpg", _gray(11))
    gaps = class_gaps(discover(tmp_path))
    assert gaps == ["split 'test' has no images of class meningioma"]


def test_canonical_class_names() -> None:
    assert {canonical_class(n) for n in ("No Tumor", "no_tumor", "notumor", " NO-TUMOR ")} == {
        "notumor"
    }
    assert canonical_class("Glioma") == "glioma"


# --------------------------------------------------------------------------------- errors


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        discover(tmp_path / "nope")


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no usable images found"):
        discover(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a/x.jpg").write_bytes(b"")
    (tmp_path / "a/.DS_Store").write_bytes(b"x")
    with pytest.raises(DataError, match=r"no usable images found \(2 files skipped as unusable\)"):
        discover(tmp_path)


def test_a_single_class_is_an_error(tmp_path: Path) -> None:
    _save(tmp_path / "Training/glioma/a.jpg", _gray(0))
    _save(tmp_path / "Testing/Glioma/b.jpg", _gray(1))
    with pytest.raises(DataError, match=r"only one class \(glioma\).*at least two"):
        discover(tmp_path)


def test_a_file_that_is_not_a_csv_is_an_error(tmp_path: Path) -> None:
    path = _save(tmp_path / "one.jpg", _gray(0))
    with pytest.raises(DataError, match=r"expected a dataset folder or a \.csv manifest"):
        discover(path)
