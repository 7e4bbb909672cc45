"""Tests for ``mritune.data.inspect`` and the ``mritune data demo | inspect`` command line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mritune.cli.main import main
from mritune.data import DEMO_CLASSES, inspect


def _plant_leaks(root: Path) -> dict[str, tuple[str, str]]:
    """Copy two training images into ``Testing/``: one byte-identical, one resized and re-encoded.

    Returns ``{test path: (train path, kind)}``, relative to ``root``.
    """
    exact_src, exact = "Training/glioma/Tr-gl_0003.jpg", "Testing/glioma/Te-gl_copy.jpg"
    shutil.copyfile(root / exact_src, root / exact)
    near_src, near = "Training/pituitary/Tr-pi_0005.jpg", "Testing/pituitary/Te-pi_rescan.jpg"
    with Image.open(root / near_src) as img:
        img.resize((64, 64), Image.Resampling.BICUBIC).save(root / near, quality=70)
    return {exact: (exact_src, "exact"), near: (near_src, "near")}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------- library


def test_inspect_reports_planted_exact_and_near_duplicates_as_leaked(
    demo_dir: Path, cache_dir: Path
) -> None:
    planted = _plant_leaks(demo_dir)
    report = inspect(demo_dir, cache_dir=cache_dir)
    data = report.to_dict()
    leaked = {x["path"]: (x["duplicate_of"], x["kind"]) for x in data["leaked"]}
    assert leaked == planted
    assert all(x["split"] == "test" for x in data["leaked"])
    near = next(x for x in data["leaked"] if x["kind"] == "near")
    assert 0 <= near["distance"] <= data["duplicates"]["near_threshold"]
    assert ["Training/glioma/Tr-gl_0003.jpg", "Testing/glioma/Te-gl_copy.jpg"] in [
        sorted(g, reverse=True) for g in data["duplicates"]["exact"]
    ]
    # the two copies share a duplicate group, so grouped splits keep them together
    m, groups = report.manifest, report.quality.groups
    for test_rel, (train_rel, _) in planted.items():
        i, j = (m.paths.index(str((demo_dir / r).resolve())) for r in (test_rel, train_rel))
        assert groups[i] == groups[j]
    assert data["n_groups"] == len(m) - 2
    json.dumps(data)  # plain data only


def test_inspect_of_clean_demo_data_finds_no_leak_and_reuses_hashes(
    demo_dir: Path, cache_dir: Path
) -> None:
    first = inspect(demo_dir, cache_dir=cache_dir)
    assert first.quality.leaked == [] and first.warnings == []
    assert first.hashes.n_computed == len(first.manifest)
    again = inspect(demo_dir, cache_dir=cache_dir)
    assert again.hashes.n_computed == 0
    assert again.hashes.content == first.hashes.content


def test_inspect_warns_about_class_gaps_and_augmented_images(
    demo_dir: Path, cache_dir: Path
) -> None:
    shutil.rmtree(demo_dir / "Testing/meningioma")
    aug = demo_dir / "Training_Augmented/glioma"
    aug.mkdir(parents=True)
    for k in range(3):
        with Image.open(demo_dir / f"Training/glioma/Tr-gl_000{k}.jpg") as img:
            img.rotate(15).save(aug / f"Tr-gl_000{k}_rot15.jpg")
    report = inspect(demo_dir, cache_dir=cache_dir)
    assert report.warnings == [
        "split 'test' has no images of class meningioma",
        "3 augmented images; 3 linked to their source image by file name (kept on the same side "
        "of every split)",
    ]
    assert report.to_dict()["counts"]["train_augmented"]["glioma"] == 3


# ---------------------------------------------------------------------------------- CLI


def test_cli_demo_then_inspect_shows_four_classes_in_both_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    rc, stdout, _ = _run(
        capsys, "data", "demo", str(out), "--train-per-class", "3", "--test-per-class", "2",
        "--size", "32",
    )  # fmt: skip
    assert rc == 0 and "wrote 20 images" in stdout
    report = tmp_path / "report.json"
    rc, stdout, err = _run(
        capsys, "data", "inspect", str(out), "--json", str(report),
        "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert rc == 0, err
    data = json.loads(report.read_text())
    assert data["layout"] == "kaggle"
    assert data["classes"] == list(DEMO_CLASSES)
    assert data["counts"] == {
        "train": dict.fromkeys(DEMO_CLASSES, 3),
        "test": dict.fromkeys(DEMO_CLASSES, 2),
    }
    assert data["n_images"] == 20
    assert data["problems"] == [] and data["leaked"] == [] and data["warnings"] == []
    assert data["images"] == {"sizes": {"32x32": 20}, "n_sizes": 1, "modes": {"L": 20}}
    assert "leakage: none found" in stdout
    assert f"report written to {report}" in stdout


def test_cli_inspect_json_lists_planted_leaks_and_problems(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    planted = _plant_leaks(demo_dir)
    (demo_dir / "Testing/glioma/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (demo_dir / "Training/notumor/broken.jpg").write_bytes(b"")
    report = tmp_path / "out/report.json"
    rc, stdout, err = _run(
        capsys, "data", "inspect", str(demo_dir), "--json", str(report),
        "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert rc == 0, err
    data = json.loads(report.read_text())
    assert {x["path"]: (x["duplicate_of"], x["kind"]) for x in data["leaked"]} == planted
    reasons = {Path(p["path"]).name: p["reason"] for p in data["problems"]}
    assert reasons == {
        ".DS_Store": "system file (not an image)",
        "broken.jpg": "empty file (0 bytes)",
    }
    assert "leakage: 2 evaluation/test images duplicate a training image (1 exact, 1 near)" in (
        " ".join(stdout.split())
    )
    assert "2 files skipped" in stdout


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: root / "missing", "no such file or folder"),
        (lambda root: root, "no usable images found"),
        (lambda root: _one_class(root), r"found only one class \(glioma\)"),
    ],
    ids=["missing", "no-images", "one-class"],
)
def test_cli_data_errors_are_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, message: str
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    target = setup(root)
    rc, stdout, err = _run(
        capsys, "data", "inspect", str(target), "--cache-dir", str(tmp_path / "cache")
    )
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("mritune data: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in err + stdout


def test_cli_rejects_a_bad_near_threshold_in_one_line(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = _run(
        capsys, "data", "inspect", str(demo_dir), "--near-threshold", "65",
        "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "near_threshold" in lines[0] and "Traceback" not in err


def test_cli_demo_rejects_bad_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = _run(capsys, "data", "demo", str(tmp_path / "d"), "--size", "8")
    assert rc == 2
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "mritune data: error: size 8 is invalid; it must be a whole number from 32 to 2048"
    ]


def _one_class(root: Path) -> Path:
    for split in ("Training", "Testing"):
        folder = root / split / "glioma"
        folder.mkdir(parents=True)
        Image.new("L", (32, 32), 100).save(folder / "a.jpg")
    return root
