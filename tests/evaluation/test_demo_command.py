"""`mritune demo` (what `make demo` runs) end to end, shortened: every step runs and the report
exists where the command says."""

from __future__ import annotations

import pytest

from mritune.cli.main import main

pytestmark = pytest.mark.slow


def test_demo_runs_every_step_and_prints_the_report_path(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--trials", "1", "--repeats", "1", "--folds", "2",
               "--train-per-class", "10", "--test-per-class", "3", "--size", "48"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert report.is_file()
    assert str(report.resolve()) in printed.replace("\n", "")
    assert len(list((out / "gradcam").glob("*.png"))) == 8  # 2 test images x 4 classes
    assert (out / "predictions.csv").read_text().count("\n") == 9
    assert (out / "cv" / "cv.json").is_file() and (out / "model" / "model.safetensors").is_file()
