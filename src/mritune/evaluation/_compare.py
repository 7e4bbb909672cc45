"""Comparing techniques: each runs R times (seeds) on the same data, split and trial budget."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from mritune.errors import ConfigError
from mritune.evaluation._stats import mean_ci, paired_test
from mritune.tuning import StudySpec, load_study, markdown_table, normalize_url

__all__ = ["compare_studies", "study_name_for", "run_record", "COMPARE_COLUMNS"]

COMPARE_COLUMNS = [
    "Technique", "Accuracy Score", "Architecture", "Weight Decay", "Epochs", "Batch Size", "Drop",
    "Epochs Trained", "Wall Time (s)", "Pruned Trials", "Seed",
]  # fmt: skip


def study_name_for(prefix: str, technique: str, seed: int) -> str:
    return f"{prefix}-{technique}-s{seed}"


def run_record(study: optuna.Study) -> dict[str, Any]:
    """One technique run, summarised from its study in the storage."""
    trials = study.get_trials(deepcopy=False)
    spec = json.loads(study.user_attrs.get("mritune_spec", "{}"))
    best = None
    try:
        best = study.best_trial
    except ValueError:
        pass
    p = best.params if best else {}
    return {
        "study": study.study_name,
        "technique": spec.get("technique"),
        "seed": spec.get("seed"),
        "metric": spec.get("metric"),
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "params": p,
        "epochs_trained": int(sum(t.user_attrs.get("epochs_trained", 0) for t in trials)),
        "wall_time": float(sum(t.user_attrs.get("duration", 0.0) for t in trials)),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "n_trials": spec.get("n_trials"),
    }


def compare_studies(
    techniques: list[str],
    seeds: list[int],
    prefix: str,
    storage: str,
    *,
    run: Callable[[StudySpec], Any] | None = None,
    make_spec: Callable[[str, str, int], StudySpec] | None = None,
) -> dict[str, Any]:
    """Run (or resume) every technique x seed study, then summarise them from the storage.

    ``make_spec(technique, study_name, seed)`` builds each study's spec; ``run(spec)`` runs it. With
    neither, the studies must already exist (``mritune report`` uses that).
    """
    if len(techniques) < 1:
        raise ConfigError("give at least one technique, e.g. --techniques random,tpe-sh")
    url = normalize_url(storage)
    records: dict[str, list[dict[str, Any]]] = {t: [] for t in techniques}
    for seed in seeds:
        for tech in techniques:
            name = study_name_for(prefix, tech, seed)
            if run is not None and make_spec is not None:
                run(make_spec(tech, name, seed))
            study = load_study(name, url)
            if "compare_prefix" not in study.user_attrs:  # how the report finds the comparison
                study.set_user_attr("compare_prefix", prefix)
                study.set_user_attr("compare_seed", seed)
            records[tech].append(run_record(study))
    return summarise(records, prefix=prefix, storage=url)


def summarise(
    records: dict[str, list[dict[str, Any]]], *, prefix: str, storage: str
) -> dict[str, Any]:
    per_tech = {}
    for tech, runs in records.items():
        vals = [r["best_value"] for r in runs if r["best_value"] is not None]
        per_tech[tech] = {
            "runs": runs,
            "best": mean_ci(vals).to_dict() if vals else None,
            "epochs_trained": mean_ci([r["epochs_trained"] for r in runs]).to_dict(),
            "wall_time": mean_ci([r["wall_time"] for r in runs]).to_dict(),
            "pruned": int(sum(r["pruned"] for r in runs)),
        }
    tests = []
    for a, b in itertools.combinations(records, 2):
        by_seed = {x["seed"]: x["best_value"] for x in records[b]}
        pairs = [(x["best_value"], by_seed[x["seed"]]) for x in records[a]  # paired by seed
                 if x["best_value"] is not None and by_seed.get(x["seed"]) is not None]  # fmt: skip
        if len(pairs) >= 2:
            t = paired_test([p[1] for p in pairs], [p[0] for p in pairs], a_name=b, b_name=a)
            tests.append({"a": b, "b": a, "n": t.n, "p_value": t.p_value,
                          "mean_difference": t.mean_difference, "test": t.test, "summary": t.summary()})  # fmt: skip
    any_run = next(iter(records.values()))[0] if records else {}
    return {"prefix": prefix, "storage": storage, "metric": any_run.get("metric"),
            "techniques": per_tech, "tests": tests,
            "repeats": len(next(iter(records.values()))) if records else 0}  # fmt: skip


def comparison_rows(summary: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for tech, t in summary["techniques"].items():
        for r in t["runs"]:
            p = r["params"]
            rows.append([tech, r["best_value"], p.get("arch"), p.get("wd"), p.get("epochs"), p.get("bs"),
                         p.get("drop"), r["epochs_trained"], round(r["wall_time"], 1), r["pruned"], r["seed"]])  # fmt: skip
    return rows


def comparison_markdown(summary: dict[str, Any], measured_on: str) -> str:
    lines = [f"Scores are the best trial's {summary['metric']} on {measured_on}; each row is one "
             f"study (seed).\n", markdown_table(COMPARE_COLUMNS, comparison_rows(summary))]  # fmt: skip
    if summary["repeats"] >= 2:
        lines.append(
            "\n| Technique | Best score, mean ± sd (95% CI) | Epochs trained (mean) | Pruned trials |\n|---|---|---|---|"
        )
        for tech, t in summary["techniques"].items():
            b = t["best"]
            txt = (
                f"{b['mean']:.4f} ± {b['std']:.4f} ({b['ci_low']:.4f}–{b['ci_high']:.4f}), n={b['n']}"
                if b and b["std"] is not None
                else "—"
            )
            lines.append(f"| {tech} | {txt} | {t['epochs_trained']['mean']:.1f} | {t['pruned']} |")
        lines.append("")
        for test in summary["tests"]:
            lines.append(f"- {test['summary']}")
    else:
        lines.append("\nOne run per technique: no spread and no test; use --repeats 3 or more.")
    return "\n".join(lines) + "\n"
