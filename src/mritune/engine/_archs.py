"""Architecture registry: name -> torchvision constructor (or the tiny test CNN) + fastai meta."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from fastai.vision.learner import model_meta
from torch import nn

from mritune.errors import ConfigError, WeightsUnavailable

__all__ = ["ArchSpec", "register_arch", "list_archs", "get_arch", "build_backbone"]


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A registered architecture.

    ``make`` builds the full classification network with random weights; ``torchvision_name`` (if
    any) names the torchvision model whose ImageNet weights ``pretrained`` loads; ``meta`` is
    fastai's ``model_meta`` entry (where to cut the body, how to split parameter groups).
    """

    name: str
    make: Callable[[], nn.Module]
    torchvision_name: str | None
    meta: dict
    description: str


_REGISTRY: dict[str, ArchSpec] = {}


def register_arch(
    name: str, *, torchvision_name: str | None = None, meta_of: object = None, description: str = ""
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator that registers a zero-argument model factory under ``name``."""

    def deco(fn: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        meta = dict(model_meta.get(meta_of, {})) if meta_of is not None else {}
        meta.setdefault("cut", None)
        if "split" not in meta:
            from fastai.vision.learner import default_split

            meta["split"] = default_split
        meta.pop("weights", None)  # mritune loads weights itself; fastai must not download
        model_meta[fn] = meta
        _REGISTRY[name] = ArchSpec(name, fn, torchvision_name, meta, description)
        return fn

    return deco


def list_archs() -> list[ArchSpec]:
    """Registered architectures, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_arch(name: str) -> ArchSpec:
    """The registered architecture ``name``; an unknown name lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown architecture '{name}'; known: {known}") from None


def _tv(name: str, description: str) -> None:
    ctor = getattr(torchvision.models, name)

    def make() -> nn.Module:
        return ctor(weights=None)

    make.__name__ = f"make_{name}"
    register_arch(name, torchvision_name=name, meta_of=ctor, description=description)(make)


for _name, _desc in [
    ("resnet18", "ResNet-18 (11.7M parameters), the reference's smallest"),
    ("resnet34", "ResNet-34 (21.8M parameters)"),
    ("resnet50", "ResNet-50 (25.6M parameters)"),
    ("resnet101", "ResNet-101 (44.5M parameters)"),
    ("densenet121", "DenseNet-121 (8.0M parameters)"),
    ("efficientnet_b0", "EfficientNet-B0 (5.3M parameters)"),
    ("mobilenet_v3_large", "MobileNetV3-Large (5.5M parameters)"),
    ("convnext_tiny", "ConvNeXt-Tiny (28.6M parameters)"),
]:
    _tv(_name, _desc)


@register_arch("tiny", description="a 3-block CNN (~25k parameters) for fast CPU tests and demos")
def make_tiny() -> nn.Module:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(3, 16), block(16, 32), block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 1000),
    )  # fmt: skip


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailable(f"{path}: weights file not found; give an existing --weights FILE")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader error: say which file and why
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailable(
            f"{path}: cannot read weights ({reason}); give a state dict saved with "
            f"torch.save(model.state_dict()) or safetensors"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path}: expected a state dict (name -> tensor)")
    return state


def build_backbone(spec: ArchSpec, pretrained: bool, weights: str | None) -> nn.Module:
    """The full torchvision-style network with the weights asked for.

    ``weights`` (a local state-dict file) wins over ``pretrained``. ``pretrained`` uses
    torchvision's default ImageNet weights: from the local torch hub cache when present, else
    downloaded as torchvision does. When they cannot be had, raises :class:`WeightsUnavailable`
    naming ``--weights FILE`` and ``--no-pretrained``; it never falls back to random weights.
    """
    model = spec.make()
    if weights is not None:
        state = _load_state_file(Path(weights))
        missing, unexpected = model.load_state_dict(state, strict=False)
        # The classifier layer may differ (other class count); the body must match.
        head = _classifier_prefix(model)
        body_missing = [k for k in missing if not k.startswith(head)]
        if body_missing or any(not k.startswith(head) for k in unexpected):
            raise WeightsUnavailable(
                f"{weights}: not a state dict for {spec.name} (missing {len(body_missing)} keys, "
                f"e.g. {(body_missing or list(unexpected))[:2]}); pass weights of the same "
                f"architecture"
            )
        return model
    if not pretrained:
        return model
    if spec.torchvision_name is None:
        raise WeightsUnavailable(
            f"architecture '{spec.name}' has no pretrained weights; use --no-pretrained or "
            f"--weights FILE"
        )
    tv_weights = torchvision.models.get_model_weights(spec.torchvision_name).DEFAULT
    try:
        state = tv_weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # noqa: BLE001 - offline, proxy, disk: all mean "not available"
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise WeightsUnavailable(
            f"pretrained {spec.name} weights are not in the torch cache ({torch.hub.get_dir()}) "
            f"and could not be downloaded ({reason}); pass --weights FILE with a local state "
            f"dict, or --no-pretrained to train from random weights"
        ) from None
    model.load_state_dict(state)
    return model


def _classifier_prefix(model: nn.Module) -> str:
    """State-dict prefix of the last linear layer (the ImageNet classifier fastai replaces)."""
    last = ""
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    return f"{last}."
