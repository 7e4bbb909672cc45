"""Fakes for the tuning tests: a ``fit`` that draws learning curves, a small prepared dataset, and
worker entry points for child processes.

This module is imported by its plain name (``import _tuning_fakes``): ``conftest.py`` puts this
folder on ``sys.path``, and ``multiprocessing``'s spawn start method hands ``sys.path`` to its
children, so a spawned worker can unpickle a :class:`FakeFit` and call :func:`run_worker`.
Nothing here imports torch or fastai, so a child starts in a second or two.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mritune.config import TrainConfig
from mritune.tuning import Param, SearchSpace, StudySpec

#: The ``make_spec`` fixture: ``make_spec(**changes) -> StudySpec``.
MakeSpec = Callable[..., StudySpec]

#: Final accuracy of each fake architecture after many epochs (before the weight-decay penalty).
CEILING = {"good": 0.92, "fair": 0.8, "poor": 0.55, "tiny": 0.8, "resnet18": 0.88}
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def curve(config: Any, epoch: int, fold: int = 0) -> float:
    """Validation accuracy after ``epoch`` (0-based) for ``config``: rises with epochs towards a
    ceiling set by the architecture, lowered when the weight decay is far from 1e-4."""
    ceiling = CEILING.get(config.arch, 0.7)
    penalty = 0.05 * abs(math.log10(max(config.wd, 1e-12)) + 4.0)
    rise = 1.0 - 0.6 ** (epoch + 1)
    return float(np.clip((ceiling - penalty) * rise + 0.01 * fold - 0.02 * config.drop, 0.0, 1.0))


@dataclasses.dataclass
class FakeResult:
    history: list[dict[str, Any]]
    epochs_trained: int
    device: str = "cpu"
    stopped: bool = False


@dataclasses.dataclass
class FakeFit:
    """``fit(cache, train_idx, valid_idx, config, on_epoch)`` without training anything.

    Args:
        sleep: seconds per epoch (so that a test can interrupt a running trial).
        diverge_calls: 1-based call numbers that raise :class:`~mritune.errors.TrainingDiverged`
            in their first epoch; ``"all"`` makes every call diverge.
        log: a file that gets one line per call (``pid arch``), to count calls across processes.
    """

    sleep: float = 0.0
    diverge_calls: tuple[int, ...] | str = ()
    log: str | None = None
    calls: int = 0

    def __call__(
        self, cache: Any, train_idx: Any, valid_idx: Any, config: Any, on_epoch: Any
    ) -> FakeResult:
        from mritune.errors import TrainingDiverged

        self.calls += 1
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(f"{os.getpid()} {config.arch}\n")
        fold = int(valid_idx[0]) % 3 if len(valid_idx) else 0
        history: list[dict[str, Any]] = []
        for epoch in range(config.total_epochs):
            if self.sleep:
                time.sleep(self.sleep)
            if epoch == 0 and (self.diverge_calls == "all" or self.calls in self.diverge_calls):
                raise TrainingDiverged(f"training loss became nan in epoch {epoch}; try a lower lr")
            v = curve(config, epoch, fold)
            m = {"epoch": epoch, "train_loss": 1.0 - v, "valid_loss": 1.1 - v, "accuracy": v,
                 "balanced_accuracy": v - 0.01, "macro_f1": v - 0.02}  # fmt: skip
            history.append(m)
            if on_epoch is not None and on_epoch(epoch, m) is False:
                return FakeResult(history, len(history), stopped=True)
        return FakeResult(history, len(history))


def log_lines(path: str | Path) -> list[str]:
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []


class FakeManifest:
    """What the tuning layer reads of a :class:`~mritune.data.Manifest`: 4 classes, all train."""

    def __init__(self, per_class: int = 8) -> None:
        self.classes = list(CLASSES)
        self.labels = np.repeat(np.arange(len(CLASSES)), per_class).astype(np.int64)
        self.splits = np.array(["train"] * len(self.labels))
        self.paths = [f"/fake/{CLASSES[y]}/{i}.jpg" for i, y in enumerate(self.labels)]

    def indices(self, split: str, *, augmented: bool | None = None) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def has_split(self, split: str) -> bool:
        return bool(np.any(self.splits == split))

    def file_stats(self) -> list[tuple[str, int, int]]:
        return [(p, 1000 + i, 0) for i, p in enumerate(self.paths)]


class FakeCache:
    def usable(self, idx: Any) -> np.ndarray:
        return np.asarray(idx, dtype=np.int64)


class FakePrepared:
    """Stands in for :class:`mritune.engine.Prepared`: manifest, cache and duplicate groups."""

    def __init__(self, per_class: int = 8) -> None:
        self.manifest = FakeManifest(per_class)
        self.cache = FakeCache()
        self.groups = np.arange(len(self.manifest.labels))


def run_worker(spec_json: str, fit: FakeFit, poll: float = 0.1) -> None:
    """A worker process: ``work(spec)`` with the fake fit and data (a spawn target)."""
    import warnings

    from mritune.tuning import StudySpec, work

    warnings.filterwarnings("ignore")
    work(StudySpec.from_json(spec_json), fit_fn=fit, prepared=FakePrepared(), poll=poll)


def run_study_worker(spec_json: str, fit: FakeFit) -> None:
    """``run_study(spec)`` in one process, as ``mritune tune`` does (a spawn target)."""
    import warnings

    from mritune.tuning import StudySpec, run_study

    warnings.filterwarnings("ignore")
    run_study(StudySpec.from_json(spec_json), fit_fn=fit, prepared=FakePrepared())


def fake_space(*, discrete: bool = False) -> SearchSpace:
    """arch {good, fair, poor}, wd, epochs 3-6, drop; or a discrete space of 4 points for grid."""
    if discrete:
        return SearchSpace((
            Param("arch", "categorical", choices=("good", "poor")),
            Param("wd", "categorical", choices=(1e-4, 1e-2)),
            Param("epochs", "int", low=3, high=3),
        ))  # fmt: skip
    return SearchSpace((
        Param("arch", "categorical", choices=("good", "fair", "poor")),
        Param("wd", "log-float", low=1e-6, high=1e-2),
        Param("epochs", "int", low=3, high=6),
        Param("drop", "float", low=0.1, high=0.4),
    ))  # fmt: skip


#: Fixed settings of the fake studies: random init (no frozen epoch), so total_epochs == epochs.
BASE = TrainConfig(
    arch="good", pretrained=False, img_size=32, epochs=3, bs=8, device="cpu", workers=1, seed=0
)


def spawn(target: Callable[..., None], *args: Any) -> multiprocessing.process.BaseProcess:
    """Start ``target(*args)`` in a fresh (spawned) Python process."""
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def wait_for(
    check: Callable[[], Any],
    *,
    what: str,
    timeout: float = 60.0,
    procs: list[multiprocessing.process.BaseProcess] = (),  # type: ignore[assignment]
) -> Any:
    """Call ``check`` until it returns something truthy; fail the test after ``timeout`` s, or
    as soon as one of ``procs`` has exited."""
    import pytest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        dead = [p.exitcode for p in procs if not p.is_alive()]
        if dead:
            pytest.fail(f"a worker exited (code {dead[0]}) before {what}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
