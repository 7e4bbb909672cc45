"""Search spaces: parameters of :class:`~mritune.config.TrainConfig`, and TOML files of them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import optuna

from mritune.config import TrainConfig, load_toml
from mritune.errors import ConfigError

__all__ = ["Param", "SearchSpace", "reference_space", "quick_space", "load_space", "KINDS"]

KINDS = ("categorical", "int", "float", "log-float")
_TUNABLE = {"arch", "wd", "epochs", "bs", "drop", "lr", "freeze_epochs"}
_ALLOWED_KEYS = {"type", "choices", "low", "high", "step"}


@dataclasses.dataclass(frozen=True)
class Param:
    """One tuned parameter. ``kind`` is one of :data:`KINDS`."""

    name: str
    kind: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1)
            )
        return trial.suggest_float(
            self.name, float(self.low), float(self.high), log=self.kind == "log-float",
            step=self.step,
        )  # fmt: skip

    @property
    def discrete(self) -> bool:
        return self.kind in ("categorical", "int") or (
            self.kind == "float" and self.step is not None
        )

    def grid_values(self) -> list[Any]:
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.kind == "float" and self.step:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            return [round(self.low + k * self.step, 12) for k in range(n)]
        raise ConfigError(
            f"the grid technique needs a discrete space, but '{self.name}' is a continuous "
            f"{self.kind} range; give it choices (or a step) in a --space FILE"
        )

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        scale = " (log)" if self.kind == "log-float" else ""
        step = f" step {self.step}" if self.step else ""
        return f"{self.name} {self.kind} [{self.low:g}, {self.high:g}]{step}{scale}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.kind}
        if self.kind == "categorical":
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high)
            if self.step is not None:
                d["step"] = self.step
        return d


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def grid(self) -> dict[str, list[Any]]:
        return {p.name: p.grid_values() for p in self.params}

    def max_epochs(self, base: TrainConfig) -> int:
        """Upper bound of epochs a trial may train (frozen phase included)."""
        e = next((p for p in self.params if p.name == "epochs"), None)
        hi = (
            int(max(e.grid_values()) if e and e.kind == "categorical" else e.high)
            if e
            else base.epochs
        )
        return hi + (base.freeze_epochs if base.fine_tuning else 0)

    def describe(self) -> list[str]:
        return [p.describe() for p in self.params]

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}

    def replace(self, param: Param) -> SearchSpace:
        return SearchSpace(tuple(param if p.name == param.name else p for p in self.params))


def reference_space(*, discrete_drop: bool = False) -> SearchSpace:
    """The reference notebook's space: arch {resnet18, resnet34, resnet50}, wd log [1e-6, 1e-2],
    epochs [5, 15], bs {32, 64}, drop [0.2, 0.4] (or {0.2, 0.4}, as its random search had it)."""
    drop = (
        Param("drop", "categorical", choices=(0.2, 0.4))
        if discrete_drop
        else Param("drop", "float", low=0.2, high=0.4)
    )
    return SearchSpace((
        Param("arch", "categorical", choices=("resnet18", "resnet34", "resnet50")),
        Param("wd", "log-float", low=1e-6, high=1e-2),
        Param("epochs", "int", low=5, high=15),
        Param("bs", "categorical", choices=(32, 64)),
        drop,
    ))  # fmt: skip


def quick_space() -> SearchSpace:
    """Sized for the CPU demo: small architectures, 2-4 epochs."""
    return SearchSpace((
        Param("arch", "categorical", choices=("tiny", "resnet18")),
        Param("wd", "log-float", low=1e-5, high=1e-2),
        Param("epochs", "int", low=2, high=4),
        Param("bs", "categorical", choices=(16, 32)),
        Param("drop", "float", low=0.2, high=0.4),
    ))  # fmt: skip


def load_space(path: str | Path) -> SearchSpace:
    """Read a TOML search space: one table per parameter, e.g.::

        [arch]
        type = "categorical"
        choices = ["resnet18", "resnet34"]

        [wd]
        type = "log-float"
        low = 1e-6
        high = 1e-2

    Unknown parameters or keys, wrong types and empty ranges are one-line :class:`ConfigError`
    naming the file and key.
    """
    data = load_toml(path)
    if not data:
        raise ConfigError(f"{path}: the search space is empty; add at least one [parameter] table")
    params = []
    for name, spec in data.items():
        where = f"{path}: [{name}]"
        if name not in _TUNABLE:
            raise ConfigError(f"{where}: unknown parameter; tunable: {', '.join(sorted(_TUNABLE))}")
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: must be a table with type = ...")
        unknown = set(spec) - _ALLOWED_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                f"{', '.join(sorted(_ALLOWED_KEYS))}"
            )
        kind = spec.get("type")
        if kind not in KINDS:
            raise ConfigError(f"{where}: type is {kind!r}; choose one of {', '.join(KINDS)}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}: choices must be a non-empty list")
            if set(spec) - {"type", "choices"}:
                raise ConfigError(f"{where}: a categorical parameter takes only type and choices")
            params.append(Param(name, kind, choices=tuple(choices)))
            continue
        if "choices" in spec:
            raise ConfigError(f'{where}: choices is only for type = "categorical"')
        lo, hi = spec.get("low"), spec.get("high")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)):
            raise ConfigError(f"{where}: low and high must both be numbers")
        if not lo < hi:
            raise ConfigError(f"{where}: empty range: low = {lo} must be below high = {hi}")
        if kind == "log-float" and lo <= 0:
            raise ConfigError(f"{where}: a log-float range needs low > 0 (got {lo})")
        if kind == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
            raise ConfigError(f"{where}: an int range needs whole-number low and high")
        step = spec.get("step")
        if step is not None and (not isinstance(step, int | float) or step <= 0):
            raise ConfigError(f"{where}: step must be a positive number")
        if step is not None and kind == "log-float":
            raise ConfigError(f"{where}: step is not allowed with log-float")
        params.append(Param(name, kind, low=lo, high=hi, step=step))
    return SearchSpace(tuple(params))
