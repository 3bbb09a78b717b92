"""Core units: digits splits, optimizer parameter groups, LR schedules, BN recalibration, cost counting."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from conftest import compose
from regprune.cost import count_macs, count_params
from regprune.data import Digits, Synthetic, stratified_split
from regprune.engine.bn_recalib import recalibrate_bn
from regprune.engine.optim import SGD, Adam, lr_at
from regprune.models import build_model


def test_digits_splits_are_disjoint_stratified_and_fixed_by_seed():
    a, b = Digits(split_seed=0).load(), Digits(split_seed=0).load()
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.train[1], b.train[1])
    assert a.train[0].dtype == torch.uint8 and a.input_shape == (1, 16, 16) and a.num_classes == 10
    sizes = len(a.train[1]) + len(a.val[1]) + len(a.test[1])
    assert sizes == 1797
    counts = torch.bincount(a.test[1], minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # 25% of each class (~180 per class)
    c = Digits(split_seed=1).load()
    assert not torch.equal(a.test[1], c.test[1])
    rest, held = stratified_split(torch.arange(100) % 4, 0.25, seed=0)
    assert len(set(rest.tolist()) | set(held.tolist())) == 100 and not set(rest.tolist()) & set(held.tolist())


def test_synthetic_shapes_and_validation_split():
    d = Synthetic(num_train=100, num_test=20, val_fraction=0.2).load()
    assert d.train[0].shape == (80, 3, 32, 32) and d.val[0].shape == (20, 3, 32, 32) and d.test[0].shape[0] == 20


def test_bn_parameters_can_be_excluded_from_weight_decay():
    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    groups = SGD(weight_decay=1e-4, bn_weight_decay=False).build(model).param_groups
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert groups[0]["weight_decay"] == 1e-4 and not bn & {id(p) for p in groups[0]["params"]}
    assert groups[1]["weight_decay"] == 0.0 and {id(p) for p in groups[1]["params"]} == bn
    assert len(SGD(bn_weight_decay=True).build(model).param_groups) == 1
    assert SGD(nesterov=True).build(model).defaults["nesterov"]
    assert Adam(lr=1e-3).build(model).defaults["betas"] == (0.9, 0.999)


def test_a_phase_can_set_its_own_weight_decay_and_a_plain_pretraining_phase_comes_first():
    from regprune.engine.phases import Finetune, Prune, Train
    from regprune.engine.schedule import Schedule

    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    groups = SGD(weight_decay=1e-4, bn_weight_decay=False).build(model, weight_decay=5e-4).param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]  # BN still excluded when the optimizer says so
    assert Adam(weight_decay=1e-4).build(model).param_groups[0]["weight_decay"] == 1e-4
    s = instantiate(compose(["schedule=greg", "schedule.pretrain.weight_decay=5e-4"]).schedule)
    assert [n for n, _ in s.plan()] == ["pretrain", "train", "prune", "finetune"]
    pretrain, train = s.phases["pretrain"], s.phases["train"]
    assert not pretrain.penalty and pretrain.weight_decay == 5e-4 and train.weight_decay is None
    s = Schedule(pretrain=Train(penalty=False), train=Train(), prune=Prune(), finetune=Finetune(), start_from="x")
    assert [n for n, _ in s.plan()] == ["prune", "finetune"]
    with pytest.raises(ValueError, match="weight_decay"):
        Train(weight_decay=-1.0)


@pytest.mark.parametrize("epochs", [160, 7, 3])
def test_step_schedule_decays_at_rounded_fractions(epochs):
    lrs = [lr_at(e, epochs, 0.1, "step", [0.5, 0.75], 0.1) for e in range(epochs)]
    assert lrs.count(0.1) == round(0.5 * epochs)
    assert lrs[-1] == pytest.approx(0.001 if round(0.75 * epochs) < epochs else 0.01)


def test_cosine_schedule_endpoints():
    assert lr_at(0, 10, 0.1, "cosine", [], 0.1) == pytest.approx(0.1)
    assert lr_at(5, 10, 0.1, "cosine", [], 0.1) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        lr_at(0, 10, 0.1, "warmup", [], 0.1)


def test_bn_recalibration_recovers_data_statistics():
    torch.manual_seed(0)
    bn = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    x = torch.randn(64, 3, 4, 4) * 3 + 2
    batches = [(x[i:i + 16], None) for i in range(0, 64, 16)]
    recalibrate_bn(bn, batches, num_batches=4)
    torch.testing.assert_close(bn[0].running_mean, x.mean((0, 2, 3)), rtol=0, atol=1e-5)
    assert bn[0].momentum == 0.1


@pytest.mark.parametrize("name, classes, params, macs", [
    ("vgg19", 10, 20_035_018, 398_136_320), ("vgg19", 100, 20_081_188, 398_182_400),
    ("vgg16", 10, 14_724_042, 313_201_664)])
def test_vgg_cost_matches_paper_and_flop_counter(name, classes, params, macs):
    model = build_model(name, num_classes=classes, in_channels=3).eval()
    assert count_params(model) == params and count_macs(model, (3, 32, 32)) == macs
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    assert counter.get_total_flops() == 2 * macs
    if name == "vgg19":  # NS Table 1: 20.04M / 20.08M params, 7.97e8 FLOPs
        assert abs(params / (20.04e6 if classes == 10 else 20.08e6) - 1) < 0.005
        assert abs(2 * macs / 7.97e8 - 1) < 0.01
