"""``mritune report``: every number read from the storage and result files at report time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna

from mritune.evaluation import comparison_rows, cv_summary, run_record
from mritune.evaluation._compare import COMPARE_COLUMNS, summarise
from mritune.reporting._blocks import Block, Heading, Image, Table, Text, fmt, to_html, to_markdown
from mritune.reporting._figures import study_figures
from mritune.tuning import (
    TRIAL_COLUMNS,
    StudySpec,
    measured_on,
    normalize_url,
    open_storage,
    trial_rows,
)

__all__ = ["build_report", "write_report"]


def _studies(storage: str, names: list[str] | None) -> list[optuna.Study]:
    from mritune.errors import StorageError

    url = normalize_url(storage)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise StorageError(
            f"{url}: no such database; run mritune tune/compare/cv first or pass --storage"
        )
    st = open_storage(url, heartbeat=False)
    all_names = [s.study_name for s in optuna.get_all_study_summaries(st)]
    if not all_names:
        raise StorageError(f"no studies in {url}; run mritune tune/compare/cv first")
    if names:
        missing = [n for n in names if n not in all_names]
        if missing:
            from mritune.errors import StorageError

            raise StorageError(f"no study {', '.join(missing)} in {normalize_url(storage)}; "
                               f"studies there: {', '.join(all_names) or 'none'}")  # fmt: skip
    return [optuna.load_study(study_name=n, storage=st) for n in (names or all_names)]


def _data_section(data: str) -> list[Block]:
    from mritune.data import inspect

    d = inspect(data).to_dict()
    splits = list(d["counts"])
    rows = [[c] + [d["counts"][s].get(c, 0) for s in splits] for c in d["classes"]]
    blocks: list[Block] = [Heading("Data"), Text(f"`{d['root']}` ({d['layout']} layout): {d['n_images']} usable images, "
                           f"{len(d['problems'])} files skipped as unusable."),
                           Table(["class", *splits], rows, "images per split and class")]  # fmt: skip
    if d["problems"]:
        blocks.append(Table(["file", "reason"], [[p["path"], p["reason"]] for p in d["problems"][:30]],
                            "skipped files (first 30)"))  # fmt: skip
    dup = d["duplicates"]
    kinds = {k: sum(1 for x in d["leaked"] if x["kind"] == k) for k in ("exact", "near")}
    blocks.append(Text(
        f"Duplicates: {len(dup['exact'])} groups of byte-identical files, {len(dup['near'])} groups of near "
        f"duplicates (perceptual hash distance <= {dup['near_threshold']} of 64 bits). Leakage: "
        f"{len(d['leaked'])} test/validation images duplicate a training image ({kinds['exact']} exact, "
        f"{kinds['near']} near); test accuracy is also reported separately on leaked and novel images."
    ))  # fmt: skip
    return blocks


def build_report(
    storage: str, *, studies: list[str] | None = None, data: str | None = None,
    final: str | None = None, out: Path,
) -> tuple[list[Block], dict[str, Any]]:  # fmt: skip
    """Report blocks plus the plain numbers they show (for tests to compare with the storage)."""
    all_studies = _studies(storage, studies)
    tuning = [
        s for s in all_studies if "mritune_spec" in s.user_attrs and "nested_in" not in s.user_attrs
    ]
    compared = [s for s in tuning if "compare_prefix" in s.user_attrs]
    cvs = [s for s in all_studies if "mritune_cv" in s.user_attrs]
    numbers: dict[str, Any] = {"studies": {}, "cv": {}}
    blocks: list[Block] = [Heading("mritune report", 1)]
    specs = {s.study_name: json.loads(s.user_attrs["mritune_spec"]) for s in tuning}
    data = (
        data
        or next((sp["data"] for sp in specs.values()), None)
        or (cvs[0].user_attrs.get("data") if cvs else None)
    )
    if data:
        blocks += _data_section(data)
    models_trained = 0
    prefixes = sorted({s.user_attrs["compare_prefix"] for s in compared})
    for prefix in prefixes:
        members = sorted((s for s in compared if s.user_attrs["compare_prefix"] == prefix),
                         key=lambda s: s.user_attrs["compare_seed"])  # fmt: skip
        records: dict[str, list[dict[str, Any]]] = {}
        for s in members:
            records.setdefault(specs[s.study_name]["technique"], []).append(run_record(s))
        summary = summarise(records, prefix=prefix, storage=normalize_url(storage))
        blocks.append(Heading(f"Technique comparison ({prefix})"))
        sp0 = specs[members[0].study_name]

        blocks.append(Text(f"Each row is one study. Score: best trial's {sp0['metric']} on {measured_on(sp0)}; "
                           f"same data, split and trial budget for every technique."))  # fmt: skip
        blocks.append(Table(COMPARE_COLUMNS, comparison_rows(summary)))
        est_rows = []
        for tech, t in summary["techniques"].items():
            b = t["best"]
            est_rows.append([tech, len(t["runs"]), b and b["mean"], b and b["std"], b and b["ci_low"], b and b["ci_high"],
                             t["epochs_trained"]["mean"], t["pruned"]])  # fmt: skip
        blocks.append(Table(["technique", "runs (seeds)", "best score mean", "sd", "95% CI low", "95% CI high",
                             "epochs trained (mean)", "pruned trials"], est_rows, "per technique, over seeds"))  # fmt: skip
        tests = [t["summary"] for t in summary["tests"]]
        blocks.append(Text("\n".join(f"- {t}" for t in tests) if tests else
                           "One study per technique: no spread and no significance test (run compare --repeats 3)."))  # fmt: skip
    if tuning:
        blocks.append(Heading("Studies"))
        for s in tuning:
            sp = specs[s.study_name]
            rows = trial_rows(s)
            models_trained += len(rows) * max(1, sp.get("cv") or 1)
            rec = run_record(s)
            numbers["studies"][s.study_name] = {"best_value": rec["best_value"], "n_trials": len(rows),
                                                "complete": rec["complete"], "pruned": rec["pruned"]}  # fmt: skip
            blocks.append(Heading(f"Study {s.study_name}", 3))
            blocks.append(Text(
                f"Technique {sp['technique']}, sampler seed {sp['seed']}, {sp['n_trials']} trials wanted, metric "
                f"{sp['metric']} on {measured_on(sp)}. Pruner: min resource {sp['pruner']['min_resource']} "
                f"epoch(s), reduction factor {sp['pruner']['reduction_factor']}; steps are epochs trained. "
                f"Search space: {'; '.join(StudySpec.from_json(s.user_attrs['mritune_spec']).space.describe())}. Fixed: image size {sp['base']['img_size']} px, "
                f"pretrained {sp['base']['pretrained']}, lr {sp['base']['lr']}, freeze epochs {sp['base']['freeze_epochs']}."
            ))  # fmt: skip
            blocks.append(Table(TRIAL_COLUMNS, [[r[c] for c in TRIAL_COLUMNS] for r in rows]))
            if rec["best_value"] is not None:
                blocks.append(Text(f"Best: trial {rec['best_trial']}, {sp['metric']} {rec['best_value']:.4f}, "
                                   f"parameters {rec['params']}."))  # fmt: skip
            for path, caption in study_figures(s, out / "figures"):
                blocks.append(Image(path, caption))
    for s in cvs:
        cs = cv_summary(s)
        numbers["cv"][s.study_name] = cs["estimates"]
        models_trained += len(cs["folds"])
        st = cs["settings"]
        blocks.append(Heading(f"Cross-validation: {s.study_name}"))
        grouped = (
            "grouped by duplicate groups"
            if cs["grouped_by_duplicates"]
            else "not grouped (no duplicates found or --no-grouped)"
        )
        blocks.append(Text(f"Stratified {st['folds']}-fold CV of Training/, {st['repeats']} repeat(s) (seeds "
                           f"{st['seed']}..{st['seed'] + st['repeats'] - 1}), {grouped}. Configuration: "
                           f"{ {k: st['config'][k] for k in ('arch', 'wd', 'epochs', 'bs', 'drop', 'img_size', 'pretrained')} }."))  # fmt: skip
        classes = cs["classes"]
        blocks.append(Table(["repeat", "fold", "n", "accuracy", "balanced accuracy", "macro-F1", *[f"recall {c}" for c in classes]],
                            [[f["repeat"], f["fold"], f["n"], f["accuracy"], f["balanced_accuracy"], f["macro_f1"],
                              *[f["recall"][c] for c in classes]] for f in cs["folds"]]))  # fmt: skip
        blocks.append(Table(["metric", "mean", "sd", "95% CI low", "95% CI high", "interval over"],
                            [[k, e["mean"], e["std"], e["ci_low"], e["ci_high"], e["over"]] for k, e in cs["estimates"].items()],
                            "Student-t 95% confidence interval, clipped to [0, 1]"))  # fmt: skip
        if not cs["complete"]:
            blocks.append(
                Text(f"Incomplete: {len(cs['folds'])} of {cs['n_folds_expected']} folds done.")
            )
        if cs.get("nested"):
            blocks.append(Table(["repeat", "fold", "chosen configuration (inner study)"],
                                [[f["repeat"], f["fold"], f.get("config")] for f in cs["folds"]],
                                f"nested CV: each outer fold tuned by {cs['nested']}"))  # fmt: skip
        else:
            blocks.append(Text("This CV scores a configuration chosen by tuning on the same Training/ data, so it "
                               "is optimistic; `mritune cv --nested` estimates tune-then-train without that bias."))  # fmt: skip
    if final:
        blocks += _final_section(Path(final), out)
        models_trained += 1
    blocks.append(Heading("How these numbers were obtained"))
    blocks.append(Text(
        f"Read from {normalize_url(storage)} and result files when this report was written; nothing was typed in. "
        f"Models trained in all: {models_trained} (trials x folds, CV folds, the final model). "
        f"Validation scores (tuning, CV) come from Training/ only; only the final model touches Testing/."
    ))  # fmt: skip
    from mritune.engine import library_versions

    fps = sorted({s.user_attrs.get("data_fingerprint") for s in all_studies} - {None})
    blocks.append(Table(["item", "value"], [["data fingerprint", ", ".join(fps)]] +
                        [[k, v] for k, v in library_versions().items()]))  # fmt: skip
    numbers["models_trained"] = models_trained
    return blocks, numbers


def _final_section(final: Path, out: Path) -> list[Block]:
    from mritune.errors import BundleError

    if not (final / "model.json").is_file():
        raise BundleError(f"{final}: no model.json; --final takes the folder `mritune final` wrote")
    meta = json.loads((final / "model.json").read_text())
    blocks: list[Block] = [Heading("Final model on Testing/")]
    hp = meta["hyperparameters"]
    blocks.append(Text(f"Trained on all of Training/ ({meta['split']['train']} images): {meta['arch']}, wd {fmt(hp['wd'])}, "
                       f"epochs {hp['epochs']}, bs {hp['bs']}, drop {fmt(hp['drop'])}, {meta['img_size']} px."))  # fmt: skip
    mpath = final / "test" / "metrics.json"
    if not mpath.exists():
        return blocks + [Text("No Testing/ split was available: the final model is untested.")]
    m = json.loads(mpath.read_text())
    from mritune.evaluation import wilson_interval

    lo, hi = wilson_interval(round(m["accuracy"] * m["n"]), m["n"])
    blocks.append(Text(f"Testing/ (n={m['n']}): accuracy {m['accuracy']:.4f} (95% Wilson CI {lo:.3f}–{hi:.3f}), balanced "
                       f"accuracy {m['balanced_accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, macro AUROC "
                       f"{fmt(m['macro_auroc'])}, expected calibration error {m['ece']:.4f}."))  # fmt: skip
    blocks.append(Table(["class", "precision", "recall (sensitivity)", "specificity", "F1", "AUROC", "n"],
                        [[c, v["precision"], v["recall"], v["specificity"], v["f1"], v["auroc"], v["support"]]
                         for c, v in m["per_class"].items()]))  # fmt: skip
    if "leaked" in m:
        blocks.append(Table(["test images", "n", "accuracy"], [[k, m[k]["n"], m[k]["accuracy"]] for k in ("leaked", "novel")],
                            "test images that duplicate a training image vs novel ones"))  # fmt: skip
    cm = final / "test" / "confusion_matrix.png"
    if cm.exists():
        blocks.append(Image(cm, "confusion matrix on Testing/"))
    return blocks


def write_report(storage: str, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    blocks, numbers = build_report(storage, out=out, **kwargs)
    (out / "report.md").write_text(to_markdown(blocks, out))
    (out / "report.html").write_text(to_html(blocks, "mritune report"))
    (out / "numbers.json").write_text(json.dumps(numbers, indent=2, default=float))
    return {"md": out / "report.md", "html": out / "report.html", "numbers": numbers}
