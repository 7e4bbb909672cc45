"""Search spaces: TOML files load or fail with one line naming the file and key; grids; specs."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from _tuning_fakes import BASE, MakeSpec

from mritune.config import TrainConfig
from mritune.errors import ConfigError
from mritune.tuning import Param, SearchSpace, StudySpec, load_space, quick_space, reference_space

VALID = """
[arch]
type = "categorical"
choices = ["resnet18", "resnet34"]

[wd]
type = "log-float"
low = 1e-6
high = 1e-2

[epochs]
type = "int"
low = 2
high = 6
step = 2

[bs]
type = "categorical"
choices = [16, 32]

[drop]
type = "float"
low = 0.2
high = 0.4
step = 0.1
"""


def write(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_file_loads_every_kind(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, VALID))

    assert space.names == ["arch", "wd", "epochs", "bs", "drop"]
    by = {p.name: p for p in space.params}
    assert by["arch"] == Param("arch", "categorical", choices=("resnet18", "resnet34"))
    assert (by["wd"].kind, by["wd"].low, by["wd"].high) == ("log-float", 1e-6, 1e-2)
    assert by["epochs"].grid_values() == [2, 4, 6]
    assert by["drop"].grid_values() == [0.2, 0.3, 0.4]
    assert by["bs"].grid_values() == [16, 32]


def test_loaded_space_suggests_values_inside_its_ranges(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, VALID))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = space.suggest(study.ask())
        assert params["arch"] in ("resnet18", "resnet34")
        assert 1e-6 <= params["wd"] <= 1e-2
        assert params["epochs"] in (2, 4, 6)
        assert params["bs"] in (16, 32)
        assert min(abs(params["drop"] - d) for d in (0.2, 0.3, 0.4)) < 1e-9


@pytest.mark.parametrize(
    ("text", "key", "rule"),
    [
        ('[wd]\ntype = "log-float"\nlow = 1e-6\nhigh = 1e-2\nlog = true\n', "[wd]",
         "unknown key(s) log; allowed"),
        ('[learning_rate]\ntype = "float"\nlow = 0.1\nhigh = 0.2\n', "[learning_rate]",
         "unknown parameter; tunable: arch, bs, drop, epochs"),
        ('[epochs]\ntype = "int"\nlow = 5\nhigh = 5\n', "[epochs]",
         "empty range: low = 5 must be below high = 5"),
        ('[drop]\ntype = "float"\nlow = 0.4\nhigh = 0.2\n', "[drop]", "empty range"),
        ('[drop]\ntype = "string"\nlow = 0.2\nhigh = 0.4\n', "[drop]",
         "type is 'string'; choose one of categorical, int, float, log-float"),
        ('[drop]\ntype = "float"\nlow = "0.2"\nhigh = 0.4\n', "[drop]",
         "low and high must both be numbers"),
        ('[arch]\ntype = "categorical"\nchoices = []\n', "[arch]",
         "choices must be a non-empty list"),
        ('[arch]\ntype = "categorical"\nchoices = "resnet18"\n', "[arch]",
         "choices must be a non-empty list"),
        ('[wd]\ntype = "log-float"\nlow = 0\nhigh = 1e-2\n', "[wd]", "needs low > 0"),
        ('[epochs]\ntype = "int"\nlow = 2.5\nhigh = 6\n', "[epochs]", "whole-number low and high"),
        ('[drop]\ntype = "float"\nlow = 0.1\nhigh = 0.4\nstep = -0.1\n', "[drop]",
         "step must be a positive number"),
        ('[wd]\ntype = "log-float"\nlow = 1e-6\nhigh = 1e-2\nstep = 1e-3\n', "[wd]",
         "step is not allowed with log-float"),
        ('[bs]\ntype = "int"\nchoices = [16, 32]\nlow = 16\nhigh = 32\n', "[bs]",
         'choices is only for type = "categorical"'),
        ("wd = 0.1\n", "[wd]", "must be a table"),
    ],
    ids=[
        "unknown-key", "unknown-parameter", "empty-int-range", "reversed-range", "bad-type",
        "bad-bound-type", "empty-choices", "choices-not-a-list", "log-from-zero", "int-fraction",
        "negative-step", "log-step", "choices-on-int", "not-a-table",
    ],
)  # fmt: skip
def test_bad_file_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, key: str, rule: str
) -> None:
    path = write(tmp_path, text, "bad-space.toml")

    with pytest.raises(ConfigError, match=re.escape(f"{path}: {key}: ")) as info:
        load_space(path)

    message = str(info.value)
    assert rule in message
    assert "\n" not in message


def test_empty_missing_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"empty\.toml: the search space is empty"):
        load_space(write(tmp_path, "", "empty.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml: no such file"):
        load_space(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_space(write(tmp_path, "[arch\ntype=", "broken.toml"))


def test_grid_of_a_continuous_range_names_the_parameter() -> None:
    with pytest.raises(ConfigError, match="grid technique needs a discrete space, but 'wd'"):
        quick_space().grid()


def test_preset_spaces_match_the_reference() -> None:
    ref = reference_space()
    assert ref.names == ["arch", "wd", "epochs", "bs", "drop"]
    assert ref.describe()[0] == "arch in {resnet18, resnet34, resnet50}"
    assert "wd log-float [1e-06, 0.01] (log)" in ref.describe()
    assert reference_space(discrete_drop=True).params[-1].grid_values() == [0.2, 0.4]
    assert quick_space().max_epochs(TrainConfig(pretrained=False)) == 4  # no frozen epoch
    assert ref.max_epochs(TrainConfig(pretrained=True)) == 16  # 15 + the frozen one


def test_study_spec_survives_json_with_the_same_identity(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, VALID))
    spec = StudySpec(data="d", study="s", storage="x.db", technique="grid", n_trials=3,
                     space=space, base=BASE, cv=3)  # fmt: skip

    again = StudySpec.from_json(spec.to_json())

    assert again == spec
    assert again.identity() == spec.identity()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_trials": 0}, "trials is 0, but must be >= 1"),
        ({"cv": 1}, "cv is 1, but must be 0 \\(holdout\\) or >= 2 folds"),
        ({"metric": "auc"}, "metric 'auc' is unknown; choose one of accuracy"),
        ({"split": "random"}, "split 'random' is unknown"),
        ({"technique": "tpe-sha"}, "unknown technique 'tpe-sha'; known: random, "),
    ],
)
def test_study_spec_rejects_bad_settings(make_spec: MakeSpec, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_spec(**changes)


def test_search_space_replace_swaps_one_parameter() -> None:
    space = quick_space().replace(Param("drop", "categorical", choices=(0.2, 0.4)))
    assert isinstance(space, SearchSpace)
    assert space.names == quick_space().names
    assert space.params[-1].grid_values() == [0.2, 0.4]
