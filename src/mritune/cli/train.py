"""``mritune train | evaluate | predict | archs``."""

from __future__ import annotations

import argparse
import contextlib
import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.markup import escape

from mritune.cli._common import (
    add_training_options,
    console,
    err_console,
    progress_bar,
    table,
    train_config,
    write_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model, test it, save a model bundle")
    p.add_argument("data", help="dataset folder (Training/ [Testing/]) or CSV manifest")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write")
    add_training_options(p)
    s = p.add_argument_group("validation")
    s.add_argument("--valid-pct", type=float, default=0.2, help="validation share (0.2)")
    s.add_argument(
        "--split", choices=["stratified", "reference", "none"], default="stratified",
        help="stratified+grouped holdout (default), the reference's RandomSplitter(0.2, seed=42), "
        "or none (train on all of Training/)",
    )  # fmt: skip
    p.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="metrics of a saved model on a split of a dataset")
    e.add_argument("model", help="model bundle folder")
    e.add_argument("data", help="dataset folder or CSV manifest")
    e.add_argument("--split", default="test", choices=["test", "valid", "train"])
    e.add_argument("--json", metavar="FILE", help="write all metrics as JSON")
    e.add_argument("--out", metavar="DIR", help="folder for confusion_matrix.png (with --json's)")
    e.add_argument("--device", default="auto")
    e.add_argument("--cache-dir", metavar="DIR")
    e.set_defaults(func=run_evaluate)

    r = sub.add_parser("predict", help="predict images or folders; optional Grad-CAM overlays")
    r.add_argument("model", help="model bundle folder")
    r.add_argument("paths", nargs="+", metavar="PATH", help="images or folders of images")
    r.add_argument("--csv", metavar="FILE", help="write path,prediction,prob_<class>...")
    r.add_argument("--json", metavar="FILE", help="write predictions as JSON")
    r.add_argument("--cam", metavar="DIR", help="write one Grad-CAM overlay PNG per image")
    r.add_argument("--device", default="auto")
    r.set_defaults(func=run_predict)

    a = sub.add_parser("archs", help="list the registered architectures")
    a.set_defaults(func=run_archs)


@contextlib.contextmanager
def staged_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback ``(stage, done, total)`` that shows one bar per stage."""
    state: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:

        def update(stage: str, done: int, total: int) -> None:
            if state.get("stage") != stage:
                state["stage"] = stage
                state["bar"] = stack.enter_context(progress_bar(stage, transient=True))
            state["bar"](done, total)

        yield update


@contextlib.contextmanager
def epoch_progress(total: int, label: str = "training") -> Iterator[Callable[[int, dict], bool]]:
    with progress_bar(label) as update:
        update(0, total)

        def on_epoch(epoch: int, m: dict) -> bool:
            acc = m.get("accuracy")
            info = f"loss {m['train_loss']:.3f}" + (
                f" valid acc {acc:.3f}" if acc is not None else ""
            )
            update(epoch + 1, total, info)
            return True

        yield on_epoch


def _metric_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    rows = [[c, v["precision"], v["recall"], v["specificity"], v["f1"], v["auroc"], v["support"]]
            for c, v in metrics["per_class"].items()]  # fmt: skip
    return rows


def print_metrics(title: str, metrics: dict[str, Any]) -> None:
    from mritune.evaluation import wilson_interval

    n = metrics["n"]
    lo, hi = wilson_interval(round(metrics["accuracy"] * n), n)
    console.print(
        f"[bold]{title}[/] (n={n}): accuracy {metrics['accuracy']:.4f} (95% CI {lo:.3f}–{hi:.3f}), "
        f"balanced accuracy {metrics['balanced_accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"macro AUROC {metrics['macro_auroc'] if metrics['macro_auroc'] is None else round(metrics['macro_auroc'], 4)}, "
        f"ECE {metrics['ece']:.4f}"
    )
    console.print(
        table(None, ["class", "precision", "recall", "specificity", "F1", "AUROC", "n"],
              _metric_rows(metrics))
    )  # fmt: skip
    cm = metrics["confusion_matrix"]
    classes = list(metrics["per_class"])
    console.print(table("confusion matrix (rows: true, columns: predicted)", ["", *classes],
                        [[c, *row] for c, row in zip(classes, cm)]))  # fmt: skip
    for part in ("leaked", "novel"):
        if part in metrics and metrics[part]["n"]:
            console.print(
                f"  accuracy on {part} test images (n={metrics[part]['n']}): "
                f"{metrics[part]['accuracy']:.4f}"
            )


def run_train(args: argparse.Namespace) -> int:
    from mritune.engine import train_model

    cfg = train_config(args)
    start = (
        f"weights from {cfg.weights}" if cfg.weights
        else "pretrained" if cfg.pretrained else "random init"
    )  # fmt: skip
    console.print(
        f"training {cfg.arch} ({start}) at {cfg.img_size}px, {cfg.total_epochs} epochs, bs {cfg.bs}"
    )
    with staged_progress() as stage, epoch_progress(cfg.total_epochs) as on_epoch:
        outcome = train_model(
            args.data, cfg, args.out, valid_pct=args.valid_pct, split=args.split,
            cache_dir=args.cache_dir, on_epoch=on_epoch, progress=stage,
        )  # fmt: skip
    if outcome.valid_metrics:
        print_metrics(f"validation holdout ({args.split})", outcome.valid_metrics)
    if outcome.test_metrics:
        print_metrics("Testing/ split", outcome.test_metrics)
        write_json(Path(args.out) / "test" / "metrics.json", outcome.test_metrics)
    console.print(f"model bundle written to {outcome.bundle_dir}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mritune.engine import evaluate_model

    out = args.out or (str(Path(args.json).parent) if args.json else None)
    with staged_progress() as stage:
        metrics = evaluate_model(
            args.model, args.data, split=args.split, out=out, cache_dir=args.cache_dir,
            device=args.device, progress=stage,
        )  # fmt: skip
    print_metrics(f"{args.split} split", metrics)
    if args.json:
        write_json(args.json, metrics)
        console.print(f"metrics written to {args.json}")
    if out:
        console.print(f"confusion matrix plot: {Path(out) / 'confusion_matrix.png'}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from mritune.engine import gradcam_overlays, load_bundle, predict_files
    from mritune.errors import DataError

    bundle = load_bundle(args.model)
    with progress_bar("reading images", transient=True) as update:
        pred = predict_files(bundle, args.paths, device=args.device, progress=update)
    for p in pred.problems:
        # One unwrapped line per file (greppable); names are escaped, "[1].jpg" is not markup.
        err_console.print(
            f"[yellow]skipped[/] {escape(p.path)}: {escape(p.reason)}", soft_wrap=True
        )
    if not pred.paths:
        raise DataError("no readable images among the given paths")
    classes = bundle.classes
    labels = pred.labels(classes)
    rows = []
    for path, lab, pr in zip(pred.paths, labels, pred.probs):
        rows.append({"path": path, "prediction": lab,
                     **{f"prob_{c}": float(v) for c, v in zip(classes, pr)}})  # fmt: skip
    console.print(table(None, ["path", "prediction", "confidence"],
                        [[r["path"], r["prediction"], float(p.max())] for r, p in zip(rows, pred.probs)]))  # fmt: skip
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        console.print(f"predictions written to {args.csv}")
    if args.json:
        write_json(args.json, {"classes": classes, "predictions": rows,
                               "skipped": [p.to_dict() for p in pred.problems]})  # fmt: skip
    if args.cam:
        from PIL import Image

        cam_dir = Path(args.cam)
        cam_dir.mkdir(parents=True, exist_ok=True)
        targets = pred.probs.argmax(1)
        with progress_bar("Grad-CAM", transient=True) as update:
            overlays = gradcam_overlays(bundle, pred.images, targets)
            update(len(overlays), len(overlays))
        for k, (path, ov) in enumerate(zip(pred.paths, overlays)):
            name = f"{k:04d}_{Path(path).stem}_{labels[k]}.png"
            Image.fromarray(ov).save(cam_dir / name)
        console.print(f"{len(overlays)} Grad-CAM overlays written to {cam_dir}")
    return 0


def run_archs(args: argparse.Namespace) -> int:
    from mritune.engine import list_archs

    console.print(table("architectures", ["name", "pretrained weights", "description"],
                        [[a.name, "torchvision" if a.torchvision_name else "none", a.description]
                         for a in list_archs()]))  # fmt: skip
    return 0
