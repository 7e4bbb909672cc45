"""``mritune tune`` and ``mritune techniques``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mritune.cli._common import console, progress_bar, table


def add_study_options(
    p: argparse.ArgumentParser, *, trials_default: int | None = None, with_cv: bool = True
) -> None:
    t = p.add_argument_group("tuning")
    t.add_argument("--trials", type=int, default=trials_default,
                   help="finished trials wanted (preset: reference 10, quick 6)")  # fmt: skip
    t.add_argument(
        "--timeout", type=float, metavar="S", help="stop starting trials after S seconds"
    )
    t.add_argument("--space", metavar="FILE", help="TOML search space (default: the preset's)")
    t.add_argument("--preset", choices=["reference", "quick"], default="reference",
                   help="reference: the notebook's study (224px, pretrained ResNets, 10 trials); "
                   "quick: CPU demo size (64px, tiny/resnet18, no pretrained weights)")  # fmt: skip
    t.add_argument("--metric", choices=["accuracy", "balanced_accuracy", "macro_f1"],
                   default="accuracy", help="validation metric maximised (accuracy)")  # fmt: skip
    if with_cv:
        t.add_argument("--cv", type=int, default=0, metavar="K",
                       help="score each trial by K-fold CV instead of a holdout")  # fmt: skip
    t.add_argument("--seed", type=int, default=0, help="sampler and split seed (0)")
    t.add_argument("--min-resource", type=int, default=1, help="pruner: first rung, epochs (1)")
    t.add_argument("--reduction-factor", type=int, default=3, help="pruner: keep 1/F per rung (3)")
    m = p.add_argument_group("model overrides (default: the preset's)")
    m.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None)
    m.add_argument("--weights", metavar="FILE", help="local backbone state dict")
    m.add_argument("--img-size", type=int, help="image side in px")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    m.add_argument("--threads", type=int, default=0, help="CPU threads per worker (0 = all)")
    s = p.add_argument_group("storage and output")
    s.add_argument("--storage", metavar="URL",
                   help="sqlite:///runs/mritune.db (default), postgresql://..., journal:FILE.log")  # fmt: skip
    s.add_argument("--out", metavar="DIR", help="output folder (runs/<study>)")
    s.add_argument("--cache-dir", metavar="DIR", help="image cache folder (runs/cache)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="run (or resume) a hyperparameter study")
    p.add_argument("data", help="dataset folder or CSV manifest")
    p.add_argument("--technique", default="tpe-sh", help="see `mritune techniques` (tpe-sh)")
    p.add_argument("--study", help="study name (default: <technique>-<preset>)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes here (default 1; one per GPU with CUDA)")  # fmt: skip
    add_study_options(p)
    p.set_defaults(func=run_tune)

    t = sub.add_parser("techniques", help="list tuning techniques")
    t.set_defaults(func=run_techniques)


def build_spec(
    args: argparse.Namespace, technique: str, study: str, seed: int | None = None
) -> Any:
    from mritune.tuning import PrunerSettings, StudySpec, load_space, preset

    space, base, extra = preset(args.preset, technique)
    if args.space:
        space = load_space(args.space)
    over: dict[str, Any] = {"device": args.device, "workers": args.threads}
    if args.pretrained is not None:
        over["pretrained"] = args.pretrained
    if args.weights:
        over["weights"] = args.weights
    if args.img_size is not None:
        over["img_size"] = args.img_size
    return StudySpec(
        data=str(Path(args.data).resolve()), study=study, storage=args.storage or "",
        technique=technique, n_trials=extra["n_trials"] if args.trials is None else args.trials, space=space,
        base=base.replace(**over), metric=args.metric, cv=getattr(args, "cv", 0),
        split=extra["split"] if not getattr(args, "cv", 0) else "stratified", valid_pct=extra["valid_pct"],
        seed=args.seed if seed is None else seed, timeout=args.timeout, cache_dir=args.cache_dir,
        pruner=PrunerSettings(min_resource=args.min_resource, reduction_factor=args.reduction_factor),
    )  # fmt: skip


class StudyProgress:
    """Live line: trials finished / N, best so far, current trial and epoch."""

    def __init__(self, update: Any, n_trials: int, done: int) -> None:
        self.update, self.n, self.done = update, n_trials, done
        self.best: float | None = None
        self.current = ""
        self.update(done, n_trials, "")

    def _info(self) -> str:
        best = f"best {self.best:.4f}" if self.best is not None else "best -"
        return f"{best}  {self.current}"

    def event(self, e: dict[str, Any]) -> None:
        if e["kind"] == "trial":
            self.max_epochs = e["max_epochs"]
            self.current = f"trial {e['number']}: starting"
        elif e["kind"] == "epoch":
            self.current = (
                f"trial {e['number']}: epoch {e['step']}/{self.max_epochs} value {e['value']:.4f}"
            )
        elif e["kind"] == "end":
            self.done = e["finished"]
            if e["state"] == "COMPLETE" and e["value"] is not None:
                self.best = max(self.best or float("-inf"), e["value"])
            self.current = f"trial {e['number']} {e['state'].lower()}"
        self.update(self.done, self.n, self._info())

    def poll(self, study: Any) -> None:
        from optuna.trial import TrialState

        from mritune.tuning import finished_count

        self.done = finished_count(study)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if done:
            self.best = max(t.value for t in done)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self.current = ", ".join(f"trial {t.number} epoch {t.last_step or 0}" for t in running)
        self.update(self.done, self.n, self._info())


def execute_study(spec: Any, workers: int | None, *, label: str | None = None) -> Any:
    """Run a study with a progress bar; returns the optuna study."""
    from mritune.tuning import finished_count, load_study, run_study

    if workers is None:
        import torch

        workers = torch.cuda.device_count() if spec.base.device in ("auto", "cuda") else 1
        workers = max(1, workers)
    try:
        done = finished_count(load_study(spec.study, spec.storage))
    except Exception:  # noqa: BLE001 - a new study
        done = 0
    with progress_bar(label or f"{spec.technique} trials") as update:
        prog = StudyProgress(update, spec.n_trials, done)
        return run_study(spec, workers=workers, on_event=prog.event, on_poll=prog.poll)


def print_study(study: Any, spec: Any, out: Path) -> None:
    from mritune.tuning import TRIAL_COLUMNS, normalize_url, trial_rows, write_trials

    paths = write_trials(study, out, normalize_url(spec.storage))
    rows = trial_rows(study)
    console.print(table(f"study {study.study_name} ({spec.technique}, {spec.metric})",
                        TRIAL_COLUMNS, [[r[c] for c in TRIAL_COLUMNS] for r in rows]))  # fmt: skip
    if "best" in paths:
        b = study.best_trial
        console.print(f"best: trial {b.number}, {spec.metric} {b.value:.4f}, params {b.params}")
    else:
        console.print("[yellow]no trial completed[/]")
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")


def run_tune(args: argparse.Namespace) -> int:
    from mritune.errors import ConfigError
    from mritune.tuning import normalize_url

    study_name = f"{args.technique}-{args.preset}" if args.study is None else args.study
    if not study_name.strip():
        raise ConfigError("--study is empty; give a name or leave the option out")
    spec = build_spec(args, args.technique, study_name)
    out = Path(args.out or f"runs/{study_name}")
    console.print(
        f"study {study_name}: {spec.technique}, {spec.n_trials} trials, metric {spec.metric}, "
        f"storage {normalize_url(spec.storage)}"
    )
    study = execute_study(spec, args.workers)
    print_study(study, spec, out)
    return 0


def run_techniques(args: argparse.Namespace) -> int:
    from mritune.tuning import list_techniques

    console.print(table("tuning techniques", ["name", "pruning", "description"],
                        [[t.name, "yes" if t.prunes else "no", t.description]
                         for t in list_techniques()]))  # fmt: skip
    return 0
