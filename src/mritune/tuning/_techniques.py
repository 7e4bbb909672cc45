"""Technique registry: a name -> (sampler, pruner) factory, listed by ``mritune techniques``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
)
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GPSampler,
    GridSampler,
    QMCSampler,
    RandomSampler,
    TPESampler,
)

from mritune.errors import ConfigError
from mritune.tuning._space import SearchSpace

__all__ = ["Technique", "PrunerSettings", "register_technique", "get_technique", "list_techniques"]


@dataclasses.dataclass(frozen=True)
class PrunerSettings:
    """Pruner options. Steps are epochs trained (see ``mritune.tuning`` docs)."""

    min_resource: int = 1
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    n_startup_trials: int = 2

    def __post_init__(self) -> None:
        problems = []
        if self.min_resource < 1:
            problems.append(f"min_resource is {self.min_resource}, but must be >= 1")
        if self.reduction_factor < 2:
            problems.append(f"reduction_factor is {self.reduction_factor}, but must be >= 2")
        if self.min_early_stopping_rate < 0:
            problems.append(
                f"min_early_stopping_rate is {self.min_early_stopping_rate}, but must be >= 0"
            )
        if self.n_startup_trials < 0:
            problems.append(f"n_startup_trials is {self.n_startup_trials}, but must be >= 0")
        if problems:
            raise ConfigError("; ".join(problems))


Factory = Callable[[SearchSpace, int, PrunerSettings, int], tuple[BaseSampler, BasePruner]]


@dataclasses.dataclass(frozen=True)
class Technique:
    name: str
    description: str
    factory: Factory
    prunes: bool

    def create(
        self, space: SearchSpace, seed: int, settings: PrunerSettings | None = None,
        max_resource: int = 15,
    ) -> tuple[BaseSampler, BasePruner]:  # fmt: skip
        return self.factory(space, seed, settings or PrunerSettings(), max_resource)


_REGISTRY: dict[str, Technique] = {}


def register_technique(
    name: str, description: str, *, prunes: bool
) -> Callable[[Factory], Factory]:
    def deco(fn: Factory) -> Factory:
        _REGISTRY[name] = Technique(name, description, fn, prunes)
        return fn

    return deco


def list_techniques() -> list[Technique]:
    return list(_REGISTRY.values())


def get_technique(name: str) -> Technique:
    """The technique ``name``; an unknown name lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown technique '{name}'; known: {', '.join(_REGISTRY)}") from None


def _sh(s: PrunerSettings) -> SuccessiveHalvingPruner:
    return SuccessiveHalvingPruner(
        min_resource=s.min_resource, reduction_factor=s.reduction_factor,
        min_early_stopping_rate=s.min_early_stopping_rate,
    )  # fmt: skip


def _tpe(seed: int, s: PrunerSettings) -> TPESampler:
    # Few random start-up trials: with the reference's 10-trial budget, Optuna's default of 10
    # would make TPE random search in disguise.
    return TPESampler(seed=seed, n_startup_trials=max(s.n_startup_trials, 1) + 1)


@register_technique("random", "random search: RandomSampler, no pruning", prunes=False)
def _random(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return RandomSampler(seed=seed), NopPruner()


@register_technique(
    "random-sh", "random search with Successive Halving pruning each epoch", prunes=True
)
def _random_sh(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return RandomSampler(seed=seed), _sh(s)


@register_technique("tpe", "Optuna TPE (Bayesian), no pruning", prunes=False)
def _tpe_only(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return _tpe(seed, s), NopPruner()


@register_technique(
    "tpe-sh", "TPE + Successive Halving pruner, a value reported every epoch", prunes=True
)
def _tpe_sh(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return _tpe(seed, s), _sh(s)


@register_technique("tpe-hyperband", "TPE + Hyperband pruner (several SH brackets)", prunes=True)
def _tpe_hb(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return _tpe(seed, s), HyperbandPruner(
        min_resource=s.min_resource, max_resource=max(max_r, s.min_resource + 1),
        reduction_factor=s.reduction_factor,
    )  # fmt: skip


@register_technique(
    "tpe-median", "TPE + median stopping (prune below the median at the same epoch)", prunes=True
)
def _tpe_median(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return _tpe(seed, s), MedianPruner(
        n_startup_trials=s.n_startup_trials, n_warmup_steps=s.min_resource
    )


@register_technique(
    "gp", "Gaussian-process Bayesian optimisation (GPSampler), no pruning", prunes=False
)
def _gp(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return GPSampler(seed=seed, n_startup_trials=max(s.n_startup_trials, 1) + 3), NopPruner()


@register_technique(
    "cmaes", "CMA-ES on numeric parameters (categorical ones sampled at random)", prunes=False
)
def _cmaes(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return CmaEsSampler(seed=seed, warn_independent_sampling=False), NopPruner()


@register_technique(
    "qmc", "quasi-Monte Carlo (scrambled Sobol) space filling, no pruning", prunes=False
)
def _qmc(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False), NopPruner()


@register_technique(
    "grid", "exhaustive grid over a discrete space (needs choices or steps)", prunes=False
)
def _grid(space, seed, s, max_r):  # noqa: ANN001, ANN202
    return GridSampler(space.grid(), seed=seed), NopPruner()
