"""``fit``: fastai ``vision_learner`` fine-tuning over the cache, with a per-epoch callback."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import fastai.callback.progress  # noqa: F401 - patches Learner.no_bar
import fastai.callback.schedule  # noqa: F401 - patches Learner.fit_one_cycle
import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.data.core import DataLoaders
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import (
    Optimizer,
    adam_step,
    average_grad,
    average_sqr_grad,
    step_stat,
    weight_decay,
)
from fastai.vision.learner import vision_learner
from torch import nn

from mritune.config import TrainConfig
from mritune.data import ImageCache
from mritune.engine._archs import ArchSpec, build_backbone, get_arch
from mritune.engine._loader import IMAGENET_MEAN, IMAGENET_STD, CacheLoader
from mritune.engine._metrics import accuracy, balanced_accuracy, macro_f1
from mritune.errors import ConfigError, EngineError, OutOfMemory, TrainingDiverged

__all__ = ["fit", "FitResult", "EpochCallback", "resolve_device", "seed_everything"]

#: ``on_epoch(epoch, metrics) -> bool``; epoch counts from 0 over the frozen and unfrozen phases;
#: returning False stops training after that epoch.
EpochCallback = Callable[[int, dict[str, float]], bool]


@dataclasses.dataclass
class FitResult:
    """What one ``fit`` produced.

    Attributes:
        history: one dict per epoch trained (``epoch``, ``phase``, ``train_loss``, ``valid_loss``,
            ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``epoch_time``).
        probs: validation probabilities after the last epoch trained, (n_valid, n_classes).
        valid_idx: the manifest indices ``probs`` rows belong to.
        model: the trained network (eval mode, on the CPU).
        epochs_trained: epochs actually run (fewer than planned when stopped).
        stopped: True when ``on_epoch`` returned False.
        duration: seconds.
        device: device trained on.
    """

    history: list[dict[str, float]]
    probs: np.ndarray
    valid_idx: np.ndarray
    model: nn.Module
    epochs_trained: int
    stopped: bool
    duration: float
    device: str
    config: TrainConfig
    classes: list[str]
    normalization: dict[str, list[float]]

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA device that is absent is a ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"device '{device}' is not valid; use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{device}' asked for, but CUDA is not available; use --device cpu"
        )
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and make CPU kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False


def _set_threads(workers: int) -> None:
    n = workers or os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class FusedAdam(Optimizer):
    """fastai's ``Adam`` (decoupled weight decay, ``mom``/``sqr_mom``/``eps``/``wd`` hypers per
    parameter group, no weight decay where the Learner set ``do_wd=False``), stepped with
    PyTorch's fused AdamW kernel: one call per parameter group instead of about ten Python-level
    tensor operations per parameter. The update and the optimizer state (``grad_avg``,
    ``sqr_avg``, ``step``) are fastai's; on CPU the per-parameter loop cost as much as 30% of a
    ResNet-18 step at 64 px. Parameters the kernel cannot take (sparse gradients, unsupported
    devices) go through fastai's own per-parameter step.
    """

    def __init__(
        self, params: Any, lr: float, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5,
        wd: float = 0.01,
    ) -> None:  # fmt: skip
        cbs = [weight_decay, partial(average_grad, dampening=True), average_sqr_grad, step_stat]
        super().__init__(params, [*cbs, adam_step], lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd)

    @staticmethod
    def _fusable(p: torch.Tensor) -> bool:
        return (
            hasattr(torch, "_fused_adamw_")
            and p.device.type in ("cpu", "cuda")
            and p.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
            and not p.grad.is_sparse
        )

    def zero_grad(self) -> None:
        grads = [p.grad for pl in self.param_lists for p in pl if p.grad is not None]
        for g in grads:
            if g.grad_fn is not None:
                g.detach_()
        if grads:
            torch._foreach_zero_(grads)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        if closure is not None:
            raise NotImplementedError("fastai optimizers do not support closure")
        for pl, hyper in zip(self.param_lists, self.hypers):
            buckets: dict[tuple, list[torch.Tensor]] = {}
            for p in pl:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not self._fusable(p):
                    for cb in self.cbs:
                        new = cb(p, **{**state, **hyper})
                        if isinstance(new, dict):
                            state.update(new)
                    self.state[p] = state
                    continue
                if "grad_avg" not in state:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["sqr_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                key = (p.device, p.dtype, bool(state.get("do_wd", True)), state.get("step", 0))
                buckets.setdefault(key, []).append(p)
            for (device, _, do_wd, step), ps in buckets.items():
                states = [self.state[p] for p in ps]
                # The kernel reads the step count (already incremented, as in torch.optim.AdamW).
                step_t = torch.tensor(float(step + 1), dtype=torch.float32, device=device)
                torch._fused_adamw_(
                    ps, [p.grad for p in ps], [st["grad_avg"] for st in states],
                    [st["sqr_avg"] for st in states], [], [step_t] * len(ps),
                    lr=float(hyper["lr"]), beta1=float(hyper["mom"]),
                    beta2=float(hyper["sqr_mom"]), weight_decay=float(hyper["wd"]) if do_wd else 0.0,
                    eps=float(hyper["eps"]), amsgrad=False, maximize=False,
                )  # fmt: skip
                for st in states:
                    st["step"] = step + 1


class _EpochReporter(Callback):
    """Computes per-epoch metrics on the validation set and hands them to ``on_epoch``."""

    order = 60  # after fastai's Recorder (50)

    def __init__(self, on_epoch: EpochCallback | None, n_classes: int, phase: str, offset: int):
        self.on_epoch, self.n_classes, self.phase, self.offset = on_epoch, n_classes, phase, offset
        self.history: list[dict[str, float]] = []
        self.stopped = False
        self.failure: Exception | None = None
        self.probs: np.ndarray | None = None

    def before_epoch(self) -> None:
        self.t0 = time.perf_counter()
        self.loss_sum, self.loss_n = 0.0, 0
        self._preds: list[torch.Tensor] = []
        self._targs: list[torch.Tensor] = []

    def after_batch(self) -> None:
        # Summed on the device and read once per epoch: a per-batch .item() would make every
        # CUDA batch wait for the previous one. A NaN stays NaN in the sum, so divergence is
        # still caught, at the end of the epoch.
        if self.training:
            n = len(self.learn.yb[0])
            self.loss_sum = self.loss_sum + self.learn.loss.detach().float() * n
            self.loss_n += n
        else:
            self._preds.append(self.learn.pred.detach().float())
            self._targs.append(self.learn.yb[0].detach())

    def after_epoch(self) -> None:
        epoch = self.offset + self.epoch
        train_loss = float(self.loss_sum) / max(1, self.loss_n)
        if not math.isfinite(train_loss):
            self.failure = TrainingDiverged(
                f"training loss became {train_loss} in epoch {epoch}; try a lower learning rate"
            )
            raise CancelFitException()
        m: dict[str, float] = {"epoch": epoch, "phase": self.phase, "train_loss": train_loss}
        if self._preds:
            logits = torch.cat(self._preds).cpu()
            y = torch.cat(self._targs).cpu()
            m["valid_loss"] = float(nn.functional.cross_entropy(logits, y))
            probs = torch.softmax(logits, dim=1).numpy()
            pred, yn = probs.argmax(1), y.numpy()
            m["accuracy"] = accuracy(yn, pred)
            m["balanced_accuracy"] = balanced_accuracy(yn, pred, self.n_classes)
            m["macro_f1"] = macro_f1(yn, pred, self.n_classes)
            self.probs = probs
        m["epoch_time"] = time.perf_counter() - self.t0
        self.history.append(m)
        if self.on_epoch is not None and self.on_epoch(epoch, dict(m)) is False:
            self.stopped = True
            raise CancelFitException()


def fit(
    cache: ImageCache,
    train_idx: np.ndarray,
    valid_idx: np.ndarray,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Fine-tune ``config.arch`` on ``train_idx`` and validate on ``valid_idx`` after every epoch.

    This follows fastai's ``Learner.fine_tune``: ``freeze_epochs`` with only the head trained
    (one-cycle, ``lr``), then ``epochs`` with everything unfrozen (one-cycle, discriminative
    learning rates ``lr/2/100 .. lr/2``). From random weights the frozen phase is skipped.
    ``on_epoch(epoch, metrics)`` is called after every epoch, numbered from 0 across both phases;
    returning False stops training there (how tuning prunes).

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        OutOfMemory: the device ran out of memory.
        WeightsUnavailable: pretrained weights were asked for and cannot be had.

    Example:
        >>> res = fit(cache, tr, va, TrainConfig(arch="tiny", pretrained=False, img_size=64,
        ...           epochs=2), lambda e, m: True)          # doctest: +SKIP
        >>> res.last["accuracy"]                              # doctest: +SKIP
    """
    spec = get_arch(config.arch)
    train_idx = cache.usable(train_idx)
    valid_idx = cache.usable(valid_idx)
    if len(train_idx) < 2:
        raise ConfigError(f"only {len(train_idx)} training images; need at least 2")
    device = resolve_device(config.device)
    _set_threads(config.workers)
    seed_everything(config.seed)
    cuda = device.type == "cuda"
    n_classes = len(cache.classes)
    backbone = build_backbone(spec, config.pretrained, config.weights)
    norm = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    common: dict[str, Any] = dict(device=device, channels_last=cuda)
    train_dl = CacheLoader(
        cache.images, cache.labels, train_idx, bs=config.bs, shuffle=True,
        augment=config.augment, seed=config.seed, **common,
    )  # fmt: skip
    valid_dl = CacheLoader(
        cache.images, cache.labels, valid_idx, bs=max(config.bs, 64), shuffle=False, **common
    )
    dls = DataLoaders(train_dl, valid_dl, device=device)
    learn = _learner(dls, spec, backbone, n_classes, config)
    learn.model.to(device)
    if cuda:
        learn.model.to(memory_format=torch.channels_last)
        learn.to_fp16()
    if len(valid_idx) == 0:
        learn.recorder.valid_metrics = False
    t0 = time.perf_counter()
    history: list[dict[str, float]] = []
    probs: np.ndarray | None = None
    stopped = False
    phases = []
    if config.fine_tuning and config.freeze_epochs > 0:
        phases.append(("frozen", config.freeze_epochs))
    phases.append(("unfrozen", config.epochs))
    base_lr = config.lr
    try:
        with learn.no_bar(), learn.no_logging():
            for phase, n_epochs in phases:
                rep = _EpochReporter(on_epoch, n_classes, phase, offset=len(history))
                if phase == "frozen":
                    learn.freeze()
                    learn.fit_one_cycle(n_epochs, slice(base_lr), pct_start=0.99, cbs=[rep])
                    base_lr /= 2
                else:
                    learn.unfreeze()
                    lr = slice(base_lr / 100, base_lr) if config.fine_tuning else base_lr
                    learn.fit_one_cycle(n_epochs, lr, pct_start=0.3, div=5.0, cbs=[rep])
                history += rep.history
                probs = rep.probs if rep.probs is not None else probs
                if rep.failure is not None:
                    raise rep.failure
                if rep.stopped:
                    stopped = True
                    break
    except EngineError:
        raise
    except (RuntimeError, MemoryError) as exc:
        if not _is_out_of_memory(exc):
            raise
        if cuda:
            torch.cuda.empty_cache()
        raise OutOfMemory(
            f"out of memory on {device} with {config.arch}, batch size {config.bs}, image size "
            f"{config.img_size}; try a smaller --bs or --img-size"
        ) from None
    model = learn.model.float().eval().to("cpu")
    if cuda:
        model = model.to(memory_format=torch.contiguous_format)
    return FitResult(
        history=history,
        probs=probs if probs is not None else np.zeros((0, n_classes), dtype=np.float32),
        valid_idx=valid_idx,
        model=model,
        epochs_trained=len(history),
        stopped=stopped,
        duration=time.perf_counter() - t0,
        device=str(device),
        config=config,
        classes=list(cache.classes),
        normalization=norm,
    )


#: How allocators word running out of memory: CUDA ("CUDA out of memory", also raised as
#: ``torch.OutOfMemoryError``), MPS ("MPS backend out of memory") and the CPU allocator
#: ("DefaultCPUAllocator: can't allocate memory" / "not enough memory"), a plain RuntimeError.
_OOM_WORDS = ("out of memory", "can't allocate memory", "not enough memory")


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return any(w in text for w in _OOM_WORDS)


def _learner(
    dls: DataLoaders, spec: ArchSpec, backbone: nn.Module, n_classes: int, config: TrainConfig
) -> Any:
    """``vision_learner`` over an architecture whose weights are already loaded in ``backbone``."""
    from fastai.vision.learner import model_meta

    def arch(*args: Any, **kwargs: Any) -> nn.Module:  # fastai calls arch(weights=...)
        return backbone

    model_meta[arch] = spec.meta
    try:
        learn = vision_learner(
            dls,
            arch,
            normalize=False,
            n_out=n_classes,
            pretrained=config.fine_tuning,
            loss_func=CrossEntropyLossFlat(),
            wd=config.wd,
            ps=config.drop,
            lr=config.lr,
            opt_func=FusedAdam,
        )
    finally:
        model_meta.pop(arch, None)
    return learn
