"""Tests for the synthetic demo data set generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mritune.data._demo import CLASSES, DIFFICULTIES, generate_demo
from mritune.errors import ConfigError, DataError

ABBREV = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def _class_images(root: Path, split: str, cls: str) -> list[np.ndarray]:
    paths = sorted((root / split / cls).glob("*.jpg"))
    return [np.asarray(Image.open(p), dtype=np.float64) for p in paths]


def test_public_constants() -> None:
    assert CLASSES == ("glioma", "meningioma", "notumor", "pituitary")
    assert DIFFICULTIES == ("easy", "normal", "hard")


def test_layout_and_counts(tmp_path: Path) -> None:
    counts = generate_demo(tmp_path, train_per_class=3, test_per_class=2, size=40)
    assert counts == {
        "Training": dict.fromkeys(CLASSES, 3),
        "Testing": dict.fromkeys(CLASSES, 2),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Testing", "Training"]
    for split, prefix, n in (("Training", "Tr", 3), ("Testing", "Te", 2)):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == list(CLASSES)
        for cls in CLASSES:
            names = sorted(p.name for p in (tmp_path / split / cls).iterdir())
            assert names == [f"{prefix}-{ABBREV[cls]}_{i:04d}.jpg" for i in range(n)]


def test_images_are_grayscale_jpeg_of_requested_size(tmp_path: Path) -> None:
    generate_demo(tmp_path, train_per_class=1, test_per_class=1, size=56, difficulty="hard")
    paths = sorted(tmp_path.rglob("*.jpg"))
    assert len(paths) == 8
    for path in paths:
        with Image.open(path) as im:
            assert im.format == "JPEG"
            assert im.mode == "L"
            assert im.size == (56, 56)
            pixels = np.asarray(im)
        # A dark background corner and a bright head: not blank, not saturated everywhere.
        assert pixels[:4, :4].mean() < 60
        assert pixels.max() > 150


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    kwargs = {"train_per_class": 2, "test_per_class": 1, "size": 48}
    generate_demo(tmp_path / "a", seed=7, **kwargs)
    generate_demo(tmp_path / "b", seed=7, **kwargs)
    generate_demo(tmp_path / "c", seed=8, **kwargs)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 12
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)


def test_images_do_not_depend_on_counts_or_threads(tmp_path: Path) -> None:
    # 8 images are written one by one; 64 (or more) go through the thread pool.
    generate_demo(tmp_path / "small", train_per_class=1, test_per_class=1, size=40)
    generate_demo(tmp_path / "large", train_per_class=12, test_per_class=4, size=40)
    small, large = _files(tmp_path / "small"), _files(tmp_path / "large")
    assert len(small) == 8
    assert len(large) == 64
    assert all(large[name] == data for name, data in small.items())


def test_unwritable_target_raises_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write the demo data set"):
        generate_demo(blocker, train_per_class=1, test_per_class=1, size=32)


def test_progress_reports_every_image(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_demo(
        tmp_path,
        train_per_class=2,
        test_per_class=1,
        size=32,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(i, 12) for i in range(1, 13)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"difficulty": "x"}, r"difficulty 'x' is unknown; choose one of easy, normal, hard"),
        ({"size": 31}, r"size 31 is invalid; .*from 32 to"),
        ({"size": 64.0}, r"size 64\.0 .*whole number"),
        ({"train_per_class": 0}, r"train_per_class 0 .*at least 1"),
        ({"test_per_class": -2}, r"test_per_class -2 .*at least 1"),
        ({"train_per_class": True}, r"train_per_class True .*whole number"),
        ({"seed": -1}, r"seed -1 .*at least 0"),
    ],
)
def test_invalid_arguments_raise_config_error(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        generate_demo(tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_tumour_classes_differ_from_notumor(tmp_path: Path) -> None:
    size = 64
    generate_demo(tmp_path, train_per_class=8, test_per_class=1, size=size, difficulty="easy")
    t = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(t, t)
    inside = x**2 + y**2 < 0.5**2  # well inside the skull ring
    sella = (np.abs(x) < 0.15) & (y > 0.25) & (y < 0.55)  # lower centre: the skull base

    def bright(cls: str) -> float:
        """Mean over images of the 99th percentile of the brain interior."""
        return float(
            np.mean(
                [np.percentile(im[inside], 99) for im in _class_images(tmp_path, "Training", cls)]
            )
        )

    def sella_mean(cls: str) -> float:
        return float(np.mean([im[sella].mean() for im in _class_images(tmp_path, "Training", cls)]))

    baseline = bright("notumor")
    for cls in ("glioma", "meningioma", "pituitary"):
        assert bright(cls) > baseline + 15, cls
    assert sella_mean("pituitary") > sella_mean("notumor") + 30
    assert sella_mean("pituitary") > sella_mean("meningioma") + 30
