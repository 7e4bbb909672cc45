"""Batches straight from the decode-once cache, with augmentation on whole batches."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from queue import Queue

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CacheLoader", "augment_batch", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """MRI-suited augmentation of a float batch in [0, 1], shape (N, C, H, W), on its device.

    Per image: horizontal flip (p=0.5; axial slices are left-right symmetric), rotation within
    +-10 degrees, zoom 1.0-1.1 and a small shift (together with p=0.75), brightness +-0.1 and
    contrast x0.9-1.1. One ``grid_sample`` call for the whole batch.
    """
    n = x.shape[0]
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(dev)

    flip = rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    use = (rand(n) < 0.75).float()
    angle = (rand(n) * 2 - 1) * math.radians(10) * use
    scale = 1.0 / (1.0 + rand(n) * 0.1 * use)
    shift = (rand(n, 2) * 2 - 1) * 0.05 * use[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    contrast = 0.9 + rand(n) * 0.2
    bright = (rand(n) * 2 - 1) * 0.1
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast[:, None, None, None] + mean + bright[:, None, None, None]
    return x.clamp_(0.0, 1.0)


class CacheLoader:
    """Iterates (x, y) batches of ``idx`` from a uint8 (N, S, S, C) array.

    The uint8 gather from the memory map runs one batch ahead in a thread; conversion,
    augmentation and normalisation run on whole batches on ``device``. Works as a fastai
    ``DataLoaders`` member (``len``, iteration, ``device``, ``to``).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        idx: np.ndarray,
        *,
        bs: int,
        shuffle: bool,
        device: torch.device,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        augment: bool = False,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        self.images, self.labels = images, labels
        self.idx = np.asarray(idx, dtype=np.int64)
        self.bs, self.shuffle, self.augment = bs, shuffle, augment
        # Drop a last training batch smaller than 2 (BatchNorm cannot train on one image).
        self.drop_last = shuffle and len(self.idx) > bs and len(self.idx) % bs == 1
        self.device = device
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.channels_last = channels_last
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    @property
    def n(self) -> int:
        return len(self.idx)

    def __len__(self) -> int:
        full, rest = divmod(len(self.idx), self.bs)
        return full + (1 if rest and not self.drop_last else 0)

    def to(self, device: torch.device | str) -> CacheLoader:
        self.device = torch.device(device)
        return self

    def _batches(self) -> Iterator[np.ndarray]:
        order = self.rng.permutation(self.idx) if self.shuffle else self.idx
        for b in range(len(self)):
            # Sorted within the batch: sequential reads from the memory map, same batch content.
            yield np.sort(order[b * self.bs : (b + 1) * self.bs])

    def _gather(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        q: Queue = Queue(maxsize=2)
        stop = threading.Event()

        def work() -> None:
            try:
                for bidx in self._batches():
                    if stop.is_set():
                        return
                    q.put((self.images[bidx], self.labels[bidx]))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                q.put(exc)
                return
            q.put(None)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while t.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except Exception:  # noqa: BLE001
                    t.join(0.01)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dev = self.device
        mean, std = self.mean.to(dev), self.std.to(dev)
        for xb, yb in self._gather():
            x = torch.from_numpy(xb).to(dev, non_blocking=True).permute(0, 3, 1, 2)
            if not self.channels_last:  # NHWC permuted is channels-last already; else NCHW
                x = x.contiguous()  # on uint8: a quarter of the bytes of a float copy
            x = x.float().div_(255.0)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            if self.augment:
                x = augment_batch(x, self.gen)
            x = (x - mean) / std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, torch.from_numpy(yb).to(dev, non_blocking=True)
