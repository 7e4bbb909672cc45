"""What Successive Halving buys: ``random`` vs ``tpe-sh`` on the same data and trial budget.

For each seed, both techniques run a study of ``--trials`` finished trials (COMPLETE or PRUNED)
with the quick preset (tiny / resnet18, 64 px, 2-4 epochs, no pretrained weights) on the same
stratified holdout of a generated demo dataset, training for real through
``mritune.tuning.run_study``. The seed sets both the split and the sampler, so the two techniques
of one seed see the same data. Per run it prints the epochs trained (summed over trials), the wall
time, the trials pruned and the best validation accuracy; the last line gives the ratio of epochs
trained (tpe-sh / random) and the difference in best value (tpe-sh - random), both over all seeds.

Usage:
    python benchmarks/bench_techniques.py                  # 6 trials, seeds 0 1 2, demo data
    python benchmarks/bench_techniques.py --trials 10 --seeds 0 1 2 3 4 --json bench.json
    python benchmarks/bench_techniques.py --data path/to/Kaggle/folder --img-size 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=6, help="finished trials per study (6)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (0 1 2)")
    p.add_argument("--techniques", nargs=2, default=["random", "tpe-sh"], metavar=("A", "B"),
                   help="the two techniques compared (random tpe-sh); the ratio is B / A")  # fmt: skip
    p.add_argument("--data", help="dataset folder (default: a generated demo set, 60 per class)")
    p.add_argument("--img-size", type=int, default=64, help="image side in px (64)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def run_one(prepared: Any, data: str, technique: str, seed: int, args: argparse.Namespace,
            storage: str) -> dict[str, Any]:  # fmt: skip
    """One study; returns its figures."""
    from optuna.trial import TrialState

    from mritune.tuning import StudySpec, preset, run_study

    space, base, extra = preset("quick", technique)
    spec = StudySpec(
        data=data, study=f"{technique}-seed{seed}", storage=storage, technique=technique,
        n_trials=args.trials, space=space,
        base=base.replace(img_size=args.img_size, device=args.device, workers=args.threads),
        split="stratified", valid_pct=extra["valid_pct"], seed=seed,
    )  # fmt: skip
    t0 = time.perf_counter()
    study = run_study(spec, prepared=prepared)
    wall = time.perf_counter() - t0
    trials = study.get_trials()
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    return {
        "technique": technique,
        "seed": seed,
        "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "epochs_trained": sum(int(t.user_attrs.get("epochs_trained", 0)) for t in trials),
        "wall_s": round(wall, 2),
        "best_value": max(t.value for t in complete) if complete else None,
        "best_params": study.best_params if complete else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    warnings.filterwarnings("ignore")
    import optuna

    from mritune.data import generate_demo
    from mritune.engine import prepare

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    a, b = args.techniques
    with tempfile.TemporaryDirectory(prefix="bench-techniques-") as tmp:
        data = args.data
        if data is None:
            data = str(Path(tmp) / "demo")
            generate_demo(data, seed=0)
        prepared = prepare(data, args.img_size, cache_dir=Path(tmp) / "cache")
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        print(f"data {data}: {len(prepared.manifest)} images; {args.trials} trials per study, "
              f"seeds {' '.join(map(str, args.seeds))}, {args.img_size} px, "
              f"device {args.device}")  # fmt: skip
        print(f"{'technique':<10} {'seed':>4} {'epochs':>6} {'pruned':>6} {'wall s':>7} "
              f"{'best':>7}")  # fmt: skip
        runs = []
        for seed in args.seeds:
            for technique in (a, b):
                r = run_one(prepared, data, technique, seed, args, storage)
                runs.append(r)
                best = f"{r['best_value']:.4f}" if r["best_value"] is not None else "-"
                print(f"{technique:<10} {seed:>4} {r['epochs_trained']:>6} {r['pruned']:>6} "
                      f"{r['wall_s']:>7.1f} {best:>7}", flush=True)  # fmt: skip
    by = {(r["technique"], r["seed"]): r for r in runs}
    epochs = {t: sum(by[t, s]["epochs_trained"] for s in args.seeds) for t in (a, b)}
    walls = {t: sum(by[t, s]["wall_s"] for s in args.seeds) for t in (a, b)}
    diffs = [by[b, s]["best_value"] - by[a, s]["best_value"] for s in args.seeds
             if by[b, s]["best_value"] is not None and by[a, s]["best_value"] is not None]  # fmt: skip
    mean_diff = statistics.mean(diffs) if diffs else float("nan")
    summary = {
        "epochs_ratio": epochs[b] / epochs[a],
        "wall_ratio": walls[b] / walls[a],
        "best_value_diff_mean": mean_diff,
        "best_value_diffs": diffs,
    }
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    print(f"wall time {b}/{a}: {summary['wall_ratio']:.2f}")
    print(f"epochs trained {b}/{a}: {epochs[b]}/{epochs[a]} = {summary['epochs_ratio']:.2f}; "
          f"best value {b} - {a}, mean over {len(diffs)} seeds: {mean_diff:+.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
