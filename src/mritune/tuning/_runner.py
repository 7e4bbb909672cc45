"""Running a study: create or resume it in the storage, run trials until N are finished, with
one or several worker processes (and any number of processes on other machines)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import get_context
from typing import Any

import numpy as np
import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from mritune.config import TrainConfig
from mritune.errors import ConfigError, StorageError, TuningError
from mritune.tuning._objective import METRICS, BudgetReached, Objective
from mritune.tuning._space import SearchSpace, quick_space, reference_space
from mritune.tuning._storage import (
    fail_silent_trials,
    heartbeat_settings,
    is_multiprocess_safe,
    normalize_url,
    open_storage,
    storage_kind,
    trial_heartbeat,
)
from mritune.tuning._techniques import PrunerSettings, get_technique

__all__ = ["StudySpec", "run_study", "load_study", "finished_count", "make_splits", "preset"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """Everything that defines a study; stored on the study so that every worker (and a resumed
    run) uses the same settings."""

    data: str
    study: str
    storage: str
    technique: str
    n_trials: int
    space: SearchSpace
    base: TrainConfig
    metric: str = "accuracy"
    cv: int = 0
    split: str = "stratified"  # or "reference"
    valid_pct: float = 0.2
    seed: int = 0
    pruner: PrunerSettings = dataclasses.field(default_factory=PrunerSettings)
    timeout: float | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        get_technique(self.technique)
        if self.n_trials < 1:
            raise ConfigError(f"trials is {self.n_trials}, but must be >= 1")
        if self.metric not in METRICS:
            raise ConfigError(
                f"metric '{self.metric}' is unknown; choose one of {', '.join(METRICS)}"
            )
        if self.cv == 1 or self.cv < 0:
            raise ConfigError(f"cv is {self.cv}, but must be 0 (holdout) or >= 2 folds")
        if self.split not in ("stratified", "reference"):
            raise ConfigError(f"split '{self.split}' is unknown; choose stratified or reference")

    def identity(self) -> dict[str, Any]:
        """What must match for a resumed run to continue the same study."""
        return {
            "technique": self.technique,
            "space": self.space.to_dict(),
            "metric": self.metric,
            "cv": self.cv,
            "split": self.split,
            "valid_pct": self.valid_pct,
            "seed": self.seed,  # the holdout / folds depend on it
            "pruner": dataclasses.asdict(self.pruner),
            "base": {
                k: v for k, v in self.base.to_dict().items() if k not in ("device", "workers")
            },
        }

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["space"] = self.space.to_dict()
        return json.dumps(d, default=str)

    @staticmethod
    def from_json(text: str) -> StudySpec:
        from mritune.tuning._space import Param

        d = json.loads(text)
        params = []
        for name, p in d["space"].items():
            kind = p["type"]
            params.append(Param(name, kind, choices=tuple(p.get("choices", ())), low=p.get("low"),
                                high=p.get("high"), step=p.get("step")))  # fmt: skip
        d["space"] = SearchSpace(tuple(params))
        d["base"] = TrainConfig(**d["base"])
        d["pruner"] = PrunerSettings(**d["pruner"])
        return StudySpec(**d)


def preset(name: str, technique: str) -> tuple[SearchSpace, TrainConfig, dict[str, Any]]:
    """(space, base config, other settings) of a preset: ``reference`` or ``quick``."""
    if name == "reference":
        space = reference_space(discrete_drop=technique == "random")
        base = TrainConfig(arch="resnet18", pretrained=True, img_size=224, lr=1e-3, seed=42)
        return space, base, {"n_trials": 10, "split": "reference", "valid_pct": 0.2}
    if name == "quick":
        base = TrainConfig(arch="tiny", pretrained=False, img_size=64, lr=3e-3, seed=0)
        return quick_space(), base, {"n_trials": 6, "split": "stratified", "valid_pct": 0.25}
    raise ConfigError(f"preset '{name}' is unknown; choose reference or quick")


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def load_study(name: str, storage: str) -> optuna.Study:
    """Open an existing study; an unknown name lists the studies in the storage."""
    st = open_storage(normalize_url(storage), heartbeat=False)
    try:
        return optuna.load_study(study_name=name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st)]
        raise StorageError(
            f"no study '{name}' in {normalize_url(storage)}; studies there: "
            f"{', '.join(names) or 'none'}"
        ) from None


def make_splits(prepared: Any, spec: StudySpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """The holdout (or K folds) the study tunes on, as manifest index arrays. Validation sides hold
    original images only (augmented variants train, never score)."""
    from mritune.data import originals

    return [(tr, originals(prepared.manifest, va)) for tr, va in _splits(prepared, spec)]


def _splits(prepared: Any, spec: StudySpec) -> list[tuple[np.ndarray, np.ndarray]]:
    from mritune.data import holdout, kfold

    m = prepared.manifest
    pool = prepared.cache.usable(m.indices("train"))
    if len(pool) == 0:
        raise TuningError(f"{spec.data}: no training images to tune on")
    if spec.cv:
        return kfold(pool, m.labels, n_splits=spec.cv, seed=spec.seed, groups=prepared.groups)
    if spec.split == "reference":
        from mritune.engine import reference_split  # imports fastai: only when needed

        return [reference_split(prepared, spec.valid_pct, seed=42)]
    if m.has_split("valid"):
        return [(pool, prepared.cache.usable(m.indices("valid")))]
    return [
        holdout(pool, m.labels, valid_pct=spec.valid_pct, seed=spec.seed, groups=prepared.groups)
    ]


def _open_study(spec: StudySpec, seed_offset: int, *, data_fp: str | None) -> optuna.Study:
    # Failed trials are recorded with their reason and shown in the tables; Optuna's own
    # per-failure tracebacks on stderr would only bury the progress display.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = normalize_url(spec.storage)
    storage = open_storage(url)
    tech = get_technique(spec.technique)
    sampler, pruner = tech.create(spec.space, spec.seed + seed_offset, spec.pruner,
                                  spec.space.max_epochs(spec.base) * max(1, spec.cv))  # fmt: skip
    study = optuna.create_study(
        study_name=spec.study, storage=storage, sampler=sampler, pruner=pruner,
        direction="maximize", load_if_exists=True,
    )  # fmt: skip
    attrs = study.user_attrs
    if "mritune_spec" in attrs:
        old = StudySpec.from_json(attrs["mritune_spec"])
        if old.identity() != spec.identity():
            diff = [k for k in spec.identity() if old.identity()[k] != spec.identity()[k]]
            raise TuningError(
                f"study '{spec.study}' in {url} was created with other settings "
                f"(differs: {', '.join(diff)}); resume it with the same options or pick a new --study"
            )
        if data_fp and attrs.get("data_fingerprint") not in (None, data_fp):
            raise TuningError(
                f"study '{spec.study}' was run on other data (fingerprint "
                f"{attrs.get('data_fingerprint')}, now {data_fp}); pick a new --study"
            )
        if data_fp and "data_fingerprint" not in attrs:  # created by a process without the data
            study.set_user_attr("data_fingerprint", data_fp)
    else:
        study.set_user_attr("mritune_spec", spec.to_json())
        if data_fp:
            study.set_user_attr("data_fingerprint", data_fp)
        study.set_user_attr("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
    return study


def _install_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)


def work(
    spec: StudySpec,
    *,
    fit_fn: Callable[..., Any] | None = None,
    prepared: Any = None,
    worker: int = 0,
    device: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    poll: float = 1.0,
    splits: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> optuna.Study:
    """One worker's loop: run trials until ``spec.n_trials`` are finished (COMPLETE or PRUNED).

    Safe to run in any number of processes at once on a shared storage. Trials that other workers
    are running count towards the budget; a trial of a dead worker is failed after the heartbeat
    grace period and re-queued with the same parameters (Optuna's heartbeats on RDB storages, a
    heartbeat user attribute on journal files).
    """
    _install_sigterm()
    if prepared is None or fit_fn is None:
        from mritune.engine import fit, prepare

        fit_fn = fit_fn or fit
        prepared = prepared or prepare(spec.data, spec.base.img_size, cache_dir=spec.cache_dir)
    from mritune.data import data_fingerprint

    fp = data_fingerprint(prepared.manifest) if hasattr(prepared, "manifest") else None
    study = _open_study(spec, worker, data_fp=fp)
    base = spec.base if device is None else spec.base.replace(device=device)
    splits = splits if splits is not None else make_splits(prepared, spec)
    objective = Objective(fit_fn, prepared.cache, splits, base, spec.space,
                          spec.metric, n_trials=spec.n_trials, on_event=on_event)  # fmt: skip
    deadline = time.monotonic() + spec.timeout if spec.timeout else None
    # Journal files have no heartbeats of Optuna's: trials beat through a user attribute instead.
    own_heartbeat = storage_kind(normalize_url(spec.storage)) == "journal"
    run: Callable[[optuna.Trial], float] = objective
    if own_heartbeat:
        interval = heartbeat_settings()[0]

        def run(trial: optuna.Trial) -> float:
            with trial_heartbeat(trial, interval):
                return objective(trial)

    def report_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_event:
            on_event({"kind": "end", "number": trial.number, "state": trial.state.name,
                      "value": trial.value, "finished": finished_count(study)})  # fmt: skip

    while deadline is None or time.monotonic() < deadline:
        fail_stale_trials(study)  # RDB storages: Optuna's heartbeats
        if own_heartbeat:
            fail_silent_trials(study)
        done = finished_count(study)
        if done >= spec.n_trials:
            break
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if done + running >= spec.n_trials:
            time.sleep(poll)  # the rest is running elsewhere; take over if a worker dies
            continue
        study.optimize(run, n_trials=1, catch=(Exception,), callbacks=[report_end],
                       gc_after_trial=True)  # fmt: skip
        _raise_if_hopeless(study)
    return study


def _raise_if_hopeless(study: optuna.Study, window: int = 3) -> None:
    """Stop when the last ``window`` trials all failed for the same non-budget reason."""
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state != TrialState.RUNNING and t.state != TrialState.WAITING]  # fmt: skip
    last = trials[-window:]
    if len(last) < window or any(t.state != TrialState.FAIL for t in last):
        return
    reasons = {t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason") for t in last}
    reasons.discard(None)
    budget = BudgetReached.__name__
    if len(reasons) == 1 and not any(budget in str(r) or "not run:" in str(r) for r in reasons):
        raise TuningError(
            f"the last {window} trials all failed with: {reasons.pop()}; fix that and run the same "
            f"command again to resume"
        )


def _worker_entry(spec_json: str, worker: int, device: str | None) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    spec = StudySpec.from_json(spec_json)
    work(spec, worker=worker, device=device)


def run_study(
    spec: StudySpec,
    *,
    workers: int = 1,
    fit_fn: Callable[..., Any] | None = None,
    prepared: Any = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_poll: Callable[[optuna.Study], None] | None = None,
) -> optuna.Study:
    """Run ``spec`` with ``workers`` processes on this machine; returns the study.

    ``workers > 1`` needs a storage that several processes can share (PostgreSQL, a journal
    file); SQLite is refused with a clear message rather than failing with "database is locked".
    With CUDA, worker ``i`` trains on GPU ``i % n_gpus``.
    """
    url = normalize_url(spec.storage)
    if workers < 1:
        raise ConfigError(f"workers is {workers}, but must be >= 1")
    if workers == 1:
        return work(spec, fit_fn=fit_fn, prepared=prepared, on_event=on_event)
    if not is_multiprocess_safe(url):
        raise StorageError(
            f"{workers} worker processes cannot share the SQLite file {url} safely; use "
            f"--storage journal:runs/{spec.study}.log (one machine or a shared file system) or "
            f"--storage postgresql://USER@HOST/DB (many machines), or --workers 1"
        )
    if prepared is None:  # build caches once, before the workers start
        from mritune.engine import prepare

        prepared = prepare(spec.data, spec.base.img_size, cache_dir=spec.cache_dir)
    from mritune.data import data_fingerprint

    fp = data_fingerprint(prepared.manifest) if hasattr(prepared, "manifest") else None
    devices = _worker_devices(spec.base.device, workers)
    _open_study(spec, 0, data_fp=fp)  # create it once, so workers don't race to create it
    ctx = get_context("spawn")
    procs = [ctx.Process(target=_worker_entry, args=(spec.to_json(), i, devices[i]), daemon=False)
             for i in range(workers)]  # fmt: skip
    for p in procs:
        p.start()
    study = load_study(spec.study, url)
    try:
        while any(p.is_alive() for p in procs):
            if on_poll:
                on_poll(study)
            time.sleep(1.0)
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(30)
        raise
    for p in procs:
        p.join()
    if on_poll:
        on_poll(study)
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad and finished_count(study) < spec.n_trials:
        raise TuningError(
            f"{len(bad)} worker(s) exited with errors; run the same command to resume"
        )
    return study


def _worker_devices(device: str, workers: int) -> list[str | None]:
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        n = torch.cuda.device_count()
        return [f"cuda:{i % n}" for i in range(workers)]
    return [None] * workers
