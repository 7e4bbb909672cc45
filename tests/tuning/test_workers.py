"""Several worker processes on one study: a journal file always, PostgreSQL when there is one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import pytest
from _tuning_fakes import FakeFit, FakePrepared, MakeSpec, log_lines, run_worker, spawn
from optuna.trial import TrialState

from mritune.errors import StorageError
from mritune.tuning import StudySpec, load_study, open_storage, run_study

optuna.logging.set_verbosity(optuna.logging.ERROR)

WORKERS = 3
TRIALS = 7


def run_workers(spec: StudySpec, log: Path) -> optuna.Study:
    """``WORKERS`` spawned processes run ``work(spec)`` with a fake fit until they all return."""
    procs = [spawn(run_worker, spec.to_json(), FakeFit(sleep=0.05, log=str(log)))
             for _ in range(WORKERS)]  # fmt: skip
    try:
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * WORKERS
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    return load_study(spec.study, spec.storage)


def check_shared_study(study: optuna.Study, log: Path) -> None:
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == TRIALS
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED))
    for t in study.get_trials(states=(TrialState.FAIL,)):  # only trials refused past the budget
        assert "epochs_trained" not in t.user_attrs
    calls = log_lines(log)
    assert len(calls) == TRIALS  # every fit finished a trial; none was wasted
    print("fits per worker process:", Counter(line.split()[0] for line in calls))


@pytest.mark.slow
def test_workers_share_a_journal_file(make_spec: MakeSpec, tmp_path: Path) -> None:
    spec = make_spec(technique="random", n_trials=TRIALS, storage=f"journal:{tmp_path / 'j.log'}")

    study = run_workers(spec, tmp_path / "calls.txt")

    check_shared_study(study, tmp_path / "calls.txt")


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_share_a_postgresql_study(
    make_spec: MakeSpec,
    tmp_path: Path,
    postgres_url: str,
    unique_study: str,
) -> None:
    spec = make_spec(technique="random", n_trials=TRIALS, storage=postgres_url, study=unique_study)
    try:
        study = run_workers(spec, tmp_path / "calls.txt")

        check_shared_study(study, tmp_path / "calls.txt")
    finally:
        optuna.delete_study(study_name=unique_study,
                            storage=open_storage(postgres_url, heartbeat=False))  # fmt: skip


def test_several_workers_refuse_sqlite_before_training(make_spec: MakeSpec, tmp_path: Path) -> None:
    spec = make_spec(storage=f"sqlite:///{tmp_path / 's.db'}")
    fit = FakeFit()

    with pytest.raises(StorageError, match=r"2 worker processes cannot share the SQLite file .*; use "
                                           r"--storage journal:runs/study\.log"):  # fmt: skip
        run_study(spec, workers=2, fit_fn=fit, prepared=FakePrepared())
    assert fit.calls == 0
