"""Importances of the registry: Taylor is the first-order term it claims (float64, against hooks on the BN
outputs), leaves the model as it found it, and Taylor and the ReLU-survival probability are invariant under a
function-preserving rescaling while |γ| is not."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from regprune.models import build_model
from regprune.pruning import IMPORTANCES, BNScale, ReluSurvival, Taylor, build_importance, scores_of
from regprune.pruning.rescale import rescale_channels
from regprune.pruning.verify import randomise_bn

pytestmark = pytest.mark.usefixtures("one_thread")


def model_and_batches(name: str = "vgg_tiny", n: int = 3, mode: str | None = None):
    g = torch.Generator().manual_seed(0)
    shape = (1, 16, 16) if name == "vgg_tiny" else (3, 8, 8)
    model = build_model(name, num_classes=10, in_channels=shape[0], **({"prune_mode": mode} if mode else {}))
    model = model.double().eval()
    randomise_bn(model, g)
    batches = [(torch.randn(5, *shape, generator=g, dtype=torch.float64), torch.randint(0, 10, (5,), generator=g))
               for _ in range(n)]
    return model, batches


def activation_taylor(model, batches) -> dict[str, torch.Tensor]:
    """|Σ_batches Σ_gates Σ_{n,h,w} ∂L/∂y·y| from hooks on every gate's output y (the definition)."""
    outputs = {}
    hooks = [bn.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
             for name, bn in model.gate_modules().items()]
    total = {g.name: torch.zeros(model.widths[g.width], dtype=torch.float64) for g in model.channel_groups()}
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        names = list(outputs)
        grads = torch.autograd.grad(loss, [outputs[n] for n in names])
        by_gate = {n: (gr * outputs[n]).sum((0, 2, 3)).detach() for n, gr in zip(names, grads, strict=True)}
        for g in model.channel_groups():
            total[g.name] += sum(by_gate[b][model.gate_index(g, b)] for b in g.gates)
    for h in hooks:
        h.remove()
    return {k: v.abs() for k, v in total.items()}


@pytest.mark.parametrize("name,mode", [("vgg_tiny", None), ("resnet20", "coupled"), ("preresnet164", "inside_blocks")])
def test_taylor_is_the_first_order_term_of_a_gate_on_each_channel(name, mode):
    model, batches = model_and_batches(name, mode=mode)
    scores = Taylor()(model, batches)
    expected = activation_taylor(model, batches)
    for k, v in expected.items():
        torch.testing.assert_close(scores[k].double(), v, rtol=1e-5, atol=1e-7)
    first, only = Taylor(max_batches=1)(model, batches), Taylor()(model, batches[:1])
    assert all(torch.equal(first[k], only[k]) for k in only)


def test_taylor_leaves_the_model_as_it_found_it():
    model, batches = model_and_batches()
    model.train()
    frozen = model.features[0].weight
    frozen.requires_grad_(False)
    marker = torch.ones_like(model.classifier.weight)
    model.classifier.weight.grad = marker.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    Taylor()(model, batches)
    assert model.training and not frozen.requires_grad and model.classifier.weight.requires_grad
    assert torch.equal(model.classifier.weight.grad, marker)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN statistics too


def test_data_driven_importances_need_batches():
    model, batches = model_and_batches()
    assert "taylor" in IMPORTANCES and build_importance("taylor").needs_data
    with pytest.raises(ValueError, match="scores channels on training batches"):
        scores_of(build_importance("taylor"), model)
    assert scores_of(BNScale(), model, batches).keys() == scores_of(Taylor(), model, batches).keys()


def test_relu_survival_is_the_gaussian_tail():
    model, _ = model_and_batches()
    bn = model.get_submodule("features.1")
    bn.weight.data[:3] = torch.tensor([2.0, -0.5, 0.0], dtype=torch.float64)
    bn.bias.data[:3] = torch.tensor([1.0, -1.0, 0.3], dtype=torch.float64)
    p = ReluSurvival()(model)["features.1"][:3].double()
    phi = [0.5 * math.erfc(-0.5 / math.sqrt(2)), 0.5 * math.erfc(2 / math.sqrt(2)), 1.0]  # γ = 0: by sign(β)
    assert p.tolist() == pytest.approx(phi, rel=1e-6)
    assert ReluSurvival(eps=0.3)(model)["features.1"][2] == 0.5


def test_scale_invariant_importances_ignore_a_function_preserving_rescaling():
    model, batches = model_and_batches("resnet20", mode="coupled")
    before = {n: scores_of(build_importance(n), model, batches) for n in ("bn_gamma", "taylor", "relu_prob")}
    g = torch.Generator().manual_seed(1)
    rescale_channels(model, {grp.name: torch.exp(torch.randn(model.widths[grp.width], generator=g, dtype=torch.float64))
                             for grp in model.channel_groups()})
    for n in ("taylor", "relu_prob"):
        after = scores_of(build_importance(n), model, batches)
        for k, v in before[n].items():
            torch.testing.assert_close(after[k], v, rtol=1e-5, atol=1e-7)
    after = BNScale()(model)
    assert any(not torch.allclose(after[k], v) for k, v in before["bn_gamma"].items())


def test_the_prune_phase_scores_a_data_driven_importance_on_training_batches(tmp_path):
    from conftest import FAST, compose
    from regprune.run import run

    metrics = run(compose([*FAST, "schedule.prune.importance=taylor", f"run.root={tmp_path}"]))
    assert metrics["prune_importance"] == "taylor" and metrics["channels_pruned_ratio"] >= 0.5
