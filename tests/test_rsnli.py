"""RSNLI in full: the γ–W rescaling is function-preserving on every rescalable model family (float64) and refused
where a clipping activation breaks it; ISTA runs on the rescaled γ and the scaling is undone when the phase ends
(also across a crash and resume); the authors' memory cost weights are their closed form."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from test_oto import CASES, tiny

from conftest import crash, train
from regprune.models import build_model
from regprune.pruning.rescale import rescale_channels
from regprune.pruning.verify import randomise_bn
from regprune.regularizers import CostWeightedL1
from regprune.regularizers.rsnli import channel_memory
from regprune.testing import CRASH_EXIT_CODE

pytestmark = pytest.mark.usefixtures("one_thread")


def random_factors(model, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {grp.name: torch.exp(2 * torch.rand(model.widths[grp.width], generator=g, dtype=torch.float64) - 1)
            for grp in model.channel_groups()}


@pytest.mark.parametrize("name,mode", CASES)
def test_rescaling_changes_no_output_where_the_model_allows_it(name, mode, monkeypatch):
    model, shape = tiny(name, mode)
    g = torch.Generator().manual_seed(0)
    randomise_bn(model, g)
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
    scaled = copy.deepcopy(model)
    factors = random_factors(model, g)
    if not model.rescalable:
        with pytest.raises(ValueError, match="not function-preserving"):
            rescale_channels(scaled, factors)
        monkeypatch.setattr(type(scaled), "rescalable", True)  # what the refusal prevents: a changed function
        rescale_channels(scaled, factors)
        with torch.no_grad():
            assert not torch.allclose(scaled(x), expected, rtol=1e-6, atol=1e-6)
        return
    rescale_channels(scaled, factors)
    gates = [n for n in model.gate_modules()]
    assert any(not torch.equal(model.get_submodule(n).weight, scaled.get_submodule(n).weight) for n in gates)
    with torch.no_grad():
        torch.testing.assert_close(scaled(x), expected, rtol=1e-9, atol=1e-9 * float(expected.abs().max()))


def vgg_batch():
    g = torch.Generator().manual_seed(0)
    model = build_model("vgg_tiny", num_classes=10, in_channels=1).double()
    return model, torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64)


def test_rescaled_ista_then_undone_at_the_end_of_the_phase():
    alpha, lam, lr = 0.25, 0.5, 0.5
    model, x = vgg_batch()
    original = copy.deepcopy(model.state_dict())
    reg = CostWeightedL1(lam, rescale=alpha)
    reg.attach(model)
    model(x)  # sizes the cost weights
    reg.on_epoch(0)
    bn, nxt = model.get_submodule("features.4"), model.get_submodule("features.7")
    torch.testing.assert_close(bn.weight, alpha * original["features.4.weight"], rtol=1e-15, atol=0)
    torch.testing.assert_close(bn.bias, alpha * original["features.4.bias"], rtol=1e-15, atol=0)
    torch.testing.assert_close(nxt.weight, original["features.7.weight"] / alpha, rtol=1e-15, atol=0)
    reg.on_epoch(1)  # only once
    torch.testing.assert_close(bn.weight, alpha * original["features.4.weight"], rtol=1e-15, atol=0)
    scaled = reg.flat().clone()
    reg.after_step(lr)  # ISTA on αγ
    expected = scaled.sign() * (scaled.abs() - lr * lam * reg.channel_weights()).clamp_min(0)
    torch.testing.assert_close(reg.flat(), expected)
    assert (reg.flat() == 0).any()
    assert reg.state_dict() == {"rescaled": True}
    reg.detach()
    assert reg.state_dict() == {"rescaled": False}
    torch.testing.assert_close(reg.flat(), expected / alpha)  # exact zeros stay exact
    torch.testing.assert_close(nxt.weight, original["features.7.weight"], rtol=1e-14, atol=0)


def test_a_resumed_phase_does_not_rescale_twice():
    alpha = 0.5
    model, x = vgg_batch()
    original = model.get_submodule("features.1").weight.detach().clone()
    first = CostWeightedL1(0.0, rescale=alpha)
    first.attach(model)
    first.on_epoch(0)
    state = first.state_dict()  # a checkpoint inside the phase: the model is saved rescaled
    resumed = CostWeightedL1(0.0, rescale=alpha)
    resumed.attach(model)
    resumed.load_state_dict(state)
    resumed.on_epoch(1)
    torch.testing.assert_close(model.get_submodule("features.1").weight, alpha * original)
    resumed.detach()
    torch.testing.assert_close(model.get_submodule("features.1").weight, original)


def test_rescaling_is_refused_at_attach_on_a_clipping_model():
    reg = CostWeightedL1(rescale=0.5)
    with pytest.raises(ValueError, match="not function-preserving on MobileNetV2"):
        reg.attach(build_model("mobilenet_v2", num_classes=10, in_channels=3))
    CostWeightedL1(rescale=1.0).attach(build_model("mobilenet_v2", num_classes=10, in_channels=3))


def test_memory_cost_is_the_authors_closed_form():
    """vgg_tiny on 16×16 digits: a channel's feature map at its gate + its filter (3·3·C_in) + its slices in the
    next conv (3·3·C_out) or the classifier (10 outputs), over the input's 256 pixels."""
    model, x = vgg_batch()
    reg = CostWeightedL1(1.0, cost="memory")
    reg.attach(model)
    model(x)
    costs = channel_memory(model, reg._out_hw, reg._input_hw)
    sizes = [(256, 1, 32), (256, 32, 64), (64, 32, 64), (64, 64, 128), (16, 64, 128), (16, 128, None)]
    for (hw, c_in, c_next), (name, cost) in zip(sizes, costs.items(), strict=True):
        assert cost == pytest.approx((hw + 9 * c_in + (9 * c_next if c_next else 10)) / 256), name
    w = reg.channel_weights()
    assert w[0] == pytest.approx(costs["features.1"]) and w[-1] == pytest.approx(costs["features.18"])


ARGS = ["model=vgg_tiny", "dataset=digits", "regularizer=rsnli", "regularizer.lam=0.005", "regularizer.rescale=0.5",
        "regularizer.cost=memory", "optimizer.lr=0.05", "schedule.train.epochs=3", "schedule.finetune.epochs=1",
        "schedule.prune.criterion=percentile", "schedule.prune.ratio=0.5", "schedule.prune.on_empty=keep_min",
        "progress=false", "latency=false"]


def outcome(root) -> dict:
    (run_dir,) = (root / "default").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    keys = ("acc_trained_final", "acc_pruned", "acc_finetuned_final", "kept_channels", "macs")
    trained = torch.load(run_dir / "trained.pt", weights_only=True)["state_dict"]
    return {**{k: metrics[k] for k in keys}, "gamma": trained["features.1.weight"].tolist()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsnli")
    train([*ARGS, f"run.root={root}"])
    return outcome(root)


@pytest.mark.parametrize("fault", [  # at step 30 the checkpoint holds a rescaled model
    pytest.param(crash(at_step=30), marks=[pytest.mark.slow, pytest.mark.ci]),
                                   pytest.param(crash(after_phase="train"), marks=pytest.mark.slow)])
def test_rescaled_training_resumes_exactly(fault, uninterrupted, tmp_path):
    assert train([*ARGS, fault, f"run.root={tmp_path}"], check=False).returncode == CRASH_EXIT_CODE
    train([*ARGS, "resume=auto", f"run.root={tmp_path}"])
    assert outcome(tmp_path) == uninterrupted
