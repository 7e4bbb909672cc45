"""``mritune tune`` and ``mritune techniques``: real training once, a fake ``fit`` otherwise."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from _tuning_fakes import FakeFit, FakePrepared
from optuna.trial import TrialState

from mritune.tuning import list_techniques, load_study

optuna.logging.set_verbosity(optuna.logging.ERROR)

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run_cli(*argv) -> (exit code, stdout, stderr)`` of ``mritune ARGV...`` in this process."""
    from mritune.cli.main import main

    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> FakeFit:
    """``mritune.engine.fit`` and ``prepare`` replaced by fakes; returns the fake fit."""
    import mritune.engine

    fit = FakeFit()
    monkeypatch.setattr(mritune.engine, "fit", fit)
    monkeypatch.setattr(mritune.engine, "prepare", lambda *a, **k: FakePrepared())
    return fit


def tune_args(tmp_path: Path, *extra: object, data: object = "fake-data") -> list[object]:
    return ["tune", data, "--preset", "quick", "--study", "cli", "--device", "cpu",
            "--threads", "1", "--storage", f"sqlite:///{tmp_path / 'cli.db'}",
            "--out", tmp_path / "out", *extra]  # fmt: skip


def test_second_identical_command_trains_nothing(
    run_cli: Run, fake_engine: FakeFit, tmp_path: Path
) -> None:
    rc, out, _ = run_cli(*tune_args(tmp_path, "--trials", "3", "--technique", "random"))
    assert rc == 0, out
    assert fake_engine.calls == 3
    assert "best: trial" in out

    rc, out, _ = run_cli(*tune_args(tmp_path, "--trials", "3", "--technique", "random"))
    assert rc == 0
    assert fake_engine.calls == 3  # nothing trained
    assert "best: trial" in out

    rc, _, _ = run_cli(*tune_args(tmp_path, "--trials", "5", "--technique", "random"))
    assert rc == 0
    assert fake_engine.calls == 5  # exactly the 2 missing trials
    with open(tmp_path / "out" / "trials.csv", newline="") as fh:
        assert [r["Trial"] for r in csv.DictReader(fh)] == ["0", "1", "2", "3", "4"]


def test_two_workers_on_sqlite_are_refused_in_one_line(
    run_cli: Run, fake_engine: FakeFit, tmp_path: Path
) -> None:
    rc, _, err = run_cli(*tune_args(tmp_path, "--trials", "2", "--workers", "2"))

    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("mritune tune: error: 2 worker processes cannot share the SQLite")
    assert "--storage journal:" in lines[-1] and "--storage postgresql://" in lines[-1]
    assert "database is locked" not in err and "Traceback" not in err
    assert fake_engine.calls == 0


def test_unknown_technique_and_bad_space_are_one_line_errors(
    run_cli: Run, fake_engine: FakeFit, tmp_path: Path
) -> None:
    rc, _, err = run_cli(*tune_args(tmp_path, "--technique", "tpe-sha"))
    assert rc == 2
    known = ", ".join(t.name for t in list_techniques())
    assert err.strip() == f"mritune tune: error: unknown technique 'tpe-sha'; known: {known}"

    space = tmp_path / "space.toml"
    space.write_text('[drop]\ntype = "float"\nlow = 0.4\nhigh = 0.2\n')
    rc, _, err = run_cli(*tune_args(tmp_path, "--space", space))
    assert rc == 2
    assert err.strip() == (
        f"mritune tune: error: {space}: [drop]: empty range: low = 0.4 must be below high = 0.2"
    )
    assert fake_engine.calls == 0


def test_techniques_command_lists_every_technique(run_cli: Run) -> None:
    rc, out, _ = run_cli("techniques")
    assert rc == 0
    for t in list_techniques():
        assert t.name in out


@pytest.mark.slow
def test_tune_trains_for_real_on_a_tiny_dataset(
    run_cli: Run, make_demo: Callable[..., Path], tmp_path: Path
) -> None:
    from mritune.data import data_fingerprint, inspect

    data = make_demo(train_per_class=8, test_per_class=2, size=48)
    args = ["tune", data, "--preset", "quick", "--technique", "tpe-sh", "--trials", "2",
            "--img-size", "32", "--device", "cpu", "--threads", "1", "--study", "real",
            "--storage", f"sqlite:///{tmp_path / 'real.db'}", "--out", tmp_path / "out"]  # fmt: skip

    rc, out, err = run_cli(*args)

    assert rc == 0, err
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert 0.0 <= best["value"] <= 1.0
    assert best["params"]["arch"] in ("tiny", "resnet18")
    assert best["data_fingerprint"] == data_fingerprint(inspect(data).manifest)
    study = load_study("real", f"sqlite:///{tmp_path / 'real.db'}")
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 2
    for t in study.trials:
        assert t.user_attrs["device"] == "cpu"
        assert 1 <= t.user_attrs["epochs_trained"] <= t.params["epochs"]
        assert len(t.user_attrs["history"][0]) == t.user_attrs["epochs_trained"]

    rc, out, err = run_cli(*args)  # the same command again: resumes, trains nothing

    assert rc == 0, err
    assert len(load_study("real", f"sqlite:///{tmp_path / 'real.db'}").trials) == 2


@pytest.mark.slow
def test_two_workers_train_for_real_on_a_journal_file(
    run_cli: Run,
    make_demo: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """The one test of ``run_study``'s own worker processes (each imports the engine: ~10 s)."""
    from mritune.data import data_fingerprint, inspect

    data = make_demo(train_per_class=8, test_per_class=2, size=48)
    space = tmp_path / "space.toml"
    space.write_text('[arch]\ntype = "categorical"\nchoices = ["tiny"]\n\n'
                     '[epochs]\ntype = "int"\nlow = 1\nhigh = 2\n')  # fmt: skip
    storage = f"journal:{tmp_path / 'workers.log'}"

    rc, out, err = run_cli("tune", data, "--preset", "quick", "--technique", "random",
                           "--trials", "2", "--workers", "2", "--space", space, "--img-size", "32",
                           "--device", "cpu", "--threads", "1", "--study", "two",
                           "--storage", storage, "--out", tmp_path / "out")  # fmt: skip

    assert rc == 0, err
    study = load_study("two", storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert not study.get_trials(states=(TrialState.RUNNING,))
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["data_fingerprint"] == data_fingerprint(inspect(data).manifest)
