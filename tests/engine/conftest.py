"""Shared fixtures for the engine tests: a tiny generated dataset, an isolated cache and torch home,
and one small model trained through the command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

#: Torch threads for every training test: one thread keeps timings steady on a shared 2-core box.
THREADS = 1
#: Image side used by the training tests (the demo files are 48 px).
IMG = 32


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Image and hash caches in a temporary folder, and an empty torch home (no pretrained
    weights can be found in it), so nothing is written into the repository or the user's cache."""
    root = tmp_path_factory.mktemp("engine-env")
    paths = {"cache": root / "cache", "torch_home": root / "torch-home"}
    paths["torch_home"].mkdir()
    import torch

    threads = torch.get_num_threads()  # fit() sets the thread count; give it back afterwards
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MRITUNE_CACHE_DIR", str(paths["cache"]))
        mp.setenv("TORCH_HOME", str(paths["torch_home"]))
        yield paths
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated dataset in the Kaggle layout: 4 classes x (10 Training + 4 Testing), 48 px."""
    from mritune.data import generate_demo

    root = tmp_path_factory.mktemp("demo") / "data"
    generate_demo(root, train_per_class=10, test_per_class=4, size=48, seed=0)
    return root


@pytest.fixture(scope="session")
def prepared(demo_data: Path):  # noqa: ANN201 - mritune.engine.Prepared
    """The demo dataset inspected and cached at ``IMG`` px."""
    from mritune.engine import prepare

    return prepare(demo_data, IMG)


def cli(*argv: object) -> int:
    """Run ``mritune ARGV...`` in this process; returns the exit code."""
    from mritune.cli.main import main

    return main([str(a) for a in argv])


def train_args(
    data: Path, out: Path, *extra: str, arch: str = "tiny", pretrained: bool = False
) -> list[str]:
    """``mritune train`` arguments for a fast CPU run (2 epochs, random init unless asked)."""
    return [
        "train", str(data), "--out", str(out), "--arch", arch,
        "--pretrained" if pretrained else "--no-pretrained",
        "--img-size", str(IMG), "--epochs", "2", "--bs", "8", "--device", "cpu",
        "--threads", str(THREADS), "--seed", "0", *extra,
    ]  # fmt: skip


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):  # noqa: ANN201
    """``run_cli(*argv) -> (exit code, stdout, stderr)`` for ``mritune ARGV...``."""

    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = cli(*argv)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture(scope="session")
def make_train_args():  # noqa: ANN201
    """The :func:`train_args` helper, for test modules (which cannot import this conftest)."""
    return train_args


@pytest.fixture(scope="session")
def tiny_bundle(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the tiny architecture, trained for 2 epochs through ``mritune train``."""
    out = tmp_path_factory.mktemp("tiny-model") / "model"
    assert cli(*train_args(demo_data, out)) == 0
    return out


@pytest.fixture(scope="session")
def make_config():  # noqa: ANN201
    """``make_config(**changes) -> TrainConfig``: tiny, random init, ``IMG`` px, 2 epochs, CPU."""
    from mritune.config import TrainConfig

    base = TrainConfig(
        arch="tiny", pretrained=False, img_size=IMG, epochs=2, bs=8, device="cpu",
        workers=THREADS, seed=0,
    )  # fmt: skip

    def make(**changes: object) -> TrainConfig:
        return base.replace(**changes)

    return make
