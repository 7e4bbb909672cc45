"""``mritune demo``: the whole pipeline on generated data, end to end."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mritune.cli._common import console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate demo data, compare random vs tpe-sh, CV, final model, "
                       "Grad-CAM, report (a few minutes on a 2-core CPU)")  # fmt: skip
    p.add_argument("--out", default="runs/demo", help="folder for everything (runs/demo)")
    p.add_argument("--trials", type=int, default=6, help="trials per study (6)")
    p.add_argument("--repeats", type=int, default=3, help="seeds per technique (3)")
    p.add_argument("--folds", type=int, default=3, help="CV folds (3)")
    p.add_argument(
        "--train-per-class", type=int, default=60, help="demo Training/ images per class (60)"
    )
    p.add_argument(
        "--test-per-class", type=int, default=20, help="demo Testing/ images per class (20)"
    )
    p.add_argument("--size", type=int, default=96, help="demo image side in px (96)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mritune.cli.main import main

    out = Path(args.out)
    data, storage = out / "data", f"sqlite:///{out / 'studies.db'}"
    cache = str(out / "cache")
    t0 = time.monotonic()
    steps = [
        ["data", "demo", str(data), "--force", "--train-per-class", str(args.train_per_class),
         "--test-per-class", str(args.test_per_class), "--size", str(args.size)],
        ["data", "inspect", str(data), "--json", str(out / "inspect.json"), "--cache-dir", cache],
        ["compare", str(data), "--techniques", "random,tpe-sh", "--trials", str(args.trials),
         "--repeats", str(args.repeats), "--preset", "quick", "--storage", storage,
         "--out", str(out / "compare"), "--cache-dir", cache],
        ["cv", str(data), "--params", str(out / "compare" / "best.json"), "--folds", str(args.folds),
         "--storage", storage, "--cv-study", "cv-best", "--out", str(out / "cv"), "--cache-dir", cache],
        ["final", str(data), "--params", str(out / "compare" / "best.json"), "--out",
         str(out / "model"), "--cache-dir", cache],
        lambda: ["predict", str(out / "model"), *_first_test_images(data, 2),
                 "--csv", str(out / "predictions.csv"), "--cam", str(out / "gradcam")],
        ["report", "--storage", storage, "--data", str(data), "--final", str(out / "model"),
         "--out", str(out / "report")],
    ]  # fmt: skip
    for k, step in enumerate(steps, 1):
        step = step() if callable(step) else step
        console.rule(f"[bold]step {k}/{len(steps)}: mritune {' '.join(step[:2])}")
        rc = main(step)
        if rc:
            return rc
    minutes = (time.monotonic() - t0) / 60
    console.rule("[bold]done")
    console.print(f"demo finished in {minutes:.1f} min")
    console.print(f"report: {(out / 'report' / 'report.html').resolve()}")
    return 0


def _first_test_images(data: Path, per_class: int) -> list[str]:
    """A few Testing/ images of every class (the data exists only once step 1 has run)."""
    return [
        str(p)
        for d in sorted((data / "Testing").iterdir())
        for p in sorted(d.glob("*.jpg"))[:per_class]
    ]
