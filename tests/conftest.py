"""Shared fixtures: tiny generated data sets (no test touches real data or the network)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mritune.data import generate_demo


@pytest.fixture
def make_demo(tmp_path: Path) -> Callable[..., Path]:
    """``make_demo(name="data", **kwargs)`` writes a small demo set (Kaggle layout) under tmp_path.

    Defaults: 4 classes x (8 Training + 4 Testing) grayscale JPEGs of 48 px; keyword arguments go
    to :func:`mritune.data.generate_demo`.
    """

    def make(name: str = "data", **kwargs: object) -> Path:
        options: dict[str, object] = {"train_per_class": 8, "test_per_class": 4, "size": 48}
        options.update(kwargs)
        root = tmp_path / name
        generate_demo(root, **options)  # type: ignore[arg-type]
        return root

    return make


@pytest.fixture
def demo_dir(make_demo: Callable[..., Path]) -> Path:
    """A fresh tiny demo data set: ``Training/`` and ``Testing/``, 4 classes, 48 images."""
    return make_demo()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A private cache folder, so that no test writes to ``runs/cache``."""
    return tmp_path / "cache"


@pytest.fixture
def write_damaged_jpeg() -> Callable[[Path], Path]:
    """``write_damaged_jpeg(path)`` writes a JPEG that passes discovery but fails to decode.

    Its header and end-of-image marker are intact (so the cheap tail check accepts it); the scan
    data is replaced by start-of-frame markers, on which PIL's decoder raises ``OSError``.
    """

    def write(path: Path) -> Path:
        pixels = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG")
        data = buf.getvalue()
        start = data.index(b"\xff\xda") + 20  # a little past the start-of-scan marker
        end = len(data) - 2  # keep the end-of-image marker
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[:start] + (b"\xff\xc0" * len(data))[: end - start] + data[end:])
        return path

    return write
