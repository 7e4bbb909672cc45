"""Cross-validation of one configuration; folds are trials of a CV study in the storage, so extra
workers can take folds and an interrupted run resumes where it stopped."""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from mritune.config import TrainConfig
from mritune.data import data_fingerprint, kfold, originals
from mritune.engine import Prepared, classification_metrics, fit, plot_confusion_matrix, prepare
from mritune.errors import ConfigError, TuningError
from mritune.evaluation._stats import mean_ci
from mritune.tuning import normalize_url, open_storage

__all__ = ["CVSpec", "run_cv", "cv_summary", "params_from"]


@dataclasses.dataclass(frozen=True)
class CVSpec:
    data: str
    config: TrainConfig
    folds: int = 5
    repeats: int = 1
    grouped: bool = True
    seed: int = 0
    study: str = "cv"
    storage: str = ""
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"folds is {self.folds}, but must be folds >= 2")
        if self.repeats < 1:
            raise ConfigError(f"repeats is {self.repeats}, but must be repeats >= 1")


def params_from(best_json: str | None = None, study: str | None = None, storage: str = "") -> dict:
    """Tuned parameters and the study's base settings, from ``best.json`` or a study."""
    if best_json:
        try:
            best = json.loads(Path(best_json).read_text())
            return {"params": best["params"], "base": best.get("base") or {}, "source": best_json}
        except FileNotFoundError:
            raise ConfigError(
                f"{best_json}: no such file; pass the best.json `mritune tune` wrote"
            ) from None
        except (json.JSONDecodeError, KeyError) as exc:
            raise ConfigError(
                f"{best_json}: not a best.json written by mritune tune ({exc})"
            ) from None
    if study:
        from mritune.tuning import load_study

        st = load_study(study, storage)
        try:
            best = st.best_trial
        except ValueError:
            raise TuningError(f"study '{study}' has no completed trial yet") from None
        spec = json.loads(st.user_attrs.get("mritune_spec", "{}"))
        return {"params": best.params, "base": spec.get("base") or {}, "source": f"study {study}"}
    raise ConfigError("give --params best.json or --study NAME")


def _fold_plan(
    prep: Prepared, spec: CVSpec
) -> tuple[list[tuple[int, int, np.ndarray, np.ndarray]], bool]:
    m = prep.manifest
    pool = prep.cache.usable(m.indices("train"))  # augmented variants train, never score
    groups = prep.groups
    has_dups = len(np.unique(groups[pool])) < len(pool)
    use_groups = groups if (spec.grouped and has_dups) else None
    plan = []
    for r in range(spec.repeats):
        for k, (tr, te) in enumerate(
            kfold(pool, m.labels, n_splits=spec.folds, seed=spec.seed + r, groups=use_groups)
        ):
            plan.append((r, k, tr, originals(m, te)))
    return plan, use_groups is not None


def run_cv(
    spec: CVSpec,
    *,
    fit_fn: Callable[..., Any] = fit,
    prepared: Prepared | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[int, dict], bool] | None = None,
    config_for: Callable[[int, int, np.ndarray], TrainConfig] | None = None,
) -> optuna.Study:
    """Run (or resume) every fold of every repeat that is not complete yet.

    ``config_for(repeat, fold, train_idx)`` chooses the configuration per fold (nested CV tunes it
    on the fold's training part); by default every fold trains ``spec.config``.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    prep = prepared or prepare(spec.data, spec.config.img_size, cache_dir=spec.cache_dir)
    plan, grouped = _fold_plan(prep, spec)
    url = normalize_url(spec.storage)
    study = optuna.create_study(study_name=spec.study, storage=open_storage(url),
                                direction="maximize", load_if_exists=True)  # fmt: skip
    ident = {"config": spec.config.to_dict(), "folds": spec.folds, "repeats": spec.repeats,
             "grouped": spec.grouped, "seed": spec.seed}  # fmt: skip
    ident["config"].pop("device")
    fp = data_fingerprint(prep.manifest)
    if "mritune_cv" in study.user_attrs:
        old = json.loads(study.user_attrs["mritune_cv"])
        old["config"].pop("device", None)
        if old != ident or study.user_attrs.get("data_fingerprint") != fp:
            raise TuningError(
                f"CV study '{spec.study}' exists with other settings or data; pick a new --study"
            )
    else:
        study.set_user_attr("mritune_cv", json.dumps(ident))
        study.set_user_attr("data_fingerprint", fp)
        study.set_user_attr("data", spec.data)
        study.set_user_attr("grouped_by_duplicates", grouped)
        study.set_user_attr("classes", prep.manifest.classes)
        if config_for is not None:
            study.set_user_attr("nested", getattr(config_for, "description", "nested"))
    n = len(plan)

    def objective(trial: optuna.Trial) -> float:
        fid = trial.suggest_int("fold_id", 0, n - 1)
        taken = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.params.get("fold_id") == fid and t.number != trial.number]  # fmt: skip
        if taken:
            raise TuningError(f"not run: fold {fid} is done or running elsewhere")
        r, k, tr, te = plan[fid]
        t0 = time.perf_counter()
        try:
            cfg = config_for(r, k, tr) if config_for else spec.config
            res = fit_fn(prep.cache, tr, te, cfg, on_epoch)
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise
        trial.set_user_attr(
            "config", {key: getattr(cfg, key) for key in ("arch", "wd", "epochs", "bs", "drop")}
        )
        y = prep.manifest.labels[res.valid_idx]
        met = classification_metrics(y, res.probs, prep.manifest.classes)
        trial.set_user_attr("repeat", r)
        trial.set_user_attr("fold", k)
        trial.set_user_attr("n_train", int(len(tr)))
        trial.set_user_attr("metrics", {key: met[key] for key in ("n", "accuracy", "balanced_accuracy", "macro_f1")}
                            | {"recall": {c: v["recall"] for c, v in met["per_class"].items()}})  # fmt: skip
        trial.set_user_attr("oof_index", [int(i) for i in res.valid_idx])
        trial.set_user_attr("oof_probs", np.round(res.probs, 5).tolist())
        trial.set_user_attr("epochs_trained", res.epochs_trained)
        trial.set_user_attr("duration", round(time.perf_counter() - t0, 3))
        if on_fold:
            on_fold(
                {
                    "repeat": r,
                    "fold": k,
                    "accuracy": met["accuracy"],
                    "done": _done(study) + 1,
                    "total": n,
                }
            )
        return float(met["accuracy"])

    while True:
        fail_stale_trials(study)
        done_ids = {
            t.params["fold_id"]
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        }
        if len(done_ids) >= n:
            break
        busy = {t.params.get("fold_id") for t in study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))}  # fmt: skip
        todo = [i for i in range(n) if i not in done_ids and i not in busy]
        if not todo:
            if not any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
                time.sleep(1.0)  # other workers hold the remaining folds
                continue
        else:
            study.enqueue_trial({"fold_id": todo[0]}, skip_if_exists=False)
        study.optimize(objective, n_trials=1, catch=(Exception,))
        last = study.get_trials(deepcopy=False)[-1]
        reason = last.user_attrs.get("fail_reason") or last.system_attrs.get("fail_reason")
        if last.state == TrialState.FAIL and not str(reason).startswith("not run"):
            fails = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]
            if len(fails) >= 3 * n:
                raise TuningError(f"cross-validation folds keep failing: {reason}")
    return study


def _done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def cv_summary(study: optuna.Study) -> dict[str, Any]:
    """Per-fold table, mean ± sd and 95% CI per metric, out-of-fold predictions — from the storage."""
    ident = json.loads(study.user_attrs["mritune_cv"])
    classes = study.user_attrs.get("classes", [])
    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: t.params["fold_id"])  # fmt: skip
    seen: set[int] = set()
    folds = []
    for t in trials:
        if t.params["fold_id"] in seen:
            continue
        seen.add(t.params["fold_id"])
        folds.append({"repeat": t.user_attrs["repeat"], "fold": t.user_attrs["fold"], **t.user_attrs["metrics"],
                      "epochs_trained": t.user_attrs.get("epochs_trained"),
                      "duration": t.user_attrs.get("duration"), "trial": t.number,
                      "config": t.user_attrs.get("config")})  # fmt: skip
    # Folds of one repeat share images, and so do repeats: with R > 1 repeats the interval is
    # taken over the R repeat means (not over K x R folds, which would pretend to be independent).
    repeats = sorted({f["repeat"] for f in folds})
    est = {}
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        if len(repeats) > 1:
            vals = [float(np.mean([f[key] for f in folds if f["repeat"] == r])) for r in repeats]
            over = f"{len(repeats)} repeat means of {ident['folds']} folds each"
        else:
            vals, over = [f[key] for f in folds], f"{len(folds)} folds"
        e = mean_ci(vals).to_dict() | {"over": over}
        if e["ci_low"] is not None:  # these metrics live in [0, 1]; so does their interval
            e["ci_low"], e["ci_high"] = max(0.0, e["ci_low"]), min(1.0, e["ci_high"])
        est[key] = e
    oof = []
    for t in trials:
        for i, p in zip(t.user_attrs["oof_index"], t.user_attrs["oof_probs"]):
            oof.append((t.user_attrs["repeat"], i, p))
    return {"study": study.study_name, "settings": ident, "nested": study.user_attrs.get("nested"), "classes": classes, "folds": folds,
            "estimates": est, "grouped_by_duplicates": study.user_attrs.get("grouped_by_duplicates"),
            "data": study.user_attrs.get("data"), "data_fingerprint": study.user_attrs.get("data_fingerprint"),
            "n_folds_expected": ident["folds"] * ident["repeats"],
            "complete": len(folds) == ident["folds"] * ident["repeats"], "oof": oof}  # fmt: skip


def write_cv_outputs(
    summary: dict[str, Any], labels: np.ndarray, paths: list[str], out: Path
) -> dict[str, Path]:
    """``cv.json``, ``folds.csv``, ``oof_predictions.csv``, ``oof_confusion_matrix.png``."""
    out.mkdir(parents=True, exist_ok=True)
    classes = summary["classes"]
    files = {"json": out / "cv.json", "folds": out / "folds.csv", "oof": out / "oof_predictions.csv",
             "cm": out / "oof_confusion_matrix.png"}  # fmt: skip
    with open(files["folds"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["repeat", "fold", "n", "accuracy", "balanced_accuracy", "macro_f1"]
            + [f"recall_{c}" for c in classes]
        )
        for f in summary["folds"]:
            w.writerow([f["repeat"], f["fold"], f["n"], f["accuracy"], f["balanced_accuracy"], f["macro_f1"]]
                       + [f["recall"][c] for c in classes])  # fmt: skip
    with open(files["oof"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["repeat", "path", "label", "prediction"] + [f"prob_{c}" for c in classes])
        for r, i, p in sorted(summary["oof"], key=lambda x: (x[0], x[1])):
            w.writerow([r, paths[i], classes[labels[i]], classes[int(np.argmax(p))]] + list(p))
    oof0 = [(i, p) for r, i, p in summary["oof"] if r == 0]
    y = np.array([labels[i] for i, _ in oof0])
    probs = np.array([p for _, p in oof0], dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    met = classification_metrics(y, probs, classes)
    summary = {k: v for k, v in summary.items() if k != "oof"} | {"oof_metrics": met}
    plot_confusion_matrix(np.array(met["confusion_matrix"]), classes, files["cm"],
                          title=f"out-of-fold confusion matrix (repeat 0, n={met['n']})")  # fmt: skip
    files["json"].write_text(json.dumps(summary, indent=2, default=float))
    return files
