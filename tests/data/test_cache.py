"""Tests for the decode-once image cache (build, reuse, fingerprints, bad files, concurrency)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mritune.data._cache as cache_module
from mritune.data import build_cache, cache_fingerprint, default_cache_dir, discover, load_array
from mritune.errors import CacheError


@pytest.fixture
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths decoded in this process by the (serial) cache build, in order."""
    calls: list[str] = []
    real = cache_module.load_array

    def counting(path, size, channels):  # noqa: ANN001, ANN202
        calls.append(str(path))
        return real(path, size, channels)

    monkeypatch.setattr(cache_module, "load_array", counting)
    return calls


def _fingerprint_dirs(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if p.is_dir())


@pytest.mark.parametrize("channels", [1, 3])
def test_cache_holds_exactly_what_load_array_returns(
    demo_dir: Path, cache_dir: Path, channels: int
) -> None:
    m = discover(demo_dir)
    cache = build_cache(m, 40, channels=channels, cache_dir=cache_dir, workers=1)
    assert cache.images.shape == (len(m), 40, 40, channels)
    assert cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    for i, path in enumerate(m.paths):
        np.testing.assert_array_equal(cache.images[i], load_array(path, 40, channels))
    np.testing.assert_array_equal(cache.labels, m.labels)
    assert cache.classes == m.classes
    assert (cache.size, cache.channels, len(cache)) == (40, channels, len(m))
    assert not cache.bad.any() and cache.problems == []
    assert cache.decoded == len(m)
    assert cache.directory == cache_dir / cache.fingerprint


def test_second_build_with_nothing_changed_decodes_nothing(
    demo_dir: Path, cache_dir: Path, count_decodes: list[str]
) -> None:
    m = discover(demo_dir)
    first = build_cache(m, 32, cache_dir=cache_dir, workers=1)
    assert first.decoded == len(m) and len(count_decodes) == len(m)
    count_decodes.clear()
    again = build_cache(discover(demo_dir), 32, cache_dir=cache_dir, workers=1)
    assert again.decoded == 0 and count_decodes == []
    assert again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.images, first.images)
    assert _fingerprint_dirs(cache_dir) == [first.fingerprint]


def test_progress_reports_every_image(demo_dir: Path, cache_dir: Path) -> None:
    m = discover(demo_dir)
    seen: list[tuple[int, int]] = []
    build_cache(m, 32, cache_dir=cache_dir, workers=1, progress=lambda d, n: seen.append((d, n)))
    assert seen[-1] == (len(m), len(m))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_fingerprint_changes_with_mtime_size_and_channels(demo_dir: Path) -> None:
    m = discover(demo_dir)
    base = cache_fingerprint(m, 32, 3)
    assert cache_fingerprint(m, 32, 3) == base
    assert cache_fingerprint(m, 48, 3) != base
    assert cache_fingerprint(m, 32, 1) != base
    st = os.stat(m.paths[5])
    os.utime(m.paths[5], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache_fingerprint(m, 32, 3) != base


def test_a_touched_file_gives_a_new_cache(
    demo_dir: Path, cache_dir: Path, count_decodes: list[str]
) -> None:
    m = discover(demo_dir)
    first = build_cache(m, 32, cache_dir=cache_dir, workers=1)
    st = os.stat(m.paths[0])
    os.utime(m.paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    count_decodes.clear()
    second = build_cache(discover(demo_dir), 32, cache_dir=cache_dir, workers=1)
    assert second.fingerprint != first.fingerprint
    assert second.decoded == len(m) and len(count_decodes) == len(m)
    assert _fingerprint_dirs(cache_dir) == sorted([first.fingerprint, second.fingerprint])


def test_an_image_that_fails_to_decode_is_marked_bad_not_fatal(
    demo_dir: Path, cache_dir: Path, write_damaged_jpeg
) -> None:
    damaged = write_damaged_jpeg(demo_dir / "Training/glioma/Tr-gl_damaged.jpg")
    m = discover(demo_dir)
    i = m.paths.index(str(damaged.resolve()))  # discovery accepts it: header and tail are fine
    cache = build_cache(m, 32, cache_dir=cache_dir, workers=1)
    assert np.flatnonzero(cache.bad).tolist() == [i]
    assert not cache.images[i].any()
    assert [p.path for p in cache.problems] == [m.paths[i]]
    assert cache.problems[0].reason.startswith("cannot decode:")
    train = m.indices("train")
    assert i in train and i not in cache.usable(train)
    np.testing.assert_array_equal(cache.usable(train), train[train != i])
    reused = build_cache(m, 32, cache_dir=cache_dir, workers=1)  # remembered, not retried
    assert reused.decoded == 0
    np.testing.assert_array_equal(reused.bad, cache.bad)
    assert reused.problems == cache.problems


@pytest.fixture
def many_images(make_demo) -> Path:
    """280 small images: enough for build_cache to consider worker processes."""
    root = make_demo("many", train_per_class=60, test_per_class=10, size=32)
    assert len(discover(root)) >= cache_module._PARALLEL_MIN
    return root


def test_parallel_decode_gives_the_same_cache_as_serial(
    many_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count_decodes: list[str]
) -> None:
    m = discover(many_images)
    monkeypatch.setattr(cache_module, "_SPAWN_COST_S", 0.0)  # workers take over after one chunk
    seen: list[tuple[int, int]] = []
    parallel = build_cache(
        m, 24, cache_dir=tmp_path / "p", workers=2, progress=lambda d, n: seen.append((d, n))
    )
    assert count_decodes == m.paths[: cache_module._CHUNK]  # the rest went to the workers
    assert parallel.decoded == len(m)
    serial = build_cache(m, 24, cache_dir=tmp_path / "s", workers=1)
    np.testing.assert_array_equal(parallel.images, serial.images)
    assert parallel.fingerprint == serial.fingerprint
    assert seen[-1] == (len(m), len(m))


def test_a_few_hundred_small_images_are_decoded_without_worker_processes(
    many_images: Path, cache_dir: Path, count_decodes: list[str]
) -> None:
    # Starting spawn workers costs more than decoding these in-process would.
    m = discover(many_images)
    build_cache(m, 24, cache_dir=cache_dir, workers=2)
    assert count_decodes == m.paths


_BUILD_IN_ANOTHER_PROCESS = """
import hashlib, json, sys, time
from pathlib import Path
from mritune.data import build_cache, discover

data, cache_dir, name, go = sys.argv[1:5]
manifest = discover(data)
Path(cache_dir).parent.joinpath(f"ready-{name}").touch()
while not Path(go).exists():  # start barrier: both processes build at the same moment
    time.sleep(0.001)
cache = build_cache(manifest, 32, cache_dir=cache_dir, workers=1)
print(json.dumps({
    "decoded": cache.decoded,
    "fingerprint": cache.fingerprint,
    "sha": hashlib.sha256(cache.images.tobytes()).hexdigest(),
    "bad": int(cache.bad.sum()),
}))
"""


def test_two_processes_building_one_cache_decode_once(
    demo_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    # Each builder is a fresh interpreter, as a multiprocessing "spawn" child is; a script rather
    # than a pickled function because this module is not importable by name in a child process.
    go = tmp_path / "go"
    script = [sys.executable, "-c", _BUILD_IN_ANOTHER_PROCESS, str(demo_dir), str(cache_dir)]
    procs = [
        subprocess.Popen(
            [*script, name, str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{n}").exists() for n in ("a", "b")):
            assert time.monotonic() < deadline, "the builder processes did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    results = [json.loads(out) for out, _ in outs]
    m = discover(demo_dir)
    assert sorted(r["decoded"] for r in results) == [0, len(m)]  # one build, one reuse
    assert results[0]["fingerprint"] == results[1]["fingerprint"] == cache_fingerprint(m, 32, 3)
    assert results[0]["sha"] == results[1]["sha"]
    assert results[0]["bad"] == results[1]["bad"] == 0
    assert _fingerprint_dirs(cache_dir) == [results[0]["fingerprint"]]
    assert not [p.name for p in cache_dir.iterdir() if p.name.startswith(".")]  # no temp folders
    here = build_cache(m, 32, cache_dir=cache_dir, workers=1)
    assert here.decoded == 0
    for i in (0, len(m) - 1):
        np.testing.assert_array_equal(here.images[i], load_array(m.paths[i], 32, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 4}, r"image size 4 is out of range; choose 8 <= size <= 4096"),
        ({"size": 5000}, r"image size 5000 is out of range"),
        ({"size": 32, "channels": 2}, r"channels 2 is not supported; choose 1 or 3"),
    ],
)
def test_bad_cache_arguments_are_errors(
    demo_dir: Path, cache_dir: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(CacheError, match=message):
        build_cache(discover(demo_dir), cache_dir=cache_dir, **kwargs)


def test_a_cache_folder_that_cannot_be_created_is_an_error(demo_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match="cannot create the cache folder"):
        build_cache(discover(demo_dir), 32, cache_dir=blocker / "cache")


def test_a_file_deleted_after_discovery_is_a_cache_error(demo_dir: Path, cache_dir: Path) -> None:
    m = discover(demo_dir)
    os.remove(m.paths[3])
    with pytest.raises(CacheError, match=r"Tr-gl_0003\.jpg: cannot read it.*discover it again"):
        build_cache(m, 32, cache_dir=cache_dir)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MRITUNE_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path("runs/cache")
    monkeypatch.setenv("MRITUNE_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
