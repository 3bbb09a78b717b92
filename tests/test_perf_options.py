"""Perf switches: resolution per device, config errors, GradScaler ordering, bf16 and channels_last steps."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import FAST, compose, train
from regprune.engine.loop import Accel, MixedPrecision, evaluate, train_one_epoch
from regprune.errors import UserError
from regprune.models import build_model
from regprune.regularizers import BNL1
from regprune.run import typed


def batches(n: int = 2, b: int = 8, seed: int = 0, memory_format=torch.contiguous_format):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, 1, 8, 8, generator=g).contiguous(memory_format=memory_format),
             torch.randint(0, 10, (b,), generator=g)) for _ in range(n)]


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("vgg_tiny", num_classes=10, in_channels=1, bn_init=0.5)


def sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)


def test_auto_is_fp32_channels_last_on_cpu_and_explicit_values_win():
    assert Accel.resolve("cpu") == Accel(device_type="cpu", amp=None, channels_last=True, compile=False)
    assert not Accel.resolve("cpu", channels_last="false").channels_last
    a = Accel.resolve("cpu", amp="BF16", channels_last=True, compile=True)
    assert (a.amp, a.channels_last, a.compile, a.memory_format) == ("bf16", True, True, torch.channels_last)
    assert Accel.resolve("cpu", amp="off", channels_last="false").amp is None


@pytest.mark.parametrize("overrides, match", [
    (["perf.amp=fp8"], "perf.amp='fp8'"),
    (["perf.channels_last=sometimes"], "perf.channels_last='sometimes'"),
])
def test_bad_perf_settings_are_one_line_errors(overrides, match):
    with pytest.raises(UserError, match=match) as e:
        typed(compose(overrides))
    assert "\n" not in str(e.value)


def test_perf_section_defaults_and_yaml_booleans():
    perf = typed(compose(["perf.channels_last=true"])).perf
    assert (perf.amp, perf.channels_last, perf.compile, perf.cudnn_benchmark) == ("auto", "true", False, True)


class OrderScaler(torch.amp.GradScaler):
    """A real CPU GradScaler that records the order of its calls."""

    def __init__(self, calls: list):
        super().__init__("cpu", init_scale=256.0)
        self.calls = calls

    def scale(self, outputs):
        self.calls.append("scale")
        return super().scale(outputs)

    def unscale_(self, optimizer):
        self.calls.append("unscale_")
        return super().unscale_(optimizer)

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        return super().step(optimizer, *args, **kwargs)


class SpyL1(BNL1):
    def __init__(self, calls: list, **kw):
        super().__init__(**kw)
        self.calls = calls

    def after_backward(self):
        self.calls.append("after_backward")
        super().after_backward()


def test_penalty_gradient_is_added_after_unscale_with_fp16_scaler():
    """λ·sign(γ) must reach γ undivided by the loss scale (docs/methods.md, Training step): with λ = 1 and lr = 0.1 the
    penalty moves γ by 0.1, against 0.1/256 if it were added before unscale_."""
    lam, lr = 1.0, 0.1
    ref_model, amp_model = tiny_model(), tiny_model()
    data = batches(n=1)
    train_one_epoch(ref_model, data, sgd(ref_model, lr), _attached(BNL1(lam=lam), ref_model), epoch=0)

    calls: list[str] = []
    precision = MixedPrecision("cpu", "fp16")
    precision.scaler = OrderScaler(calls)
    train_one_epoch(amp_model, data, sgd(amp_model, lr), _attached(SpyL1(calls, lam=lam), amp_model), epoch=0,
                    precision=precision)
    assert calls == ["scale", "unscale_", "after_backward", "step"]
    assert precision.scaler.get_scale() == 256.0  # the step was taken, not skipped for overflow
    for ref, amp in zip(ref_model.gate_modules().values(), amp_model.gate_modules().values(), strict=True):
        torch.testing.assert_close(amp.weight, ref.weight, rtol=0, atol=5e-3)


def _attached(reg, model):
    reg.attach(model)
    return reg


def test_bf16_autocast_trains_with_fp32_weights_and_no_scaler():
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    precision = Accel.resolve("cpu", amp="bf16").precision()
    assert precision.scaler is None
    stats, step = train_one_epoch(model, batches(), sgd(model), None, epoch=0, precision=precision)
    assert step == 2 and stats["loss"] > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert 0 <= evaluate(model, batches(), precision)["acc"] <= 100


def test_channels_last_step_matches_contiguous():
    """Same model, same data: the layout changes the kernels, not the maths."""
    results = []
    for channels_last in (False, True):
        accel = Accel.resolve("cpu", channels_last=channels_last)
        model = tiny_model()
        forward = accel.prepare(model)
        data = batches(memory_format=accel.memory_format)
        stats, _ = train_one_epoch(forward, data, sgd(forward), _attached(BNL1(lam=1e-3), model), epoch=0,
                                   precision=accel.precision())
        if channels_last:
            assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
        results.append((stats["loss"], model.state_dict()))
    (loss_a, sd_a), (loss_b, sd_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for k in sd_a:
        torch.testing.assert_close(sd_a[k], sd_b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_model_trains_and_shares_parameters():
    accel = Accel.resolve("cpu", compile=True)
    model = tiny_model()
    forward = accel.prepare(model)
    assert forward is not model and {id(p) for p in forward.parameters()} == {id(p) for p in model.parameters()}
    before = model.features[0].weight.detach().clone()
    train_one_epoch(forward, batches(), sgd(model), None, epoch=0, precision=accel.precision())
    assert not torch.equal(before, model.features[0].weight)


@pytest.mark.slow
def test_train_py_runs_ns_with_bf16_and_channels_last(tmp_path):
    """The perf keys reach the loop: the same run in bf16 and in fp32 trains to different numbers."""
    histories = {}
    for amp in ("bf16", "off"):
        proc = train([*FAST, "dataset.size=8", "regularizer=l1", "schedule=ns", f"perf.amp={amp}",
                      "perf.channels_last=true", f"run.root={tmp_path / amp}"])
        run_dir = proc.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
        m = json.loads(open(f"{run_dir}/metrics.json").read())
        assert m["status"] == "complete" and m["flops"] < m["flops_unpruned"]
        assert all(0 <= m[k] <= 100 for k in ("acc_trained_final", "acc_pruned", "acc_finetuned_final"))
        histories[amp] = open(f"{run_dir}/history.csv").read().splitlines()[1].split(",")[3]  # train loss
    assert histories["bf16"] != histories["off"]
