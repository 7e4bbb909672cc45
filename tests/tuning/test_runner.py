"""The study runner: resumption, outputs, a killed or interrupted worker, storage settings."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import optuna
import pytest
from _tuning_fakes import FakeFit, FakePrepared, run_study_worker, run_worker, spawn, wait_for
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
    write_outputs,
)
from mritune.tuning._storage import GRACE_PERIOD, HEARTBEAT_INTERVAL, heartbeat_settings

optuna.logging.set_verbosity(optuna.logging.ERROR)


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_resuming_adds_exactly_the_missing_trials(make_spec) -> None:  # noqa: ANN001
    fit = FakeFit()
    first = run_study(make_spec(technique="random", n_trials=3), fit_fn=fit, prepared=FakePrepared())
    values = {t.number: t.value for t in first.trials}
    assert fit.calls == 3

    study = run_study(make_spec(technique="random", n_trials=5), fit_fn=fit, prepared=FakePrepared())

    assert fit.calls == 5
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert {t.number: t.value for t in study.trials[:3]} == values
    run_study(make_spec(technique="random", n_trials=5), fit_fn=fit, prepared=FakePrepared())
    assert fit.calls == 5  # nothing left to do: nothing trained


def test_resuming_with_other_settings_is_refused(make_spec) -> None:  # noqa: ANN001
    run_study(make_spec(n_trials=1), fit_fn=FakeFit(), prepared=FakePrepared())

    with pytest.raises(TuningError, match=r"created with other settings \(technique, metric differ\)"):
        run_study(make_spec(n_trials=2, technique="random", metric="macro_f1"), fit_fn=FakeFit(),
                  prepared=FakePrepared())  # fmt: skip
    with pytest.raises(TuningError, match="was run on other data"):
        run_study(make_spec(n_trials=2), fit_fn=FakeFit(), prepared=FakePrepared(per_class=9))


def test_outputs_have_the_reference_columns_and_best_json(make_spec, tmp_path: Path) -> None:  # noqa: ANN001
    spec = make_spec(n_trials=8, technique="tpe-sh")
    prepared = FakePrepared()
    study = run_study(spec, fit_fn=FakeFit(diverge_calls=(3,)), prepared=prepared)

    paths = write_outputs(study, tmp_path / "out", spec.storage)

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


def test_no_completed_trial_writes_tables_but_no_best(make_spec, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(TuningError):
        run_study(make_spec(technique="random"), fit_fn=FakeFit(diverge_calls="all"),
                  prepared=FakePrepared())  # fmt: skip
    study = load_study("study", make_spec().storage)

    paths = write_outputs(study, tmp_path / "out", "x")

    assert "best" not in paths and not (tmp_path / "out" / "best.json").exists()
    assert paths["csv"].read_text().count("FAIL") == 3


def test_load_study_names_the_studies_there(make_spec) -> None:  # noqa: ANN001
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
    with pytest.raises(StorageError, match="MRITUNE_HEARTBEAT_GRACE is 'soon', but must be a whole"):
        heartbeat_settings()
    monkeypatch.setenv("MRITUNE_HEARTBEAT_GRACE", "1")
    with pytest.raises(StorageError, match="grace period is 1 s, but must be longer than the"):
        heartbeat_settings()


def _running_mid_trial(url: str, name: str, after_complete: int):  # noqa: ANN202
    """A check for :func:`wait_for`: the RUNNING trial once ``after_complete`` trials are done and
    the running one has reported at least one epoch."""

    def check():  # noqa: ANN202
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
def test_worker_killed_mid_trial_is_failed_and_the_study_completes(
    make_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    monkeypatch.setenv("MRITUNE_HEARTBEAT_INTERVAL", "1")  # children inherit these
    monkeypatch.setenv("MRITUNE_HEARTBEAT_GRACE", "2")
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    spec = make_spec(technique="random", n_trials=4, storage=url)
    child = spawn(run_worker, spec.to_json(), FakeFit(sleep=0.25))
    try:
        victim = wait_for(_running_mid_trial(url, "study", after_complete=1), what="a trial")
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
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    for number, value in before.items():
        assert by_number[number].state == TrialState.COMPLETE
        assert by_number[number].value == value
    assert fit.calls == 4 - len(before)


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_sigterm_fails_the_running_trial_and_the_same_command_resumes(
    storage: str, make_spec, tmp_path: Path  # noqa: ANN001
) -> None:
    url = f"sqlite:///{tmp_path / 'term.db'}" if storage == "sqlite" else f"journal:{tmp_path}/t.log"
    spec = make_spec(technique="tpe-sh", n_trials=4, storage=url)
    child = spawn(run_study_worker, spec.to_json(), FakeFit(sleep=0.25))
    try:
        victim = wait_for(_running_mid_trial(url, "study", after_complete=1), what="a trial")
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
