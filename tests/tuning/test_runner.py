"""The study runner: resumption, outputs, a killed or interrupted worker, storage settings."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from _tuning_fakes import (
    FakeFit,
    FakePrepared,
    MakeSpec,
    run_study_worker,
    run_worker,
    spawn,
    wait_for,
)
from optuna.trial import TrialState

from mritune.data import data_fingerprint
from mritune.errors import StorageError, TuningError
from mritune.tuning import (
    TRIAL_COLUMNS,
    finished_count,
    load_study,
    normalize_url,
    open_storage,
    run_study,
    work,
    write_trials,
)
from mritune.tuning._storage import (
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    fail_silent_trials,
    heartbeat_settings,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_resuming_adds_exactly_the_missing_trials(make_spec: MakeSpec) -> None:
    fit = FakeFit()
    first = run_study(
        make_spec(technique="random", n_trials=3), fit_fn=fit, prepared=FakePrepared()
    )
    values = {t.number: t.value for t in first.trials}
    assert fit.calls == 3

    study = run_study(
        make_spec(technique="random", n_trials=5), fit_fn=fit, prepared=FakePrepared()
    )

    assert fit.calls == 5
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert {t.number: t.value for t in study.trials[:3]} == values
    run_study(make_spec(technique="random", n_trials=5), fit_fn=fit, prepared=FakePrepared())
    assert fit.calls == 5  # nothing left to do: nothing trained


def test_resuming_with_other_settings_is_refused(make_spec: MakeSpec) -> None:
    run_study(make_spec(n_trials=1), fit_fn=FakeFit(), prepared=FakePrepared())

    with pytest.raises(
        TuningError, match=r"created with other settings \(differs: technique, metric\)"
    ):
        run_study(make_spec(n_trials=2, technique="random", metric="macro_f1"), fit_fn=FakeFit(),
                  prepared=FakePrepared())  # fmt: skip
    with pytest.raises(TuningError, match="was run on other data"):
        run_study(make_spec(n_trials=2), fit_fn=FakeFit(), prepared=FakePrepared(per_class=9))


def test_outputs_have_the_reference_columns_and_best_json(
    make_spec: MakeSpec, tmp_path: Path
) -> None:
    spec = make_spec(n_trials=8, technique="tpe-sh")
    prepared = FakePrepared()
    study = run_study(spec, fit_fn=FakeFit(diverge_calls=(3,)), prepared=prepared)

    paths = write_trials(study, tmp_path / "out", spec.storage)

    assert TRIAL_COLUMNS == ["Trial", "Best Score", "Architecture", "Weight Decay", "Epochs",
                             "Batch Size", "Drop", "State", "Epochs Trained", "Duration"]  # fmt: skip
    with open(paths["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[: len(TRIAL_COLUMNS)] == TRIAL_COLUMNS
    assert [int(r["Trial"]) for r in rows] == [t.number for t in study.trials]
    assert {r["State"] for r in rows} == {"COMPLETE", "PRUNED", "FAIL"}
    failed = next(r for r in rows if r["State"] == "FAIL")
    assert "training loss became nan" in failed["Fail Reason"]
    for r, t in zip(rows, study.trials):
        assert r["Architecture"] == t.params["arch"]
        assert int(r["Epochs"]) == t.params["epochs"]
        assert int(r["Epochs Trained"]) == t.user_attrs["epochs_trained"]
        assert float(r["Duration"]) >= 0
    md = paths["md"].read_text().splitlines()
    assert "| " + " | ".join(TRIAL_COLUMNS) + " |" in md
    best = json.loads(paths["best"].read_text())
    assert best["trial"] == study.best_trial.number
    assert best["value"] == study.best_value
    assert best["params"] == study.best_trial.params
    assert best["study"] == "study" and best["storage"] == spec.storage
    assert best["technique"] == "tpe-sh" and best["metric"] == "accuracy"
    assert best["data_fingerprint"] == data_fingerprint(prepared.manifest)
    assert best["trials"]["COMPLETE"] + best["trials"]["PRUNED"] == 8
    bold = next(line for line in md if line.startswith("| **"))
    assert bold.startswith(f"| **{study.best_trial.number}** |")


def test_a_worker_records_the_data_fingerprint_of_a_study_created_without_it(
    make_spec: MakeSpec,
) -> None:
    spec = make_spec(n_trials=1)  # as ``run_study`` with several workers used to leave it:
    created = optuna.create_study(study_name="study", storage=open_storage(spec.storage),
                                  direction="maximize")  # fmt: skip
    created.set_user_attr("mritune_spec", spec.to_json())
    prepared = FakePrepared()

    study = work(spec, fit_fn=FakeFit(), prepared=prepared)

    assert study.user_attrs["data_fingerprint"] == data_fingerprint(prepared.manifest)


def test_no_completed_trial_writes_tables_but_no_best(make_spec: MakeSpec, tmp_path: Path) -> None:
    with pytest.raises(TuningError):
        run_study(make_spec(technique="random"), fit_fn=FakeFit(diverge_calls="all"),
                  prepared=FakePrepared())  # fmt: skip
    study = load_study("study", make_spec().storage)

    paths = write_trials(study, tmp_path / "out", "x")

    assert "best" not in paths and not (tmp_path / "out" / "best.json").exists()
    assert paths["csv"].read_text().count("FAIL") == 3


def test_load_study_names_the_studies_there(make_spec: MakeSpec) -> None:
    spec = make_spec(n_trials=1)
    run_study(spec, fit_fn=FakeFit(), prepared=FakePrepared())

    with pytest.raises(StorageError, match="no study 'nope' in journal:.*; studies there: study"):
        load_study("nope", spec.storage)


def test_storage_urls_and_bad_storages() -> None:
    assert normalize_url(None) == "sqlite:///runs/mritune.db"
    assert normalize_url("runs/x.db") == "sqlite:///runs/x.db"
    assert normalize_url("runs/x.log") == "journal:runs/x.log"
    assert normalize_url("postgresql://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(StorageError, match="storage 'runs/x' is not a URL; use sqlite:///"):
        normalize_url("runs/x")
    with pytest.raises(StorageError, match="cannot open storage postgresql://nobody@127.0.0.1:1/x"):
        open_storage("postgresql://nobody@127.0.0.1:1/x")


def test_heartbeat_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MRITUNE_HEARTBEAT_INTERVAL", raising=False)
    monkeypatch.delenv("MRITUNE_HEARTBEAT_GRACE", raising=False)
    assert heartbeat_settings() == (HEARTBEAT_INTERVAL, GRACE_PERIOD) == (10, 30)

    monkeypatch.setenv("MRITUNE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("MRITUNE_HEARTBEAT_GRACE", "3")
    assert heartbeat_settings() == (1, 3)

    monkeypatch.setenv("MRITUNE_HEARTBEAT_GRACE", "soon")
    with pytest.raises(
        StorageError, match="MRITUNE_HEARTBEAT_GRACE is 'soon', but must be a whole"
    ):
        heartbeat_settings()
    monkeypatch.setenv("MRITUNE_HEARTBEAT_GRACE", "1")
    with pytest.raises(StorageError, match="grace period is 1 s, but must be longer than the"):
        heartbeat_settings()


def _running_mid_trial(url: str, name: str, after_complete: int) -> Callable[[], Any]:
    """A check for :func:`wait_for`: the RUNNING trial once ``after_complete`` trials are done and
    the running one has reported at least one epoch."""

    def check() -> optuna.trial.FrozenTrial | None:
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False))
        except (KeyError, StorageError):
            return None
        trials = study.get_trials()
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        return running[0] if len(done) >= after_complete and running else None

    return check


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_worker_killed_mid_trial_is_failed_and_the_study_completes(
    kind: str,
    make_spec: MakeSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MRITUNE_HEARTBEAT_INTERVAL", "1")  # children inherit these
    monkeypatch.setenv("MRITUNE_HEARTBEAT_GRACE", "2")
    url = f"sqlite:///{tmp_path / 'k.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'k.log'}"
    # timeout: a resumed run that waits for the dead worker forever fails instead of hanging
    spec = make_spec(technique="random", n_trials=3, storage=url, timeout=40)
    child = spawn(run_worker, spec.to_json(), FakeFit(sleep=0.15))
    try:
        victim = wait_for(_running_mid_trial(url, "study", after_complete=1),
                          what="a trial to run", procs=[child])  # fmt: skip
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
    before = {t.number: t.value for t in load_study("study", url).get_trials(
        states=(TrialState.COMPLETE,))}  # fmt: skip
    fit = FakeFit()

    study = work(spec, fit_fn=fit, prepared=FakePrepared(), poll=0.2)

    by_number = {t.number: t for t in study.trials}
    assert by_number[victim.number].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert retries[0].state == TrialState.COMPLETE
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    for number, value in before.items():
        assert by_number[number].state == TrialState.COMPLETE
        assert by_number[number].value == value
    assert fit.calls == 3 - len(before)


@pytest.mark.slow
def test_sigterm_fails_the_running_trial_and_the_same_command_resumes(
    make_spec: MakeSpec,
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'term.db'}"
    spec = make_spec(technique="random", n_trials=4, storage=url)
    child = spawn(run_study_worker, spec.to_json(), FakeFit(sleep=0.25))
    try:
        victim = wait_for(_running_mid_trial(url, "study", after_complete=1),
                          what="a trial to run", procs=[child])  # fmt: skip
        os.kill(child.pid, signal.SIGTERM)
        child.join(20)
        assert child.exitcode not in (0, None)  # interrupted, not finished
    finally:
        if child.is_alive():
            child.kill()
    study = load_study("study", url)
    assert study.trials[victim.number].state in (TrialState.FAIL, TrialState.PRUNED)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    before = {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}

    study = run_study(spec, fit_fn=FakeFit(), prepared=FakePrepared())

    assert finished_count(study) == 4
    assert not study.get_trials(states=(TrialState.RUNNING,))
    for number, value in before.items():
        assert study.trials[number].value == value


@pytest.mark.slow
def test_a_live_trial_on_a_journal_file_is_never_taken_for_dead(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MRITUNE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("MRITUNE_HEARTBEAT_GRACE", "2")
    spec = make_spec(technique="random", n_trials=1)  # a journal file; 3-6 epochs of 0.8 s
    worker = threading.Thread(target=work, args=(spec,), daemon=True,
                              kwargs={"fit_fn": FakeFit(sleep=0.8), "prepared": FakePrepared()})  # fmt: skip
    worker.start()
    wait_for(_running_mid_trial(spec.storage, "study", after_complete=0), what="the trial to run")
    watched = 0.0
    while worker.is_alive():
        assert fail_silent_trials(load_study("study", spec.storage)) == []
        time.sleep(0.25)
        watched += 0.25
    study = load_study("study", spec.storage)
    assert watched > 2  # longer than the grace period
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
