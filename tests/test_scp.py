"""SCP: the penalty's gradient is its closed form (float64), training masks are the relaxed Bernoulli draws of the
gates' open probability, evaluation masks are hard, and pruning at ½ is exactly the evaluated network."""

from __future__ import annotations

import math

import pytest
import torch

from regprune.models import build_model
from regprune.pruning import Threshold, compact, select
from regprune.regularizers import SoftChannelPruning

pytestmark = pytest.mark.usefixtures("one_thread")


def model_with_spread_gates(name: str = "vgg_tiny", mode: str | None = None):
    g = torch.Generator().manual_seed(0)
    shape = (1, 16, 16) if name == "vgg_tiny" else (3, 8, 8)
    model = build_model(name, num_classes=10, in_channels=shape[0], **({"prune_mode": mode} if mode else {})).double()
    for bn in model.gate_modules().values():  # γ of both signs, β spread so that masks open and close
        bn.weight.data = (0.1 + torch.rand(bn.weight.shape, generator=g, dtype=torch.float64)) * \
            torch.where(torch.rand(bn.weight.shape, generator=g) < 0.3, -1.0, 1.0).double()
        bn.bias.data = 1.5 * torch.randn(bn.bias.shape, generator=g, dtype=torch.float64)
    x = torch.randn(6, *shape, generator=g, dtype=torch.float64)
    return model, x


def test_penalty_gradient_is_the_closed_form():
    lam, eps, kappa = 0.3, 0.2, 1.5
    model, _ = model_with_spread_gates()
    reg = SoftChannelPruning(lam, eps=eps, margin=kappa)
    reg.attach(model)
    gates = list(model.gate_modules().values())
    grads = torch.autograd.grad(reg.penalty(), [p for bn in gates for p in (bn.weight, bn.bias)])
    for bn, dgamma, dbeta in zip(gates, grads[::2], grads[1::2], strict=True):
        gamma, beta = bn.weight.detach(), bn.bias.detach()
        z = (beta - eps) / gamma.abs() + kappa
        density = torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        torch.testing.assert_close(dbeta, lam * density / gamma.abs(), rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(dgamma, -lam * density * (beta - eps) * gamma.sign() / gamma ** 2,
                                   rtol=1e-10, atol=1e-14)


def capture(model, name: str, store: dict, key: str):
    """A copy of the module's output, taken before the next in-place ReLU."""
    return model.get_submodule(name).register_forward_hook(lambda m, i, o: store.__setitem__(key, o.detach().clone()))


@pytest.mark.parametrize("training", [True, False])
def test_masks_are_relaxed_bernoulli_draws_in_training_and_hard_in_evaluation(training):
    tau = 0.4
    model, x = model_with_spread_gates()
    model.train(training)
    seen = {}
    raw = capture(model, "features.4", seen, "raw")  # registered first: sees the BN output before the mask
    reg = SoftChannelPruning(0.1, margin=1.0, temperature=tau)
    reg.attach(model)
    masked = capture(model, "features.4", seen, "masked")
    torch.manual_seed(7)
    model(x)
    probs = {k: v.detach() for k, v in reg.probabilities().items()}
    torch.manual_seed(7)
    for g, p in probs.items():  # the draws in the order the regularizer makes them
        u = torch.rand(len(x), len(p), dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        if g == "features.4":
            mask = torch.sigmoid((torch.logit(p, 1e-6) + torch.logit(u)) / tau) if training else \
                (p > 0.5).double().expand(len(x), -1)
    assert 0 < int((probs["features.4"] > 0.5).sum()) < len(probs["features.4"])
    torch.testing.assert_close(seen["masked"], seen["raw"] * mask[:, :, None, None], rtol=1e-12, atol=0)
    reg.detach()
    model(x)
    assert torch.equal(seen["masked"], seen["raw"])  # no mask once detached
    raw.remove()
    masked.remove()


@pytest.mark.parametrize("name,mode", [("vgg_tiny", None), ("resnet20", "coupled"), ("densenet40", "inside_blocks")])
def test_pruning_at_one_half_is_exactly_the_evaluated_network(name, mode):
    model, x = model_with_spread_gates(name, mode)
    model.eval()
    reg = SoftChannelPruning(0.1, margin=0.5)
    reg.attach(model)
    with torch.no_grad():
        evaluated = model(x)
    scores = reg.importance()(model)
    reg.detach()
    result = select(scores, Threshold(0.5))
    assert 0 < result.pruned_ratio() < 1
    small = compact(model, result.masks).eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), evaluated, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs,match", [({"eps": -0.1}, "eps=-0.1"), ({"margin": -1.0}, "margin=-1.0"),
                                          ({"temperature": 0.0}, "temperature=0.0")])
def test_scp_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SoftChannelPruning(**kwargs)
