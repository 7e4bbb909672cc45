"""Settings as frozen dataclasses, and TOML loading that rejects unknown keys."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from mritune.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TrainConfig", "load_toml", "DEFAULT_LR"]

#: Base learning rate; the reference notebook used fastai's 1e-3.
DEFAULT_LR = 1e-3


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Tuned hyperparameters are ``arch``, ``wd``, ``epochs``,
    ``bs`` and ``drop``; the rest is fixed per study.

    Attributes:
        arch: architecture name from the engine's registry (``mritune archs`` lists them).
        pretrained: start from ImageNet weights (torchvision's, from the local torch cache or
            downloaded as torchvision does).
        weights: a local state-dict file (``.safetensors`` or ``.pth``) for the backbone; implies
            pretrained-style fine-tuning.
        img_size: square side in pixels that images are resized to.
        bs: batch size.
        epochs: epochs with the whole network unfrozen (fastai ``fine_tune(epochs)``).
        freeze_epochs: epochs with only the head trained first (fastai's default 1). Ignored, as
            in fastai, when the model starts from random weights.
        wd: weight decay.
        drop: head dropout probability (fastai ``ps``).
        lr: base learning rate of ``fine_tune``.
        seed: random seed for weights init, shuffling and augmentation.
        augment: batch augmentation (flips, small rotations, zoom, brightness/contrast).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        workers: CPU threads for torch; 0 uses every core.
    """

    arch: str = "resnet18"
    pretrained: bool = True
    weights: str | None = None
    img_size: int = 224
    bs: int = 32
    epochs: int = 5
    freeze_epochs: int = 1
    wd: float = 1e-4
    drop: float = 0.5
    lr: float = DEFAULT_LR
    seed: int = 42
    augment: bool = True
    device: str = "auto"
    workers: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.img_size < 16:
            problems.append(f"img_size is {self.img_size}, but must be img_size >= 16")
        if self.bs < 2:
            problems.append(f"bs is {self.bs}, but must be bs >= 2")
        if self.epochs < 1:
            problems.append(f"epochs is {self.epochs}, but must be epochs >= 1")
        if self.freeze_epochs < 0:
            problems.append(f"freeze_epochs is {self.freeze_epochs}, but must be >= 0")
        if self.wd < 0:
            problems.append(f"wd is {self.wd}, but must be wd >= 0")
        if not 0.0 <= self.drop < 1.0:
            problems.append(f"drop is {self.drop}, but must be 0 <= drop < 1")
        if not self.lr > 0:
            problems.append(f"lr is {self.lr}, but must be lr > 0")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def fine_tuning(self) -> bool:
        """True when the backbone starts from trained weights (so a frozen phase makes sense)."""
        return self.pretrained or self.weights is not None

    @property
    def total_epochs(self) -> int:
        """Epochs that ``fit`` runs at most: the frozen phase (when fine-tuning) plus ``epochs``."""
        return self.epochs + (self.freeze_epochs if self.fine_tuning else 0)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing or malformed file is a one-line :class:`ConfigError`."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
