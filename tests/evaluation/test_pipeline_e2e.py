"""Shortened end-to-end pass through the CLI on tiny generated data: compare -> cv -> final ->
report; the report's numbers must equal what the storage holds."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from mritune.cli.main import main
from mritune.data import generate_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    generate_demo(data, train_per_class=9, test_per_class=3, size=40, seed=3)
    storage = f"sqlite:///{root / 'studies.db'}"
    space = root / "space.toml"  # the tiny architecture keeps this CPU test short
    space.write_text(
        '[arch]\ntype = "categorical"\nchoices = ["tiny"]\n'
        '[wd]\ntype = "log-float"\nlow = 1e-5\nhigh = 1e-2\n'
        '[epochs]\ntype = "int"\nlow = 1\nhigh = 3\n'
        '[drop]\ntype = "float"\nlow = 0.2\nhigh = 0.4\n'
    )
    cache = str(root / "cache")
    common = ["--storage", storage, "--cache-dir", cache]
    rc = main(["compare", str(data), "--techniques", "random,tpe-sh", "--trials", "2", "--repeats",
               "2", "--preset", "quick", "--img-size", "32", "--space", str(space), "--out", str(root / "compare"), *common])  # fmt: skip
    assert rc == 0
    best = root / "compare" / "best.json"
    assert main(["cv", str(data), "--params", str(best), "--folds", "2", "--cv-study", "cv-e2e",
                 "--out", str(root / "cv"), "--storage", storage, "--cache-dir", cache]) == 0  # fmt: skip
    assert main(["final", str(data), "--params", str(best), "--out", str(root / "model"),
                 "--cache-dir", cache]) == 0  # fmt: skip
    assert main(["report", "--storage", storage, "--data", str(data), "--final",
                 str(root / "model"), "--out", str(root / "report")]) == 0  # fmt: skip
    return root, storage


def test_pipeline_writes_every_file(pipeline):
    root, _ = pipeline
    for rel in ["compare/compare.md", "compare/compare.json", "compare/best.json",
                "cv/cv.json", "cv/folds.csv", "cv/oof_predictions.csv", "cv/oof_confusion_matrix.png",
                "model/model.json", "model/model.safetensors", "model/test/metrics.json",
                "report/report.md", "report/report.html"]:  # fmt: skip
        assert (root / rel).is_file(), rel
    html = (root / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert "Technique comparison" in html and "Cross-validation" in html


def test_report_numbers_equal_the_storage(pipeline):
    root, storage = pipeline
    numbers = json.loads((root / "report" / "numbers.json").read_text())
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    tuning = [n for n in names if n.startswith("compare-")]
    assert sorted(numbers["studies"]) == sorted(tuning)
    for name in tuning:
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        got = numbers["studies"][name]
        assert got["n_trials"] == len(study.trials)
        assert got["complete"] == len(complete)
        assert got["best_value"] == pytest.approx(max(t.value for t in complete))
        md = (root / "report" / "report.md").read_text()
        assert f"Study {name}" in md
    cv = optuna.load_study(study_name="cv-e2e", storage=storage)
    accs = [
        t.user_attrs["metrics"]["accuracy"] for t in cv.get_trials(states=(TrialState.COMPLETE,))
    ]
    assert len(accs) == 2
    assert numbers["cv"]["cv-e2e"]["accuracy"]["mean"] == pytest.approx(sum(accs) / 2)


def test_cv_resume_trains_nothing_more(pipeline):
    root, storage = pipeline
    cv = optuna.load_study(study_name="cv-e2e", storage=storage)
    before = len(cv.trials)
    assert main(["cv", str(root / "data"), "--params", str(root / "compare" / "best.json"),
                 "--folds", "2", "--cv-study", "cv-e2e", "--out", str(root / "cv2"),
                 "--storage", storage, "--cache-dir", str(root / "cache")]) == 0  # fmt: skip
    assert len(optuna.load_study(study_name="cv-e2e", storage=storage).trials) == before


def test_compare_states_the_paired_test(pipeline):
    root, _ = pipeline
    summary = json.loads((root / "compare" / "compare.json").read_text())
    assert summary["repeats"] == 2
    assert len(summary["tests"]) == 1 and "p=" in summary["tests"][0]["summary"]
    for tech in ("random", "tpe-sh"):
        assert len(summary["techniques"][tech]["runs"]) == 2
