"""``mritune train | evaluate | predict | archs`` end to end on a tiny generated dataset."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from mritune.engine import get_arch

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def _error_line(err: str, command: str) -> str:
    """The one line ``mritune COMMAND: error: ...`` that the CLI prints for a user error."""
    lines = [line for line in err.splitlines() if line.startswith(f"mritune {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _check_metrics(m: dict, n: int) -> None:
    assert m["n"] == n
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece"):
        assert 0.0 <= m[k] <= 1.0, k
    assert m["macro_auroc"] is None or 0.0 <= m["macro_auroc"] <= 1.0
    assert list(m["per_class"]) == CLASSES
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == n
    assert m["accuracy"] == pytest.approx(np.trace(cm) / n)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _check_prediction_rows(header: list[str], rows: list[dict[str, str]]) -> None:
    assert header == ["path", "prediction", *[f"prob_{c}" for c in CLASSES]]
    for r in rows:
        probs = [float(r[f"prob_{c}"]) for c in CLASSES]
        assert all(0.0 <= p <= 1.0 for p in probs)
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert r["prediction"] == CLASSES[int(np.argmax(probs))]


# --- train ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_writes_a_bundle_and_test_metrics(tiny_bundle):
    assert (tiny_bundle / "model.safetensors").is_file()
    assert (tiny_bundle / "model.json").is_file()
    assert (tiny_bundle / "test" / "confusion_matrix.png").is_file()
    metrics = json.loads((tiny_bundle / "test" / "metrics.json").read_text())
    _check_metrics(metrics, n=16)
    history = json.loads((tiny_bundle / "model.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1]


@pytest.mark.slow
def test_train_prints_validation_and_test_results(demo_data, tmp_path, run_cli, make_train_args):
    rc, out, err = run_cli(*make_train_args(demo_data, tmp_path / "m", "--epochs", "1"))
    assert rc == 0, err
    assert "training tiny (random init) at 32px, 1 epochs, bs 8" in out
    assert "validation holdout (stratified) (n=8)" in out
    assert "Testing/ split (n=16)" in out
    assert f"model bundle written to {tmp_path / 'm'}" in out


@pytest.mark.slow
@pytest.mark.parametrize("split", ["none", "reference"])
def test_train_with_other_splits(demo_data, tmp_path, run_cli, make_train_args, split):
    out_dir = tmp_path / "m"
    rc, out, err = run_cli(*make_train_args(demo_data, out_dir, "--epochs", "1", "--split", split))
    assert rc == 0, err
    meta = json.loads((out_dir / "model.json").read_text())
    assert meta["split"]["split"] == split
    if split == "none":
        assert meta["split"] == {"train": 40, "valid": 0, "split": "none"}
        assert "validation holdout" not in out
    else:
        assert meta["split"]["train"] + meta["split"]["valid"] == 40
        assert meta["split"]["valid"] == 8
    _check_metrics(json.loads((out_dir / "test" / "metrics.json").read_text()), n=16)


@pytest.mark.slow
def test_resnet18_trains_evaluates_and_predicts_with_gradcam(
    demo_data, tmp_path, run_cli, make_train_args
):
    model = tmp_path / "r18"
    rc, _, err = run_cli(*make_train_args(demo_data, model, "--epochs", "1", arch="resnet18"))
    assert rc == 0, err
    meta = json.loads((model / "model.json").read_text())
    assert meta["arch"] == "resnet18" and meta["hyperparameters"]["pretrained"] is False

    rc, out, err = run_cli(
        "evaluate", model, demo_data, "--json", tmp_path / "eval.json", "--device", "cpu"
    )
    assert rc == 0, err
    _check_metrics(json.loads((tmp_path / "eval.json").read_text()), n=16)
    assert (tmp_path / "confusion_matrix.png").is_file()  # beside --json when --out is absent

    cams = tmp_path / "cams"
    folder = demo_data / "Testing" / "glioma"
    rc, out, err = run_cli(
        "predict", model, folder, "--csv", tmp_path / "p.csv", "--cam", cams, "--device", "cpu"
    )
    assert rc == 0, err
    header, rows = _read_csv(tmp_path / "p.csv")
    _check_prediction_rows(header, rows)
    assert len(rows) == 4
    pngs = sorted(cams.glob("*.png"))
    assert len(pngs) == 4
    assert all(Image.open(p).size == (32, 32) and Image.open(p).mode == "RGB" for p in pngs)


@pytest.mark.slow
def test_train_from_a_state_dict_file_with_weights(demo_data, tmp_path, run_cli, make_train_args):
    weights = tmp_path / "tiny-init.pth"
    torch.save(get_arch("tiny").make().state_dict(), weights)
    out_dir = tmp_path / "m"
    rc, out, err = run_cli(
        *make_train_args(demo_data, out_dir, "--weights", str(weights), "--epochs", "1")
    )
    assert rc == 0, err
    expected = f"training tiny (weights from {weights}) at 32px, 2 epochs"  # frozen + unfrozen
    assert "".join(expected.split()) in "".join(out.split())  # however the console wrapped it
    meta = json.loads((out_dir / "model.json").read_text())
    assert meta["hyperparameters"]["weights"] == str(weights)
    assert [h["phase"] for h in meta["history"]] == ["frozen", "unfrozen"]


def test_train_with_weights_of_another_architecture_is_a_one_line_error(
    demo_data, tmp_path, run_cli, make_train_args
):
    weights = tmp_path / "tiny.pth"
    torch.save(get_arch("tiny").make().state_dict(), weights)
    rc, _, err = run_cli(
        *make_train_args(demo_data, tmp_path / "m", "--weights", str(weights), arch="resnet18")
    )
    assert rc == 2
    assert "not a state dict for resnet18" in _error_line(err, "train")
    assert not (tmp_path / "m").exists()


def test_pretrained_weights_unavailable_is_a_one_line_error(
    demo_data, tmp_path, run_cli, make_train_args, monkeypatch
):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise URLError("no network in this test")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    args = make_train_args(demo_data, tmp_path / "m", arch="resnet18", pretrained=True)
    rc, _, err = run_cli(*args)
    assert rc == 2
    line = _error_line(err, "train")
    assert "pretrained resnet18 weights" in line
    assert "--weights FILE" in line and "--no-pretrained" in line
    assert "Traceback" not in err
    assert not (tmp_path / "m").exists()


@pytest.mark.timeout(120)
def test_pretrained_weights_unavailable_offline_real_code_path(
    demo_data, tmp_path, run_cli, make_train_args, monkeypatch, _isolated_env
):
    """torchvision and torch.hub run unpatched; only sockets fail, as on a machine offline."""

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise socket.gaierror(socket.EAI_NONAME, "network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert not list(_isolated_env["torch_home"].rglob("*.pth"))  # the hub cache is empty
    args = make_train_args(demo_data, tmp_path / "m", arch="resnet18", pretrained=True)
    rc, _, err = run_cli(*args)
    assert rc == 2
    line = _error_line(err, "train")
    assert "--weights FILE" in line and "--no-pretrained" in line
    assert "Traceback" not in err


def test_unknown_architecture_lists_the_known_ones(demo_data, tmp_path, run_cli, make_train_args):
    rc, _, err = run_cli(*make_train_args(demo_data, tmp_path / "m", arch="resnet19"))
    assert rc == 2
    line = _error_line(err, "train")
    assert "unknown architecture 'resnet19'; known:" in line
    assert "resnet18" in line and "tiny" in line


def test_invalid_settings_are_one_line_errors(demo_data, tmp_path, run_cli, make_train_args):
    rc, _, err = run_cli(*make_train_args(demo_data, tmp_path / "m", "--bs", "1", "--lr", "0"))
    assert rc == 2
    line = _error_line(err, "train")
    assert "bs is 1, but must be bs >= 2" in line and "lr is 0.0, but must be lr > 0" in line


def test_archs_lists_the_registry(run_cli):
    rc, out, _ = run_cli("archs")
    assert rc == 0
    for name in ("tiny", "resnet18", "resnet50"):
        assert name in out


# --- evaluate ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_writes_metrics_and_a_confusion_matrix(tiny_bundle, demo_data, tmp_path, run_cli):
    out_dir = tmp_path / "eval"
    rc, out, err = run_cli(
        "evaluate", tiny_bundle, demo_data, "--json", tmp_path / "m.json", "--out", out_dir,
        "--device", "cpu",
    )  # fmt: skip
    assert rc == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    _check_metrics(metrics, n=16)
    assert metrics["split"] == "test"
    assert (out_dir / "confusion_matrix.png").is_file()
    assert "test split (n=16): accuracy" in out
    # the same model on the same images gives the numbers train wrote
    assert metrics["accuracy"] == pytest.approx(
        json.loads((tiny_bundle / "test" / "metrics.json").read_text())["accuracy"]
    )


@pytest.mark.slow
def test_evaluate_on_the_training_split(tiny_bundle, demo_data, tmp_path, run_cli):
    rc, _, err = run_cli(
        "evaluate", tiny_bundle, demo_data, "--split", "train", "--json", tmp_path / "m.json"
    )
    assert rc == 0, err
    _check_metrics(json.loads((tmp_path / "m.json").read_text()), n=40)


@pytest.mark.slow
def test_evaluate_a_split_that_does_not_exist_is_a_one_line_error(tiny_bundle, demo_data, run_cli):
    rc, _, err = run_cli("evaluate", tiny_bundle, demo_data, "--split", "valid")
    assert rc == 2
    assert "no images in split 'valid'" in _error_line(err, "evaluate")


def test_evaluate_a_missing_bundle_is_a_one_line_error(demo_data, tmp_path, run_cli):
    rc, _, err = run_cli("evaluate", tmp_path / "nothing", demo_data)
    assert rc == 2
    assert "model.json: missing" in _error_line(err, "evaluate")


# --- predict ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_predict_skips_unreadable_files_and_predicts_the_rest(
    tiny_bundle, demo_data, tmp_path, run_cli
):
    folder = tmp_path / "images"
    folder.mkdir()
    src = sorted((demo_data / "Testing" / "pituitary").glob("*.jpg"))
    for f in src[:2]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "truncated.jpg").write_bytes(src[2].read_bytes()[:200])
    (folder / "notes.txt").write_text("not an image")  # not an image extension: not looked at
    single = demo_data / "Testing" / "glioma" / "Te-gl_0000.jpg"
    text_named = tmp_path / "readme.md"
    text_named.write_text("# not an image")
    missing = tmp_path / "absent.png"
    rc, out, err = run_cli(
        "predict", tiny_bundle, single, folder, text_named, missing,
        "--csv", tmp_path / "out" / "p.csv", "--json", tmp_path / "p.json", "--device", "cpu",
    )  # fmt: skip
    assert rc == 0, err
    header, rows = _read_csv(tmp_path / "out" / "p.csv")
    _check_prediction_rows(header, rows)
    assert [Path(r["path"]).name for r in rows] == [single.name, src[0].name, src[1].name]
    # every skipped file is reported on a line of its own, with its reason
    skipped_lines = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert len(skipped_lines) == 3, err
    for bad in ("truncated.jpg", "readme.md", "absent.png"):
        assert any(str(tmp_path) in line and bad in line for line in skipped_lines), bad
    assert any(line.endswith("absent.png: no such file or folder") for line in skipped_lines)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["classes"] == CLASSES
    assert [r["path"] for r in data["predictions"]] == [r["path"] for r in rows]
    skipped = {Path(s["path"]).name: s["reason"] for s in data["skipped"]}
    assert set(skipped) == {"truncated.jpg", "readme.md", "absent.png"}
    assert skipped["readme.md"].startswith("cannot decode")
    for r in data["predictions"]:
        assert sum(r[f"prob_{c}"] for c in CLASSES) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_predict_with_cam_writes_one_overlay_per_image(tiny_bundle, demo_data, tmp_path, run_cli):
    cams = tmp_path / "cams"
    rc, out, err = run_cli("predict", tiny_bundle, demo_data / "Testing", "--cam", cams)
    assert rc == 0, err
    pngs = sorted(cams.glob("*.png"))
    assert len(pngs) == 16
    for p in pngs:
        img = Image.open(p)
        assert img.size == (32, 32) and img.mode == "RGB"
        assert p.stem.rsplit("_", 1)[1] in CLASSES  # named after the predicted class
    assert "16 Grad-CAM overlays written" in " ".join(out.split())


@pytest.mark.slow
def test_predict_with_nothing_readable_is_a_one_line_error(tiny_bundle, tmp_path, run_cli):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    rc, _, err = run_cli("predict", tiny_bundle, bad, tmp_path / "absent")
    assert rc == 2
    assert "no readable images" in _error_line(err, "predict")


@pytest.mark.slow
def test_predict_with_an_inconsistent_bundle_is_a_one_line_error(tiny_bundle, tmp_path, run_cli):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    meta = json.loads((broken / "model.json").read_text())
    meta["classes"] = meta["classes"][:3]
    (broken / "model.json").write_text(json.dumps(meta))
    rc, _, err = run_cli("predict", broken, tmp_path)
    assert rc == 2
    assert "disagree" in _error_line(err, "predict")
