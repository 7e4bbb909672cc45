"""Trial tables in the reference's shape, and ``best.json``, read from the storage."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = [
    "trial_rows",
    "best_summary",
    "write_trials",
    "markdown_table",
    "measured_on",
    "TRIAL_COLUMNS",
]

TRIAL_COLUMNS = [
    "Trial", "Best Score", "Architecture", "Weight Decay", "Epochs", "Batch Size", "Drop",
    "State", "Epochs Trained", "Duration",
]  # fmt: skip


def _fmt_num(v: Any, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per trial (raw values, not strings), in trial order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        p = t.params
        rows.append({
            "Trial": t.number,
            "Best Score": t.value,
            "Architecture": p.get("arch"),
            "Weight Decay": p.get("wd"),
            "Epochs": p.get("epochs"),
            "Batch Size": p.get("bs"),
            "Drop": p.get("drop"),
            "State": t.state.name,
            "Epochs Trained": t.user_attrs.get("epochs_trained"),
            "Duration": t.user_attrs.get("duration"),
            "Fail Reason": t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason"),
            "params": dict(p),
        })  # fmt: skip
    return rows


def markdown_table(columns: list[str], rows: list[list[Any]], bold_row: int | None = None) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for k, r in enumerate(rows):
        cells = [_fmt_num(v) for v in r]
        if k == bold_row:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_summary(study: optuna.Study, storage: str) -> dict[str, Any] | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return None
    best = study.best_trial
    attrs = study.user_attrs
    spec = json.loads(attrs.get("mritune_spec", "{}"))
    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    return {
        "study": study.study_name,
        "storage": storage,
        "technique": spec.get("technique"),
        "metric": spec.get("metric"),
        "measured_on": measured_on(spec),
        "value": best.value,
        "trial": best.number,
        "params": best.params,
        "base": spec.get("base"),
        "epochs_trained": best.user_attrs.get("epochs_trained"),
        "fold_values": best.user_attrs.get("fold_values"),
        "data": spec.get("data"),
        "data_fingerprint": attrs.get("data_fingerprint"),
        "trials": counts,
    }


def measured_on(spec: dict[str, Any]) -> str:
    if spec.get("cv"):
        return f"mean of {spec['cv']}-fold stratified cross-validation over Training/"
    if spec.get("split") == "reference":
        return "the reference's RandomSplitter(valid_pct=0.2, seed=42) holdout of Training/"
    return f"a stratified, duplicate-grouped {spec.get('valid_pct', 0.2):.0%} holdout of Training/"


def write_trials(study: optuna.Study, out: Path, storage: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    paths = {"csv": out / "trials.csv", "md": out / "trials.md", "best": out / "best.json"}
    tmp = out / ".trials.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TRIAL_COLUMNS + ["Fail Reason"])
        for r in rows:
            w.writerow([r[c] if r[c] is not None else "" for c in TRIAL_COLUMNS + ["Fail Reason"]])
    os.replace(tmp, paths["csv"])
    best = best_summary(study, storage)
    best_row = next((k for k, r in enumerate(rows) if best and r["Trial"] == best["trial"]), None)
    md = [f"# Study {study.study_name}\n"]
    if best:
        md.append(f"Scores are {best['metric']} on {best['measured_on']}.\n")
    md.append(
        markdown_table(TRIAL_COLUMNS, [[r[c] for c in TRIAL_COLUMNS] for r in rows], best_row)
    )
    paths["md"].write_text("\n".join(md))
    if best:
        paths["best"].write_text(json.dumps(best, indent=2, default=str))
    else:
        paths.pop("best")
    return paths
