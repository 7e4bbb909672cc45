"""``engine.fit`` and the architecture registry: metrics per epoch, stopping, determinism, typed
failures (NaN loss, out of memory, weights that cannot be had)."""

from __future__ import annotations

import math
import socket
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mritune.engine import fit, get_arch, list_archs
from mritune.errors import (
    ConfigError,
    EngineError,
    OutOfMemory,
    TrainingDiverged,
    WeightsUnavailable,
)

METRICS_01 = ("accuracy", "balanced_accuracy", "macro_f1")


def _split(prepared) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    m = prepared.manifest
    return m.indices("train"), m.indices("test")


def _without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "epoch_time"} for h in history]


def _write_state(path: Path, state: dict[str, torch.Tensor]) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


# --- registry ---------------------------------------------------------------------------------


def test_registry_lists_the_tiny_architecture_and_the_resnets():
    names = [a.name for a in list_archs()]
    assert names == sorted(names)
    assert {"tiny", "resnet18", "resnet34", "resnet50"} <= set(names)
    assert get_arch("tiny").torchvision_name is None
    assert get_arch("resnet18").torchvision_name == "resnet18"


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown architecture 'resnet19'; known: .*resnet18"):
        get_arch("resnet19")
    with pytest.raises(ConfigError) as info:
        get_arch("resnet19")
    assert all(a.name in str(info.value) for a in list_archs())


def test_fit_with_an_unknown_architecture_fails_before_training(prepared, make_config):
    tr, va = _split(prepared)
    with pytest.raises(ConfigError, match="known: .*tiny"):
        fit(prepared.cache, tr, va, make_config(arch="nope"))


# --- training ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_reports_every_epoch_with_metrics_in_range(prepared, make_config):
    tr, va = _split(prepared)
    seen: list[tuple[int, dict]] = []
    res = fit(prepared.cache, tr, va, make_config(), lambda e, m: seen.append((e, m)) is None)
    assert [e for e, _ in seen] == [0, 1]
    assert res.epochs_trained == 2 and not res.stopped
    assert [h["epoch"] for h in res.history] == [0, 1]
    assert {h["phase"] for h in res.history} == {"unfrozen"}  # random init: no frozen phase
    for (_, m), h in zip(seen, res.history):
        assert m == h
        for k in METRICS_01:
            assert 0.0 <= h[k] <= 1.0
        assert math.isfinite(h["train_loss"]) and h["train_loss"] > 0
        assert math.isfinite(h["valid_loss"]) and h["valid_loss"] > 0
        assert h["epoch_time"] > 0
    assert res.probs.shape == (len(va), 4)
    np.testing.assert_allclose(res.probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(res.valid_idx, va)
    assert res.classes == prepared.manifest.classes
    assert not res.model.training
    assert next(res.model.parameters()).device.type == "cpu"


@pytest.mark.slow
def test_same_seed_on_cpu_gives_identical_metrics(prepared, make_config):
    tr, va = _split(prepared)
    cfg = make_config(augment=True, seed=7)
    a = fit(prepared.cache, tr, va, cfg)
    b = fit(prepared.cache, tr, va, cfg)
    assert _without_times(a.history) == _without_times(b.history)
    np.testing.assert_array_equal(a.probs, b.probs)
    for (ka, va_), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb
        assert torch.equal(va_, vb), ka


@pytest.mark.slow
def test_on_epoch_returning_false_stops_cleanly(prepared, make_config):
    tr, va = _split(prepared)
    calls: list[int] = []

    def on_epoch(epoch: int, metrics: dict) -> bool:
        calls.append(epoch)
        return False

    res = fit(prepared.cache, tr, va, make_config(epochs=3), on_epoch)
    assert calls == [0]
    assert res.stopped and res.epochs_trained == 1 and len(res.history) == 1
    assert res.probs.shape == (len(va), 4)
    np.testing.assert_allclose(res.probs.sum(1), 1.0, atol=1e-5)
    assert not res.model.training
    with torch.no_grad():  # the returned model is usable
        out = res.model(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 4)


@pytest.mark.slow
def test_fit_without_validation_images_still_trains(prepared, make_config):
    tr, _ = _split(prepared)
    res = fit(prepared.cache, tr, np.array([], dtype=np.int64), make_config(epochs=1))
    assert res.epochs_trained == 1
    assert res.probs.shape == (0, 4)
    assert "accuracy" not in res.history[0]
    assert math.isfinite(res.history[0]["train_loss"])


# --- weights ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_fit_from_a_weights_file_loads_the_body_and_freezes_it_first(
    prepared, make_config, tmp_path, suffix
):
    torch.manual_seed(123)
    state = get_arch("tiny").make().state_dict()
    path = _write_state(tmp_path / f"tiny{suffix}", state)
    tr, va = _split(prepared)
    phases: list[str] = []

    def stop_after_frozen(epoch: int, m: dict) -> bool:
        phases.append(m["phase"])
        return m["phase"] != "frozen"

    res = fit(prepared.cache, tr, va, make_config(weights=str(path)), stop_after_frozen)
    assert phases == ["frozen"] and res.stopped
    body = res.model[0].state_dict()
    # Only the head trained in the frozen epoch: every body convolution is the file's, unchanged.
    convs = [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 4]
    assert convs
    for k in convs:
        assert torch.equal(body[k], state[k]), k


@pytest.mark.slow
def test_fit_from_weights_runs_frozen_then_unfrozen_epochs(prepared, make_config, tmp_path):
    path = _write_state(tmp_path / "tiny.pth", get_arch("tiny").make().state_dict())
    tr, va = _split(prepared)
    cfg = make_config(weights=str(path), epochs=1, freeze_epochs=1)
    res = fit(prepared.cache, tr, va, cfg)
    assert [h["phase"] for h in res.history] == ["frozen", "unfrozen"]
    assert [h["epoch"] for h in res.history] == [0, 1]
    assert res.epochs_trained == cfg.total_epochs == 2


def test_weights_of_another_architecture_are_refused(prepared, make_config, tmp_path):
    path = _write_state(tmp_path / "tiny.pth", get_arch("tiny").make().state_dict())
    tr, va = _split(prepared)
    with pytest.raises(WeightsUnavailable, match="not a state dict for resnet18") as info:
        fit(prepared.cache, tr, va, make_config(arch="resnet18", weights=str(path)))
    assert "\n" not in str(info.value)


def test_missing_or_unreadable_weights_file_is_a_one_line_error(prepared, make_config, tmp_path):
    tr, va = _split(prepared)
    with pytest.raises(WeightsUnavailable, match="weights file not found"):
        fit(prepared.cache, tr, va, make_config(weights=str(tmp_path / "absent.pth")))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="cannot read weights") as info:
        fit(prepared.cache, tr, va, make_config(weights=str(junk)))
    assert "\n" not in str(info.value)


def test_a_pickled_object_in_a_weights_file_is_not_unpickled(prepared, make_config, tmp_path):
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": Evil()}, path)
    tr, va = _split(prepared)
    with pytest.raises(WeightsUnavailable, match="cannot read weights"):
        fit(prepared.cache, tr, va, make_config(weights=str(path)))


def test_tiny_has_no_pretrained_weights(prepared, make_config):
    tr, va = _split(prepared)
    with pytest.raises(WeightsUnavailable, match="no pretrained weights; use --no-pretrained"):
        fit(prepared.cache, tr, va, make_config(pretrained=True))


def test_pretrained_weights_unavailable_is_a_one_line_error(prepared, make_config, monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise URLError("no network in this test")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    tr, va = _split(prepared)
    with pytest.raises(WeightsUnavailable) as info:
        fit(prepared.cache, tr, va, make_config(arch="resnet18", pretrained=True))
    msg = str(info.value)
    assert "\n" not in msg
    assert "--weights FILE" in msg and "--no-pretrained" in msg
    assert "pretrained resnet18 weights" in msg


@pytest.mark.timeout(120)
def test_pretrained_download_fails_offline_through_the_real_code_path(
    prepared, make_config, monkeypatch, _isolated_env
):
    """No patch inside torch or torchvision: only the network is cut, at the socket."""

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise socket.gaierror(socket.EAI_NONAME, "network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    hub = _isolated_env["torch_home"]
    assert torch.hub.get_dir().startswith(str(hub))
    tr, va = _split(prepared)
    with pytest.raises(WeightsUnavailable) as info:
        fit(prepared.cache, tr, va, make_config(arch="resnet18", pretrained=True))
    msg = str(info.value)
    assert "\n" not in msg
    assert "--weights FILE" in msg and "--no-pretrained" in msg
    assert not list(hub.rglob("*.pth"))  # nothing half-downloaded was left behind


# --- optimizer ------------------------------------------------------------------------------


def _adam_run(opt_cls) -> tuple[dict, object]:  # noqa: ANN001
    """Eight steps of a small conv net under ``opt_cls``: two parameter groups with their own lr,
    BN and bias without weight decay, frozen body for three steps, momentum changed every step."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Dropout(0.0), nn.Linear(288, 4)
    ).double()  # float64: the two updates agree to rounding, float32 would amplify it
    opt = opt_cls([list(net[:2].parameters()), list(net[2:].parameters())], lr=1e-2, wd=0.1)
    for p in (net[0].bias, net[1].weight, net[1].bias, net[4].bias):
        opt.state[p]["do_wd"] = False
    opt.set_hyper("lr", [1e-3, 3e-2])
    opt.freeze()
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    for it in range(8):
        if it == 3:
            opt.unfreeze()
        opt.set_hyper("mom", 0.95 - 0.01 * it)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        opt.zero_grad()
    return net.state_dict(), opt


def test_fused_adam_gives_fastai_adams_update_and_state(monkeypatch):
    from fastai.optimizer import Adam

    from mritune.engine._fit import FusedAdam

    ref, ref_opt = _adam_run(Adam)
    got, got_opt = _adam_run(FusedAdam)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-12, atol=1e-14, msg=k)
    # fastai's own state layout, with per-parameter step counts (the body started 3 steps late)
    steps_ref = [ref_opt.state[p].get("step") for pl in ref_opt.param_lists for p in pl]
    steps_got = [got_opt.state[p].get("step") for pl in got_opt.param_lists for p in pl]
    assert steps_got == steps_ref == [5, 5, 5, 5, 8, 8]
    # parameters the fused kernel cannot take go through fastai's per-parameter step: same result
    monkeypatch.setattr(FusedAdam, "_fusable", staticmethod(lambda p: False))
    slow, _ = _adam_run(FusedAdam)
    for k in ref:
        torch.testing.assert_close(slow[k], ref[k], rtol=0, atol=0, msg=k)  # fastai's own code


# --- typed failures ---------------------------------------------------------------------------


@pytest.mark.slow
def test_nan_loss_ends_the_fit_with_training_diverged(prepared, make_config, tmp_path):
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in get_arch("tiny").make().state_dict().items()}  # fmt: skip
    path = _write_state(tmp_path / "nan.safetensors", state)
    tr, va = _split(prepared)
    calls: list[int] = []
    with pytest.raises(TrainingDiverged, match="loss became nan in epoch 0") as info:
        fit(prepared.cache, tr, va, make_config(weights=str(path)), lambda e, m: calls.append(e))
    assert isinstance(info.value, EngineError)
    assert calls == []  # it stopped inside the first epoch


@pytest.mark.slow
def test_huge_learning_rate_ends_with_training_diverged_not_a_crash(prepared, make_config):
    tr, va = _split(prepared)
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        fit(prepared.cache, tr, va, make_config(lr=1e12, epochs=3))


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 100000000000000 bytes. Error code 12"
        ),
        MemoryError(),
    ],
    ids=["cuda", "cpu-allocator", "python"],
)
def test_out_of_memory_ends_the_fit_with_a_typed_error(prepared, make_config, monkeypatch, error):
    def oom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise error

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", oom)
    tr, va = _split(prepared)
    with pytest.raises(OutOfMemory, match="smaller --bs") as info:
        fit(prepared.cache, tr, va, make_config(epochs=1))
    assert isinstance(info.value, EngineError)
    assert "\n" not in str(info.value)


def test_other_runtime_errors_are_not_disguised_as_out_of_memory(
    prepared, make_config, monkeypatch
):
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("shape mismatch somewhere")

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", broken)
    tr, va = _split(prepared)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        fit(prepared.cache, tr, va, make_config(epochs=1))


def test_too_few_training_images_is_a_config_error(prepared, make_config):
    tr, va = _split(prepared)
    with pytest.raises(ConfigError, match="need at least 2"):
        fit(prepared.cache, tr[:1], va, make_config())


def test_absent_cuda_device_is_a_config_error(prepared, make_config):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    tr, va = _split(prepared)
    with pytest.raises(ConfigError, match="--device cpu"):
        fit(prepared.cache, tr, va, make_config(device="cuda"))
