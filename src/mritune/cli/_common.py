"""Shared CLI pieces: console, progress bars, option groups."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(highlight=False)
if not console.is_terminal:  # files and pipes: wide enough for the trial tables
    console = Console(highlight=False, width=160)
err_console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def progress_bar(description: str, *, transient: bool = False) -> Iterator[Callable[..., None]]:
    """Yields ``update(done, total, **fields)``; draws a bar on stderr (plain lines when not a TTY)."""
    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )
    task = prog.add_task(description, total=None, info="")
    with prog:

        def update(done: int, total: int | None = None, info: str | None = None) -> None:
            kwargs: dict[str, Any] = {"completed": done}
            if total is not None:
                kwargs["total"] = total
            if info is not None:
                kwargs["info"] = info
            prog.update(task, **kwargs)

        try:
            yield update
        except BaseException:
            prog.live.transient = True  # an error is one line, not a half-drawn bar and a line
            raise


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    tmp.replace(path)
    return path


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    return t


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def add_training_options(p: argparse.ArgumentParser, *, tuned: bool = True) -> None:
    """Model and training options shared by train, cv and final."""
    g = p.add_argument_group("model")
    g.add_argument("--arch", default="resnet18", help="architecture (mritune archs lists them)")
    g.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start from ImageNet weights (default: yes)",
    )
    g.add_argument("--weights", metavar="FILE", help="local backbone state dict to start from")
    g.add_argument("--img-size", type=int, default=224, help="square image side in px (224)")
    t = p.add_argument_group("training")
    if tuned:
        t.add_argument("--bs", type=int, default=32, help="batch size (32)")
        t.add_argument("--epochs", type=int, default=5, help="unfrozen epochs, as fine_tune (5)")
        t.add_argument("--wd", type=float, default=1e-4, help="weight decay (1e-4)")
        t.add_argument("--drop", type=float, default=0.5, help="head dropout, fastai ps (0.5)")
    t.add_argument("--freeze-epochs", type=int, default=1, help="frozen epochs first (1)")
    t.add_argument("--lr", type=float, default=1e-3, help="base learning rate (1e-3)")
    t.add_argument("--seed", type=int, default=42, help="random seed (42)")
    t.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=True, help="batch augmentation"
    )
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    t.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = all)")
    d = p.add_argument_group("data")
    d.add_argument("--cache-dir", metavar="DIR", help="image cache folder (runs/cache)")


def train_config(args: argparse.Namespace, **override: Any):  # noqa: ANN201
    from mritune.config import TrainConfig

    values = dict(
        arch=args.arch,
        pretrained=args.pretrained,
        weights=args.weights,
        img_size=args.img_size,
        bs=getattr(args, "bs", 32),
        epochs=getattr(args, "epochs", 5),
        freeze_epochs=args.freeze_epochs,
        wd=getattr(args, "wd", 1e-4),
        drop=getattr(args, "drop", 0.5),
        lr=args.lr,
        seed=args.seed,
        augment=args.augment,
        device=args.device,
        workers=args.threads,
    )
    values.update(override)
    return TrainConfig(**values)
