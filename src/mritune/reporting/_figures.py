"""Study figures as PNG files (Optuna's matplotlib helpers, Agg backend)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

__all__ = ["study_figures"]


def study_figures(study: optuna.Study, out: Path) -> list[tuple[Path, str]]:
    """Optimisation history, intermediate values (where trials were pruned), parameter
    importances and parallel coordinates; a figure that cannot be drawn (too few trials) is
    skipped, never fatal."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    made = []
    plots = [
        ("history", ovm.plot_optimization_history, "optimisation history (best value so far)"),
        ("intermediate", ovm.plot_intermediate_values, "value after every epoch; lines that stop early were pruned"),
        ("importance", ovm.plot_param_importances, "parameter importances (fANOVA)"),
        ("parallel", ovm.plot_parallel_coordinate, "parallel coordinates of the trials"),
    ]  # fmt: skip
    for name, fn, caption in plots:
        path = out / f"{study.study_name}_{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 4.5)
            fig.tight_layout()
            fig.savefig(path, dpi=90)
            plt.close(fig)
            made.append((path, f"{study.study_name}: {caption}"))
        except Exception:  # noqa: BLE001 - e.g. importances need >= 2 complete trials
            plt.close("all")
    return made
