"""Regressions found in review: scores never count augmented variants, input errors are one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from mritune.cli.main import main
from mritune.config import TrainConfig
from mritune.data import discover, generate_demo, originals
from mritune.engine import prepare
from mritune.tuning import StudySpec, make_splits, quick_space


@pytest.fixture(scope="module")
def augmented_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug") / "data"
    generate_demo(root, train_per_class=8, test_per_class=3, size=32, seed=2)
    for split in ("Training", "Testing"):
        for src in sorted((root / split).glob("*/*.jpg")):
            dst = root / f"{split}_Augmented" / src.parent.name / f"{src.stem}_flip.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.open(src).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(dst)
    return root


def test_originals_drops_augmented_variants(augmented_data):
    m = discover(augmented_data)
    assert m.augmented.sum() == 44
    idx = np.arange(len(m))
    assert not m.augmented[originals(m, idx)].any()
    assert len(originals(m, idx)) == 44


def test_tuning_validation_sides_hold_originals_only(augmented_data, tmp_path):
    prep = prepare(augmented_data, 32, cache_dir=tmp_path / "cache")
    for cv in (0, 2):
        spec = StudySpec(data=str(augmented_data), study="s", storage="", technique="random",
                         n_trials=1, space=quick_space(), base=TrainConfig(img_size=32), cv=cv,
                         valid_pct=0.25)  # fmt: skip
        for tr, va in make_splits(prep, spec):
            assert not prep.manifest.augmented[va].any()
            assert prep.manifest.augmented[tr].any()  # variants still train
            # a variant never trains while its source is being scored
            assert not set(prep.groups[tr]) & set(prep.groups[va])


def test_train_scores_testing_without_its_augmented_copies(augmented_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MRITUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "model"
    rc = main(["train", str(augmented_data), "--out", str(out), "--arch", "tiny", "--no-pretrained",
               "--img-size", "32", "--epochs", "1", "--bs", "8"])  # fmt: skip
    assert rc == 0
    import json

    metrics = json.loads((out / "test" / "metrics.json").read_text())
    assert metrics["n"] == 12  # 3 per class; the 12 flipped copies are not counted


def test_resuming_with_another_seed_is_refused(tmp_path, capsys, augmented_data, monkeypatch):
    monkeypatch.setenv("MRITUNE_CACHE_DIR", str(tmp_path / "cache"))
    space = tmp_path / "space.toml"
    space.write_text(
        '[arch]\ntype = "categorical"\nchoices = ["tiny"]\n[epochs]\ntype = "int"\nlow = 1\nhigh = 2\n'
    )
    base = ["tune", str(augmented_data), "--preset", "quick", "--technique", "random", "--space", str(space),
            "--img-size", "32", "--trials", "1", "--study", "seeded", "--storage", f"sqlite:///{tmp_path / 's.db'}",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main([*base, "--seed", "0"]) == 0
    capsys.readouterr()
    assert main([*base, "--seed", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "seed" in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["report", "--storage", "sqlite:///{tmp}/none.db", "--out", "{tmp}/r"],
            "no such database",
        ),
        (["tune", "{tmp}", "--trials", "0", "--storage", "sqlite:///{tmp}/t.db"], "trials is 0"),
        (["tune", "{tmp}", "--study", "", "--storage", "sqlite:///{tmp}/t.db"], "--study is empty"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_demo_data_refuses_to_mix_datasets(tmp_path, capsys):
    out = tmp_path / "d"
    assert (
        main(
            [
                "data",
                "demo",
                str(out),
                "--train-per-class",
                "3",
                "--test-per-class",
                "1",
                "--size",
                "32",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "demo",
                str(out),
                "--train-per-class",
                "2",
                "--test-per-class",
                "1",
                "--size",
                "32",
            ]
        )
        == 2
    )
    assert "--force" in capsys.readouterr().err
    assert main(["data", "demo", str(out), "--force", "--train-per-class", "2", "--test-per-class", "1",
                 "--size", "32"]) == 0  # fmt: skip
    assert len(list((out / "Training").glob("*/*.jpg"))) == 8
    shutil.rmtree(out)
