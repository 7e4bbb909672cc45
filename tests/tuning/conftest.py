"""Shared fixtures for the tuning tests. The fakes themselves (``fit``, dataset, search space,
worker entry points) live in ``_tuning_fakes``, which test modules and spawned workers import."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
# Make ``import _tuning_fakes`` work here and in spawned children (spawn passes sys.path on).
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _tuning_fakes  # noqa: E402
from _tuning_fakes import BASE, fake_space  # noqa: E402

from mritune.tuning import StudySpec  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Optuna warns that heartbeats and some samplers are experimental; mritune knows."""
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(
                pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
            )


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Image caches and torch home in a temporary folder; nothing is written to the repository."""
    root = tmp_path_factory.mktemp("tuning-env")
    (root / "torch-home").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MRITUNE_CACHE_DIR", str(root / "cache"))
        mp.setenv("TORCH_HOME", str(root / "torch-home"))
        yield


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., StudySpec]:
    """``make_spec(**changes) -> StudySpec``: the fake space, tpe-sh, 6 trials, in a journal file
    (faster than SQLite, whose every commit waits for the disk; tests of heartbeats use SQLite)."""

    def make(**changes: Any) -> StudySpec:
        values: dict[str, Any] = dict(
            data="fake-data", study="study", storage=f"journal:{tmp_path / 'study.log'}",
            technique="tpe-sh", n_trials=6, space=fake_space(), base=BASE, split="stratified",
            valid_pct=0.25, seed=0,
        )  # fmt: skip
        values.update(changes)
        return StudySpec(**values)

    return make


@pytest.fixture
def fake_prepared() -> _tuning_fakes.FakePrepared:
    return _tuning_fakes.FakePrepared()


@pytest.fixture
def postgres_url() -> str:
    """``$MRITUNE_TEST_POSTGRES_URL`` (``.ci/run`` starts a throwaway server and sets it)."""
    import os

    url = os.environ.get("MRITUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MRITUNE_TEST_POSTGRES_URL is not set (run .ci/run for a throwaway PostgreSQL)")
    return url


@pytest.fixture
def unique_study() -> str:
    """A study name no other test run uses (a PostgreSQL database outlives the test)."""
    return f"test-{uuid.uuid4().hex[:12]}"
