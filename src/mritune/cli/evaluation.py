"""``mritune cv | compare | final``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mritune.cli._common import console, progress_bar, table, write_json
from mritune.cli.tune import add_study_options, build_spec, execute_study


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "cv", help="k-fold cross-validate a configuration, or nested CV of a technique"
    )
    c.add_argument("data", help="dataset folder or CSV manifest")
    src = c.add_argument_group("configuration (one of)")
    src.add_argument("--params", metavar="best.json", help="best.json written by tune/compare")
    src.add_argument("--study", metavar="NAME", help="take the best trial of this study")
    src.add_argument("--nested", action="store_true",
                     help="tune inside every outer fold with --technique/--trials (unbiased "
                     "estimate of tune-then-train)")  # fmt: skip
    src.add_argument("--technique", default="tpe-sh", help="inner technique for --nested (tpe-sh)")
    f = c.add_argument_group("folds")
    f.add_argument("--folds", type=int, default=5, help="folds (5)")
    f.add_argument("--repeats", type=int, default=1, help="repeat with other seeds (1)")
    f.add_argument("--grouped", action=argparse.BooleanOptionalAction, default=True,
                   help="keep duplicate groups in one fold (default: yes when duplicates exist)")  # fmt: skip
    f.add_argument("--cv-study", metavar="NAME", help="name of the CV study (cv-<source>)")
    add_study_options(c, with_cv=False)
    c.set_defaults(func=run_cv_cmd)

    m = sub.add_parser("compare", help="compare tuning techniques over repeated seeds")
    m.add_argument("data", help="dataset folder or CSV manifest")
    m.add_argument("--techniques", default="random,tpe-sh", help="comma-separated (random,tpe-sh)")
    m.add_argument("--repeats", type=int, default=3, help="seeds per technique (3)")
    m.add_argument("--name", default="compare", help="study name prefix (compare)")
    add_study_options(m)
    m.set_defaults(func=run_compare)

    f = sub.add_parser("final", help="train on all of Training/ with chosen parameters, test, save")
    f.add_argument("data", help="dataset folder or CSV manifest")
    f.add_argument("--params", metavar="best.json")
    f.add_argument("--study", metavar="NAME")
    f.add_argument("--storage", metavar="URL")
    f.add_argument("--device", default="auto")
    f.add_argument("--cache-dir", metavar="DIR")
    f.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write")
    f.set_defaults(func=run_final)


def _config(args: argparse.Namespace) -> tuple[Any, str]:
    from mritune.config import TrainConfig
    from mritune.evaluation import params_from

    src = params_from(args.params, args.study, args.storage or "")
    base = dict(src["base"])
    base.update(src["params"])
    base["device"] = args.device
    known = set(TrainConfig.__dataclass_fields__)
    return TrainConfig(**{k: v for k, v in base.items() if k in known}), src["source"]


def run_cv_cmd(args: argparse.Namespace) -> int:
    from mritune.engine import prepare
    from mritune.evaluation import CVSpec, cv_summary, run_cv, run_nested, write_cv_outputs

    if args.nested:
        base_spec = build_spec(args, args.technique, "x")
        cfg, source = base_spec.base, f"{args.technique}, {base_spec.n_trials} trials per fold"
        name = args.cv_study or f"nested-{args.technique}-{args.preset}"
    else:
        from mritune.errors import ConfigError

        given = [f for f, v in (("--trials", args.trials), ("--space", args.space),
                                ("--timeout", args.timeout)) if v is not None]  # fmt: skip
        if given:
            raise ConfigError(
                f"{', '.join(given)} only apply with --nested (tuning inside each fold)"
            )
        cfg, source = _config(args)
        over = {k: v for k, v in (("img_size", args.img_size), ("pretrained", args.pretrained),
                                  ("weights", args.weights)) if v is not None}  # fmt: skip
        cfg = cfg.replace(workers=args.threads, **over)
        name = args.cv_study or f"cv-{Path(args.params).parent.name if args.params else args.study}"
    spec = CVSpec(data=args.data, config=cfg, folds=args.folds, repeats=args.repeats,
                  grouped=args.grouped, seed=args.seed, study=name, storage=args.storage or "",
                  cache_dir=args.cache_dir)  # fmt: skip
    prep = prepare(args.data, cfg.img_size, cache_dir=args.cache_dir)
    if args.nested:
        console.print(
            f"nested CV: {args.folds} outer folds x {args.repeats} repeats, each tuned by {source}"
        )
    else:
        console.print(f"cross-validating {source}: {cfg.arch}, wd {cfg.wd:.3g}, epochs {cfg.epochs}, "
                      f"bs {cfg.bs}, drop {cfg.drop:.3g}; {args.folds} folds x {args.repeats} repeats")  # fmt: skip
    with progress_bar("CV folds") as update:
        update(0, args.folds * args.repeats)

        def on_fold(e: dict) -> None:
            update(e["done"], e["total"], f"last fold acc {e['accuracy']:.3f}")

        if args.nested:
            study = run_nested(spec, lambda n: build_spec(args, args.technique, n), prepared=prep,
                               on_fold=on_fold)  # fmt: skip
        else:
            study = run_cv(spec, prepared=prep, on_fold=on_fold)
    summary = cv_summary(study)
    if summary["grouped_by_duplicates"]:
        console.print("folds are grouped by duplicate groups (no near-copy straddles two folds)")
    out = Path(args.out or f"runs/{name}")
    files = write_cv_outputs(summary, prep.manifest.labels, prep.manifest.paths, out)
    print_cv(summary)
    console.print(f"wrote {', '.join(str(p) for p in files.values())}")
    return 0


def print_cv(summary: dict[str, Any]) -> None:
    classes = summary["classes"]
    rows = [[f["repeat"], f["fold"], f["n"], f["accuracy"], f["balanced_accuracy"], f["macro_f1"],
             *[f["recall"][c] for c in classes]] for f in summary["folds"]]  # fmt: skip
    cols = [
        "repeat",
        "fold",
        "n",
        "accuracy",
        "bal. acc.",
        "macro-F1",
        *[f"recall {c}" for c in classes],
    ]
    if summary.get("nested"):
        cols.append("chosen configuration")
        rows = [r + [f.get("config")] for r, f in zip(rows, summary["folds"])]
    console.print(table("cross-validation folds (held-out fold of Training/)", cols, rows))
    if not summary["complete"]:
        console.print(f"[yellow]only {len(summary['folds'])} of {summary['n_folds_expected']} folds are done; "
                      f"run the same command to finish[/]")  # fmt: skip
    for key, e in summary["estimates"].items():
        ci = (
            f"95% CI {e['ci_low']:.4f}–{e['ci_high']:.4f}"
            if e["ci_low"] is not None
            else "no interval"
        )
        sd = f" ± {e['std']:.4f}" if e["std"] is not None else ""
        console.print(f"{key}: {e['mean']:.4f}{sd} ({ci}; Student t over {e['over']})")


def run_compare(args: argparse.Namespace) -> int:
    from mritune.evaluation import (
        COMPARE_COLUMNS,
        compare_studies,
        comparison_markdown,
        comparison_rows,
    )
    from mritune.tuning import get_technique, normalize_url, write_trials

    techs = [t.strip() for t in args.techniques.split(",") if t.strip()]
    for t in techs:
        get_technique(t)
    seeds = [args.seed + r for r in range(args.repeats)]
    out = Path(args.out or f"runs/{args.name}")
    storage = args.storage or ""
    studies = {}

    def run(spec: Any) -> None:
        study = execute_study(spec, 1, label=f"{spec.technique} seed {spec.seed}")
        studies[spec.study] = study
        write_trials(study, out / spec.study, normalize_url(storage))

    summary = compare_studies(techs, seeds, args.name, storage, run=run,
                              make_spec=lambda tech, name, seed: build_spec(args, tech, name, seed))  # fmt: skip
    spec0 = build_spec(args, techs[0], "x", seeds[0])

    from mritune.tuning import measured_on

    measured = measured_on({"cv": spec0.cv, "split": spec0.split, "valid_pct": spec0.valid_pct})
    md = comparison_markdown(summary, measured)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text("# Technique comparison\n\n" + md)
    write_json(out / "compare.json", summary | {"measured_on": measured})
    console.print(table(f"techniques compared ({summary['metric']} on {measured})", COMPARE_COLUMNS,
                        comparison_rows(summary)))  # fmt: skip
    for t in summary["tests"]:
        console.print(t["summary"])
    best = max((r for t in summary["techniques"].values() for r in t["runs"] if r["best_value"] is not None),
               key=lambda r: r["best_value"], default=None)  # fmt: skip
    if best:
        import shutil

        shutil.copy(out / best["study"] / "best.json", out / "best.json")
        console.print(f"overall best: {best['study']} trial {best['best_trial']} ({best['best_value']:.4f}); "
                      f"its parameters are in {out / 'best.json'}")  # fmt: skip
    console.print(f"wrote {out / 'compare.md'}, {out / 'compare.json'}")
    return 0


def run_final(args: argparse.Namespace) -> int:
    from mritune.cli.train import epoch_progress, print_metrics, staged_progress
    from mritune.engine import train_model

    cfg, source = _config(args)
    console.print(
        f"final model from {source}: {cfg.arch}, {cfg.total_epochs} epochs on all of Training/"
    )
    with staged_progress() as stage, epoch_progress(cfg.total_epochs) as on_epoch:
        outcome = train_model(args.data, cfg, args.out, split="none", cache_dir=args.cache_dir,
                              on_epoch=on_epoch, progress=stage)  # fmt: skip
    if outcome.test_metrics:
        print_metrics("Testing/ split (never seen in tuning or training)", outcome.test_metrics)
        write_json(Path(args.out) / "test" / "metrics.json", outcome.test_metrics)
    else:
        console.print("[yellow]no Testing/ split: the final model is not tested[/]")
    console.print(f"model bundle written to {outcome.bundle_dir}")
    return 0
