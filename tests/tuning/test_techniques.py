"""The technique registry: every technique runs a few fake trials; pruning where promised only."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from _tuning_fakes import FakeFit, FakePrepared, MakeSpec, fake_space
from optuna.trial import TrialState

from mritune.errors import ConfigError
from mritune.tuning import (
    PrunerSettings,
    finished_count,
    get_technique,
    list_techniques,
    run_study,
)

NAMES = [t.name for t in list_techniques()]


def test_the_registry_holds_the_reference_techniques() -> None:
    assert {"random", "tpe", "tpe-sh", "grid"} <= set(NAMES)
    assert get_technique("random").prunes is False
    assert get_technique("tpe-sh").prunes is True
    assert all(t.description for t in list_techniques())


@pytest.mark.parametrize("name", NAMES)
def test_every_technique_runs_a_few_trials(name: str, make_spec: MakeSpec) -> None:
    space = fake_space(discrete=name == "grid")
    n = 4 if name == "grid" else 3
    spec = make_spec(technique=name, n_trials=n, space=space)
    fit = FakeFit()

    study = run_study(spec, fit_fn=fit, prepared=FakePrepared())

    trials = study.get_trials()
    assert finished_count(study) == n
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert fit.calls == n
    for t in trials:
        assert set(t.params) == set(space.names)
        assert 1 <= t.user_attrs["epochs_trained"] <= t.params["epochs"]
    if not get_technique(name).prunes:
        assert all(t.state == TrialState.COMPLETE for t in trials)
    if name == "grid":  # 4 trials cover the 2 x 2 grid, each point once
        assert len({(t.params["arch"], t.params["wd"]) for t in trials}) == 4


def test_grid_on_a_continuous_space_is_refused_with_the_reason(make_spec: MakeSpec) -> None:
    spec = make_spec(technique="grid", n_trials=2)
    fit = FakeFit()

    with pytest.raises(ConfigError, match="grid technique needs a discrete space, but 'wd' is a "
                                          "continuous log-float range; give it choices"):  # fmt: skip
        run_study(spec, fit_fn=fit, prepared=FakePrepared())
    assert fit.calls == 0


def test_unknown_technique_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        get_technique("tpe-sha")
    assert str(info.value) == f"unknown technique 'tpe-sha'; known: {', '.join(NAMES)}"


def test_pruner_settings_name_every_bad_value() -> None:
    with pytest.raises(ConfigError, match="min_resource is 0, but must be >= 1; "
                                          "reduction_factor is 1, but must be >= 2"):  # fmt: skip
        PrunerSettings(min_resource=0, reduction_factor=1)


def _epochs(study: optuna.Study, state: TrialState) -> list[int]:
    return [t.user_attrs["epochs_trained"] for t in study.get_trials(states=(state,))]


def test_random_prunes_nothing_and_tpe_sh_prunes_poor_trials(
    make_spec: MakeSpec, tmp_path: Path
) -> None:
    runs = {}
    for name in ("random", "tpe-sh"):
        spec = make_spec(technique=name, n_trials=6, study=name,
                         storage=f"journal:{tmp_path / name}.log")  # fmt: skip
        runs[name] = run_study(spec, fit_fn=FakeFit(), prepared=FakePrepared())

    rnd, sh = runs["random"], runs["tpe-sh"]
    assert _epochs(rnd, TrialState.PRUNED) == []
    assert len(rnd.get_trials(states=(TrialState.COMPLETE,))) == 6
    pruned = sh.get_trials(states=(TrialState.PRUNED,))
    assert len(pruned) >= 2
    for t in pruned:
        assert t.user_attrs["epochs_trained"] < t.params["epochs"]
        assert t.value == t.intermediate_values[t.user_attrs["epochs_trained"]]
    for t in sh.get_trials(states=(TrialState.COMPLETE,)):
        assert t.user_attrs["epochs_trained"] == t.params["epochs"]
    total = {
        name: sum(t.user_attrs["epochs_trained"] for t in s.trials) for name, s in runs.items()
    }
    assert total["tpe-sh"] < total["random"]
