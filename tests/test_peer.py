"""The peer row: network slimming through Torch-Pruning (its regularizer, its ranking and surgery)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn

from conftest import FAST, train
from regprune.models import build_model
from regprune.peer import TorchPruningNS, torch_pruning_prune
from regprune.pruning.compact import compact
from regprune.pruning.criteria import Percentile, select
from regprune.pruning.importance import BNScale

pytestmark = pytest.mark.usefixtures("one_thread")


def trained_like_model(seed: int = 0) -> nn.Module:
    """vgg_tiny with spread-out γ of both signs and non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_model("vgg_tiny", num_classes=10, in_channels=1, bn_init=0.5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-1, 1)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model.eval()


def test_tp_regularizer_adds_exactly_lam_sign_gamma():
    model = trained_like_model().train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        bns[0].weight[:3] = 0.0  # sign(0) = 0: no push at exact zeros
    reg = TorchPruningNS(lam=3e-3)
    reg.attach(model)
    nn.functional.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8)).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    reg.after_backward()
    gammas = {id(m.weight) for m in bns}
    for name, p in model.named_parameters():
        expected = before[name] + 3e-3 * torch.sign(p.detach()) if id(p) in gammas else before[name]
        assert torch.equal(p.grad, expected), name
    assert torch.equal(bns[0].weight.grad[:3], before["features.1.weight"][:3])


def test_tp_regularizer_penalty_value():
    model = trained_like_model()
    reg = TorchPruningNS(lam=1e-2)
    reg.attach(model)
    total = sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.isclose(reg.penalty(), 1e-2 * total)


@pytest.mark.parametrize("ratio", [0.3, 0.7])
def test_tp_pruned_module_and_our_rebuilt_model_agree(ratio):
    model = trained_like_model()
    x = torch.randn(6, 1, 8, 8)
    result = torch_pruning_prune(model, ratio, (1, 8, 8))
    assert type(result.model) is type(model) and result.model.widths == [int(m.sum()) for m in result.masks.values()]
    with torch.no_grad():
        ours = result.model.eval()(x)
        assert torch.allclose(ours, result.module.eval()(x), atol=1e-6)  # tp's module, our class: one network
        assert torch.allclose(ours, compact(model, result.masks).eval()(x), atol=1e-6)  # tp surgery = ours
    assert torch.equal(model(x), trained_like_model()(x))  # the input model is untouched (tracing in eval mode)


def test_ratio_semantics_ns_prunes_one_channel_more_than_tp():
    """Both rank |γ| globally. NS keeps |γ| strictly above the value at index ⌊N·r⌋ of the sorted scores, so it
    prunes ⌊N·r⌋ + 1; Torch-Pruning prunes N − ⌊N·(1 − r)⌋. vgg_tiny has N = 448 channels."""
    model = trained_like_model()
    for ratio, n_tp, n_ns in [(0.3, 135, 135), (0.5, 224, 225), (0.7, 314, 314)]:
        peer = torch_pruning_prune(model, ratio, (1, 8, 8))
        ours = select(BNScale()(model), Percentile(ratio))
        assert sum(int((~m).sum()) for m in peer.masks.values()) == n_tp
        assert sum(int((~m).sum()) for m in ours.masks.values()) == n_ns


def test_tp_leaves_a_layer_whole_when_the_threshold_would_empty_it():
    model = trained_like_model()
    first = model.features[1]
    with torch.no_grad():
        first.weight.mul_(1e-3)  # every channel of the first layer ranks below the rest
    peer = torch_pruning_prune(model, 0.3, (1, 8, 8))
    assert peer.skipped == ["features.1"] and bool(peer.masks["features.1"].all())
    removed = sum(int((~m).sum()) for m in peer.masks.values())
    assert removed < 135  # fewer than asked, silently in Torch-Pruning; our record says which layer
    ours = select(BNScale()(model), Percentile(0.3), on_empty="keep_min")
    assert ours.topped_up == {"features.1": 1}  # ours keeps its best channel and says so


@pytest.mark.slow
def test_peer_run_trains_exactly_as_our_l1(tmp_path):
    """Through the same loop, tp's regularizer and ours give the same trained weights, bit for bit."""
    common = [*FAST, "dataset.size=8", "regularizer.lam=1e-2", "threads=1", f"run.root={tmp_path}"]
    train([*common, "regularizer=tp_ns", "schedule.prune.pruner=torch_pruning", "schedule.prune.recal_batches=100",
           "run.id=peer"])
    train([*common, "regularizer=l1", "run.id=ours"])
    digest = {k: hashlib.sha256((tmp_path / "default" / k / "trained.pt").read_bytes()).hexdigest()
              for k in ("peer", "ours")}
    assert digest["peer"] == digest["ours"]
    m = json.loads((tmp_path / "default" / "peer" / "metrics.json").read_text())
    assert m["prune_criterion"] == "torch_pruning" and m["prune_skipped_layers"] == []
    assert m["acc_pruned"] == m["acc_pruned_masked"] and "acc_pruned_recal" in m and "val_acc_pruned" in m
    assert sum(m["kept_channels"].values()) == 448 - 224  # tp's count at ratio 0.5
