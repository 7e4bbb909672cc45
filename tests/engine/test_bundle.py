"""Model bundles: ``model.safetensors`` + ``model.json``, loaded without unpickling, with clear
errors for missing, damaged or inconsistent files."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mritune.engine import (
    gradcam_overlays,
    list_archs,
    load_bundle,
    predict_arrays,
    save_bundle,
)
from mritune.errors import BundleError

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _untrained(arch: str, n_classes: int):  # noqa: ANN202
    """The network a bundle of ``arch`` holds (fastai body + head), randomly initialised."""
    from mritune.engine._bundle import _build

    torch.manual_seed(0)
    return _build(arch, n_classes, 0.5).eval()


@pytest.fixture(scope="module")
def made_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-architecture bundle written by ``save_bundle`` (no training)."""
    out = tmp_path_factory.mktemp("made") / "bundle"
    save_bundle(
        _untrained("tiny", 4), out, arch="tiny", classes=CLASSES, img_size=32, channels=3,
        normalization=NORM, hyperparameters={"arch": "tiny", "drop": 0.5},
        data_fingerprint="0123456789abcdef",
    )  # fmt: skip
    return out


@pytest.fixture
def bundle_copy(made_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of a bundle, free to damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(made_bundle, dst)
    return dst


def _edit_json(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    (folder / "model.json").write_text(json.dumps(meta))


@pytest.mark.slow
def test_train_writes_weights_and_a_full_description(tiny_bundle):
    assert sorted(p.name for p in tiny_bundle.iterdir() if p.is_file()) == [
        "model.json",
        "model.safetensors",
    ]
    assert not list(tiny_bundle.glob(".*.tmp"))  # temporary names were renamed into place
    meta = json.loads((tiny_bundle / "model.json").read_text())
    assert meta["format"] == 1
    assert meta["arch"] == "tiny"
    assert meta["classes"] == CLASSES
    assert meta["img_size"] == 32 and meta["channels"] == 3
    assert len(meta["normalization"]["mean"]) == len(meta["normalization"]["std"]) == 3
    assert meta["hyperparameters"]["arch"] == "tiny"
    assert meta["hyperparameters"]["pretrained"] is False
    assert {"torch", "torchvision", "fastai", "mritune", "python"} <= set(meta["versions"])
    assert meta["epochs_trained"] == len(meta["history"]) == 2
    assert meta["split"] == {"train": 32, "valid": 8, "split": "stratified"}
    assert len(meta["data_fingerprint"]) > 8
    weights = load_file(str(tiny_bundle / "model.safetensors"))
    assert meta["n_tensors"] == len(weights)


def test_bundle_loads_back_to_the_same_weights(made_bundle):
    bundle = load_bundle(made_bundle)
    weights = load_file(str(made_bundle / "model.safetensors"))
    state = bundle.model.state_dict()
    assert set(state) == set(weights)
    for k, v in weights.items():
        assert torch.equal(state[k], v), k
    assert not bundle.model.training
    assert bundle.classes == CLASSES
    assert bundle.img_size == 32 and bundle.channels == 3
    # the folder, model.json and model.safetensors all name the same bundle
    for p in (made_bundle / "model.json", made_bundle / "model.safetensors"):
        assert load_bundle(p).meta == bundle.meta


def test_loading_a_bundle_never_unpickles(made_bundle, monkeypatch):
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("load_bundle must not unpickle anything")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    bundle = load_bundle(made_bundle)
    probs = predict_arrays(bundle, np.zeros((3, 32, 32, 3), dtype=np.uint8), device="cpu")
    assert probs.shape == (3, 4)


def test_predictions_are_probabilities(made_bundle):
    bundle = load_bundle(made_bundle)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    probs = predict_arrays(bundle, images, device="cpu")
    assert probs.shape == (5, 4)
    assert (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        predict_arrays(bundle, images, [4, 0], device="cpu"), probs[[4, 0]], atol=1e-6
    )
    assert predict_arrays(bundle, images[:0], device="cpu").shape == (0, 4)


def test_json_with_other_classes_than_the_weights_is_a_clear_error(bundle_copy):
    _edit_json(bundle_copy, classes=["a", "b", "c"])
    with pytest.raises(BundleError, match=r"model.json \(tiny, 3 classes\) and model.safetensors "
                       r"disagree") as info:  # fmt: skip
        load_bundle(bundle_copy)
    assert "\n" not in str(info.value)


def test_json_naming_another_architecture_is_a_clear_error(bundle_copy):
    _edit_json(bundle_copy, arch="resnet18")
    with pytest.raises(BundleError, match="disagree.*same `mritune train` run"):
        load_bundle(bundle_copy)


def test_json_naming_an_unknown_architecture_is_a_clear_error(bundle_copy):
    _edit_json(bundle_copy, arch="resnet19")
    with pytest.raises(BundleError, match="unknown architecture 'resnet19'; known:"):
        load_bundle(bundle_copy)


def test_weights_from_another_bundle_are_a_clear_error(bundle_copy, tmp_path):
    torch.manual_seed(0)
    other = load_bundle(bundle_copy)
    # the same architecture with one tensor removed: keys no longer match the description
    state = {k: v for k, v in other.model.state_dict().items() if not k.startswith("1.")}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(bundle_copy / "model.safetensors"))
    with pytest.raises(BundleError, match="disagree"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("missing", ["model.json", "model.safetensors"])
def test_a_missing_file_is_named(bundle_copy, missing):
    (bundle_copy / missing).unlink()
    with pytest.raises(BundleError, match=f"{missing}: missing; a model bundle is a folder"):
        load_bundle(bundle_copy)


def test_a_folder_that_is_not_a_bundle_is_named(tmp_path):
    with pytest.raises(BundleError, match="model.json: missing"):
        load_bundle(tmp_path)


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '{"arch": "tiny"}', '{"arch": "tiny", "classes": ["a"], '
             '"img_size": "big", "channels": 3, "normalization": {"mean": [0]}}'],
    ids=["syntax", "not-an-object", "missing-keys", "bad-size"],
)  # fmt: skip
def test_a_damaged_description_is_a_bundle_error(bundle_copy, text):
    (bundle_copy / "model.json").write_text(text)
    with pytest.raises(BundleError, match="not a valid model description") as info:
        load_bundle(bundle_copy)
    assert "\n" not in str(info.value)


def test_damaged_weights_are_a_bundle_error(bundle_copy):
    w = bundle_copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(BundleError, match="cannot read the weights"):
        load_bundle(bundle_copy)


def test_a_pickle_named_model_safetensors_is_refused_not_unpickled(bundle_copy, tmp_path):
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (marker.write_text, ("yes",))

    (bundle_copy / "model.safetensors").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(BundleError, match="cannot read the weights"):
        load_bundle(bundle_copy)
    assert not marker.exists()


def test_a_second_save_replaces_the_bundle_atomically(made_bundle, tmp_path):
    bundle = load_bundle(made_bundle)
    out = tmp_path / "again"
    kwargs = dict(
        arch="tiny", classes=bundle.classes, img_size=32, channels=3,
        normalization=bundle.normalization, hyperparameters={"drop": 0.5},
        data_fingerprint="abc",
    )  # fmt: skip
    save_bundle(bundle.model, out, metrics={"accuracy": 0.5}, **kwargs)
    save_bundle(bundle.model, out, metrics={"accuracy": 0.75}, **kwargs)
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]
    again = load_bundle(out)
    assert again.meta["metrics"] == {"accuracy": 0.75}
    images = np.full((2, 32, 32, 3), 128, dtype=np.uint8)
    np.testing.assert_allclose(
        predict_arrays(again, images, device="cpu"),
        predict_arrays(bundle, images, device="cpu"),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "arch",
    [pytest.param(a.name, marks=[] if a.name == "tiny" else [pytest.mark.slow])
     for a in list_archs()],
)  # fmt: skip
def test_every_registered_architecture_round_trips_as_a_bundle_with_gradcam(arch, tmp_path):
    model = _untrained(arch, 3)
    norm = NORM
    save_bundle(
        model, tmp_path, arch=arch, classes=["a", "b", "c"], img_size=32, channels=3,
        normalization=norm, hyperparameters={"drop": 0.5}, data_fingerprint="x",
    )  # fmt: skip
    bundle = load_bundle(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    probs = predict_arrays(bundle, images, device="cpu")
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        x = (x - torch.tensor(norm["mean"]).view(1, 3, 1, 1)) / torch.tensor(norm["std"]).view(
            1, 3, 1, 1
        )
        np.testing.assert_allclose(torch.softmax(model(x), 1).numpy(), probs, atol=1e-5)
    overlays = gradcam_overlays(bundle, images, [0, 2])
    assert len(overlays) == 2
    assert all(o.shape == (32, 32, 3) and o.dtype == np.uint8 for o in overlays)
