"""The gate methods' update rules against autograd and closed forms (float64), their budgets and selections, and
each one end to end on digits through the run entry point (docs/methods.md: SSS, DMC, GDP, ResRep, BAR, SCOP, GAL)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, compose, crash, train
from regprune import regularizers as R
from regprune.models import build_model
from regprune.models.gates import GATED
from regprune.pruning import load_pruned
from regprune.pruning.gates import fold_gates
from regprune.pruning.io import load_checkpoint
from regprune.testing import CRASH_EXIT_CODE

pytestmark = pytest.mark.usefixtures("one_thread")


def attached(reg, seed: int = 0, name: str = "vgg_tiny"):
    """A float64 model with ``reg`` attached (gates installed), a batch, and one forward pass (FLOPs sizing)."""
    g = torch.Generator().manual_seed(seed)
    model = build_model(name, num_classes=10, in_channels=1).double()
    reg.attach(model)
    x, y = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (6,), generator=g)
    with torch.no_grad():
        model(x)
    return model, x, y


def task_grads(model, x, y, params) -> list[torch.Tensor]:
    return list(torch.autograd.grad(F.cross_entropy(model(x), y), params))


def soft(z: torch.Tensor, t: float) -> torch.Tensor:
    return z.sign() * (z.abs() - t).clamp_min(0)


def group_slopes(reg) -> dict[str, float]:
    """∂T/∂n_g of the gated FLOPs at the gates' current values, n_g = Σ_k g_k: T is linear in each group's count,
    so one channel more gives the slope exactly."""
    cost = reg.cost()
    with torch.no_grad():
        on = {k: float(f.sum()) for k, f in reg.factors().items()}
    return {k: float(cost({**on, k: on[k] + 1}) - cost(on)) for k in on}


# ---- SSS ---------------------------------------------------------------------------------------------------
def test_sss_gates_follow_the_authors_apg_and_nothing_else():
    """Three steps of a real SGD step (momentum, weight decay) with SSS attached: every gate moves exactly by the
    NAG-form APG with soft thresholding and the λ ≥ 0 projection, from autograd's task gradient."""
    reg = R.SSS(lam=0.3, momentum=0.9)
    model, x, y = attached(reg)
    with torch.no_grad():
        for p in reg.params:
            p.copy_(torch.rand(p.shape, dtype=p.dtype) * 0.05)  # near 0: thresholding and projection act
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    lr, v = 0.1, [torch.zeros_like(p) for p in reg.params]
    for _ in range(3):
        lam = [p.detach().clone() for p in reg.params]
        grads = task_grads(model, x, y, reg.params)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        reg.after_backward()
        opt.step()
        reg.after_step(lr)
        for p, l0, g, vi in zip(reg.params, lam, grads, v, strict=True):
            z = soft(l0 - lr * g, lr * reg.lam)
            vi.mul_(0.9).add_(z - l0)
            torch.testing.assert_close(p.detach(), (z + 0.9 * vi).clamp_min(0), rtol=0, atol=1e-14)
    assert any((p == 0).any() for p in reg.params)  # exact zeros: what SSS removes


def test_sss_state_survives_a_resume():
    reg = R.SSS(lam=0.1)
    model, x, y = attached(reg)
    F.cross_entropy(model(x), y).backward()
    reg.after_backward()
    reg.after_step(0.1)
    again = R.SSS(lam=0.1)
    again.attach(model)
    again.load_state_dict(reg.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.velocity, reg.velocity, strict=True))


# ---- DMC ---------------------------------------------------------------------------------------------------
def test_dmc_gradient_is_the_straight_through_task_gradient_plus_the_budget_term():
    reg = R.DMC(lam=2.0, flops_target=0.3, init=0.5)
    model, x, y = attached(reg)
    with torch.no_grad():
        for p in reg.params:
            p.copy_(torch.rand(p.shape, dtype=p.dtype) - 0.3)  # some gates closed
    factors = {n: m.factor().detach().clone().requires_grad_() for n, m in reg.gated.items()}
    for n, m in reg.gated.items():  # the gated network with its 0/1 factors as leaves: ∂L/∂g
        m.factor = lambda sample=False, f=factors[n]: f
    ste = torch.autograd.grad(F.cross_entropy(model(x), y), list(factors.values()))
    for m in reg.gated.values():
        del m.factor
    t = float(reg.cost()({n: f.detach().sum() for n, f in reg.factors().items()}))
    assert t > reg.flops_target * reg.full_macs  # the budget term is active
    slopes = group_slopes(reg)
    loss = F.cross_entropy(model(x), y) + reg.penalty()
    loss.backward()
    reg.after_backward()
    for group, g_task, grad in zip(model.channel_groups(), ste, reg.grads, strict=True):
        torch.testing.assert_close(grad, g_task + reg.lam * slopes[group.name] / t, rtol=1e-10, atol=1e-12)
    assert all(set(m.factor().unique().tolist()) <= {0.0, 1.0} for m in reg.gated.values())


def test_dmc_budget_term_vanishes_within_budget_and_weights_stay_frozen():
    reg = R.DMC(lam=2.0, flops_target=0.9)
    model, x, y = attached(reg)
    with torch.no_grad():
        reg.params[-1][1:].fill_(-1.0)  # the last layer closed but one gate: within 90% of the FLOPs
    assert float(reg.penalty().detach()) == 0.0
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith(".gate")}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    theta = [p.detach().clone() for p in reg.params]
    (F.cross_entropy(model(x), y) + reg.penalty()).backward()
    reg.after_backward()
    grads = [g.clone() for g in reg.grads]
    opt.step()
    reg.after_step(0.1)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
    for p, t0, g in zip(reg.params, theta, grads, strict=True):
        torch.testing.assert_close(p.detach(), (t0 - 0.1 * g).clamp(-1, 1), rtol=0, atol=1e-15)


def test_dmc_and_gdp_keep_the_last_open_gate_of_a_layer_open():
    reg = R.DMC(lam=2.0, flops_target=0.5)
    attached(reg)
    start = torch.linspace(-0.5, 0.01, len(reg.params[0]), dtype=reg.params[0].dtype)
    with torch.no_grad():
        reg.params[0].copy_(start)
        reg.params[1].fill_(0.3)
    grads = [torch.full_like(p, 0.1) for p in reg.params]  # one step closes every gate of the first layer
    reg.step_gates(1.0, grads)
    first, second = reg.params[0].detach(), reg.params[1].detach()
    torch.testing.assert_close(first, torch.cat([(start - 0.1)[:-1], start[-1:]]))  # the most open one as it was
    assert (second > 0).all()  # a layer with open gates left is stepped as is
    reg = R.GDP(lam=2.0, flops_target=0.5)
    attached(reg)
    start = torch.linspace(0.01, 0.05, len(reg.params[0]), dtype=reg.params[0].dtype)
    with torch.no_grad():
        reg.params[0].copy_(start)
    reg.step_gates(1.0, [torch.full_like(p, 0.1) for p in reg.params])  # every step crosses 0: stops at 0
    torch.testing.assert_close(reg.params[0].detach(), torch.cat([torch.zeros_like(start[:-1]), start[-1:]]))


# ---- GDP ---------------------------------------------------------------------------------------------------
def test_gdp_gradient_is_autograd_of_loss_plus_flops_with_the_smoothed_gate():
    reg = R.GDP(lam=3.0, flops_target=0.5, eps=0.05)
    model, x, y = attached(reg)
    with torch.no_grad():
        for p in reg.params:
            p.copy_(torch.rand(p.shape, dtype=p.dtype) * 0.5)
    expected = torch.autograd.grad(F.cross_entropy(model(x), y) + reg.penalty(), reg.params)
    slopes = group_slopes(reg)
    task = task_grads(model, x, y, reg.params)
    for group, p, g_task, g_all in zip(model.channel_groups(), reg.params, task, expected, strict=True):
        dg = 2 * p * reg.layout.eps / (p * p + reg.layout.eps) ** 2  # g'(θ) of θ²/(θ² + ε)
        torch.testing.assert_close(g_all - g_task, reg.lam * slopes[group.name] / reg.full_macs * dg,
                                   rtol=1e-9, atol=1e-14)
    (F.cross_entropy(model(x), y) + reg.penalty()).backward()
    reg.after_backward()
    for got, want in zip(reg.grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_gdp_step_stops_at_zero_and_a_closed_gate_stays_closed():
    reg = R.GDP(lam=1.0)
    model, x, y = attached(reg)
    theta = reg.params[0]
    with torch.no_grad():
        theta.copy_(torch.linspace(0.01, 1.0, theta.numel(), dtype=theta.dtype))
    grads = [torch.zeros_like(p) for p in reg.params]
    grads[0].fill_(0.05)
    reg.step_gates(1.0, grads)  # θ − 0.05: the gates below 0.05 would cross 0
    assert (theta[:2] == 0).all() and torch.allclose(theta[-1], torch.tensor(0.95, dtype=theta.dtype))
    (F.cross_entropy(model(x), y) + reg.penalty()).backward()
    assert (theta.grad[:2] == 0).all()  # g'(0) = 0: nothing reopens a closed gate


def test_gdp_penalty_switches_off_for_good_once_the_budget_is_met():
    reg = R.GDP(lam=1.0, flops_target=0.95, check_every=1)
    model, _, _ = attached(reg)
    assert float(reg.penalty().detach()) > 0
    with torch.no_grad():
        reg.params[-1].zero_()  # the last conv's channels closed
    reg.on_iteration(0)
    assert reg.met and float(reg.penalty().detach()) == 0.0
    again = R.GDP(lam=1.0, flops_target=0.95)
    again.load_state_dict(reg.state_dict())
    assert again.met


# ---- BAR ---------------------------------------------------------------------------------------------------
def test_bar_gradient_is_autograd_of_distillation_plus_the_barrier_weighted_expected_flops():
    reg = R.BAR(lam=3.0, flops_target=0.4, ramp=10, temperature=2.0, alpha=0.7)
    model, x, y = attached(reg)
    model.eval()  # deterministic gates: the same network in every forward pass
    with torch.no_grad():
        for p in reg.params:
            p.copy_(torch.randn(p.shape, dtype=p.dtype) * 2)
    reg.iteration = 4
    s, t = model(x), reg.teacher(x)
    kd = (F.softmax(t / 2, 1) * (F.log_softmax(t / 2, 1) - F.log_softmax(s / 2, 1))).sum(1).mean() * 4
    torch.testing.assert_close(reg.task_loss(x, s, y), 0.7 * kd + 0.3 * F.cross_entropy(s, y), rtol=1e-12, atol=0)
    expected = torch.autograd.grad(reg.task_loss(x, model(x), y) + reg.penalty(), reg.params)
    task = torch.autograd.grad(reg.task_loss(x, model(x), y), reg.params)
    kept, cost = reg.flops_kept(), reg.cost()
    assert 0 < reg.barrier(kept) < reg.upper_bound
    with torch.no_grad():
        counts = {k: float(v) for k, v in reg.expected_counts().items()}
    for group, p, g_task, g_all in zip(model.channel_groups(), reg.params, task, expected, strict=True):
        slope = float(cost({**counts, group.name: counts[group.name] + 1}) - cost(counts))  # T is linear per group
        prob = torch.sigmoid(p - 2 / 3 * math.log(0.1 / 1.1))  # P(z ≠ 0), Louizos et al.
        torch.testing.assert_close(g_all - g_task, reg.lam * reg.barrier(kept) * slope / reg.full_macs
                                   * prob * (1 - prob), rtol=1e-9, atol=1e-14)
    theta = [p.detach().clone().requires_grad_() for p in reg.params]
    adam = torch.optim.Adam(theta, lr=0.1)
    for _ in range(3):  # Adam on θ at the phase's learning rate, outside the run's optimizer
        grads = [torch.randn_like(p) for p in theta]
        for p, g in zip(theta, grads, strict=True):
            p.grad = g.clone()
        adam.step()
        reg.step_gates(0.1, grads)
    for p, want in zip(reg.params, theta, strict=True):
        torch.testing.assert_close(p.detach(), want.detach(), rtol=0, atol=1e-15)


def test_bar_barrier_follows_the_budget_from_tolerance_to_the_target():
    reg = R.BAR(flops_target=0.5, ramp=100, tolerance=0.01, margin=1e-4, upper_bound=1e6)
    assert reg.current_budget() == pytest.approx(1.01)
    budgets = []
    for _ in range(100):
        reg.on_iteration(0)
        budgets.append(reg.current_budget())
    assert budgets[-1] == pytest.approx(0.5) and all(a >= b for a, b in zip(budgets, budgets[1:], strict=False))
    lower = 0.5 - 1e-4 * 1.01
    assert reg.barrier(lower) == 0.0 and reg.barrier(0.3) == 0.0  # within the budget: no pull
    reg.iteration = 50
    c = reg.current_budget()
    v = lower + 0.25 * (c - lower)
    assert reg.barrier(v) == pytest.approx(0.25 ** 2 / 0.75, rel=1e-12)
    assert reg.barrier(c) == reg.barrier(1.0) == 1e6


def test_bar_gates_sample_in_training_close_exactly_and_the_teacher_is_the_starting_network():
    reg = R.BAR()
    model = build_model("vgg_tiny", num_classes=10, in_channels=1).double()
    start = copy.deepcopy(model).eval()
    reg.attach(model)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        model(x)  # trains BN statistics of the student only
        theta = reg.params[0]
        theta.copy_(torch.linspace(-4, 4, theta.numel(), dtype=theta.dtype))
    bn = reg.gated[next(iter(reg.gated))]
    closed = torch.sigmoid(theta) * 1.2 - 0.1 <= 0  # θ ≤ logit(1/12)
    assert closed.any() and torch.equal(bn.channel_scores() == 0, closed)
    assert not torch.equal(bn.factor(sample=True), bn.factor(sample=True))  # a draw per mini-batch
    torch.testing.assert_close(reg.teacher(x), start(x), rtol=0, atol=0)
    assert not any(p.requires_grad for p in reg.teacher.parameters()) and not reg.teacher.training
    assert not any(isinstance(m, GATED) for m in reg.teacher.modules())
    again = R.BAR()
    other = build_model("vgg_tiny", num_classes=10, in_channels=1).double()
    again.attach(other)
    again.load_state_dict(reg.state_dict())  # a resumed phase gets the phase's teacher back
    torch.testing.assert_close(again.teacher(x), start(x), rtol=0, atol=0)
    assert again.iteration == reg.iteration and again.adam.state_dict() == reg.adam.state_dict()


# ---- SCOP --------------------------------------------------------------------------------------------------
def test_knockoff_bn_mixes_the_real_half_with_the_knockoff_half_and_is_a_plain_bn_otherwise():
    from regprune.models.gates import KnockoffBatchNorm2d

    g = torch.Generator().manual_seed(0)
    bn = torch.nn.BatchNorm2d(4).double()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64))
    kbn = KnockoffBatchNorm2d(4).double()
    kbn.load_state_dict(bn.state_dict(), strict=False)
    with torch.no_grad():
        kbn.gate.copy_(torch.tensor([0.0, 0.3, 0.5, 1.0]))
    x = torch.randn(6, 4, 3, 3, generator=g, dtype=torch.float64)
    plain = bn(x)
    torch.testing.assert_close(kbn(x), plain, rtol=0, atol=0)  # not paired: the BN alone
    kbn.paired = True
    beta = kbn.gate.view(1, -1, 1, 1)
    out = kbn(x)
    torch.testing.assert_close(out[:3], beta * plain[:3] + (1 - beta) * plain[3:], rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(out[3:], plain[3:], rtol=0, atol=0)
    torch.testing.assert_close(kbn.channel_scores(), torch.tensor([-1.0, -0.4, 0.0, 1.0], dtype=torch.float64))
    kbn.load_state_dict(bn.state_dict(), strict=False)  # the same running statistics
    torch.testing.assert_close(kbn.eval()(x), bn.eval()(x), rtol=0, atol=0)  # evaluation: the BN alone


def test_gaussian_knockoffs_have_the_data_covariance_and_the_equicorrelated_cross_covariance():
    """Exact algebra of the fitted generator (Cov(z̃) = C, Cov(z, z̃) = C − sI in standardised units), then the
    empirical joint covariance of many knockoffs of Gaussian data with a constant feature."""
    from regprune.regularizers.knockoffs import GaussianKnockoffs

    g = torch.Generator().manual_seed(0)
    d = 5
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(20000, d, generator=g, dtype=torch.float64) @ a + torch.arange(d, dtype=torch.float64)
    x[:, 2] = 3.0  # a constant pixel
    gen = GaussianKnockoffs(shrinkage=0.1, refit=10)
    for batch in x.split(2000):
        gen.update(batch)
    gen.fit()
    fit = gen.fitted
    keep, noise = fit["mix"][:d], fit["mix"][d:]
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    var = cov.diagonal()
    shrunk = 0.9 * cov + torch.diag(0.1 * var + 1e-6 * var.mean())
    corr = shrunk / torch.outer(shrunk.diagonal().sqrt(), shrunk.diagonal().sqrt())
    s = fit["s"]
    assert 0 < s <= 1 and s == pytest.approx(min(1.0, 2 * float(torch.linalg.eigvalsh(corr)[0])), rel=1e-9)
    torch.testing.assert_close(keep.T @ corr @ keep + noise.T @ noise, corr, rtol=0, atol=1e-9)
    torch.testing.assert_close(corr @ keep, corr - s * torch.eye(d, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.manual_seed(1)
    xk = torch.cat([gen(b) for b in x.split(2000)])
    assert xk.dtype == x.dtype and xk.shape == x.shape
    joint = torch.cov(torch.cat([x, xk], 1).T, correction=0)
    torch.testing.assert_close(joint[d:, d:], cov, rtol=0, atol=0.08 * float(var.max()))
    off = cov - s * torch.diag(shrunk.diagonal())
    torch.testing.assert_close(joint[:d, d:], off, rtol=0, atol=0.08 * float(var.max()))
    assert float((xk[:, 2] - 3).abs().max()) < 1e-2  # a constant pixel's knockoff stays (nearly) constant


class Recorded:
    """A knockoff generator that keeps its last knockoffs."""

    def __init__(self, gen):
        self.gen, self.last = gen, None

    def __call__(self, x):
        self.last = self.gen(x)
        return self.last


def test_scop_trains_beta_by_clipped_sgd_on_the_real_half_with_knockoffs_and_keeps_weights():
    reg = R.SCOP(refit=2)
    model, x, y = attached(reg)
    with torch.no_grad():
        for p in reg.params:
            p.copy_(torch.rand(p.shape, dtype=p.dtype))
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith(".gate")}
    reg.knockoffs = Recorded(reg.knockoffs)
    model.train()
    out = model(x)  # [x; x̃] in, the real half out
    xk = reg.knockoffs.last
    assert out.shape == (len(x), 10) and xk.shape == x.shape and not torch.equal(xk, x)
    reg.detach()  # no hooks: the network run by hand on [x; x̃] with its knockoff BNs mixing
    for m in reg.gated.values():
        m.paired = True
    torch.testing.assert_close(out, model(torch.cat([x, xk]))[: len(x)], rtol=0, atol=0)
    loss = F.cross_entropy(out, y)
    expected = torch.autograd.grad(loss, reg.params, retain_graph=True)
    loss.backward()
    reg.after_backward()
    for g, want in zip(reg.grads, expected, strict=True):
        torch.testing.assert_close(g, want, rtol=0, atol=0)
    beta = [p.detach().clone() for p in reg.params]
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    opt.step()
    reg.after_step(0.5)
    for p, b0, g in zip(reg.params, beta, expected, strict=True):
        torch.testing.assert_close(p.detach(), (b0 - 0.5 * g).clamp(0, 1), rtol=0, atol=1e-15)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
    scores = reg.importance()(model)
    first = model.channel_groups()[0].name
    torch.testing.assert_close(scores[first], (2 * reg.params[0].detach() - 1).float())  # β − β̃
    for m in reg.gated.values():
        m.paired = False
    folded = copy.deepcopy(model).eval()
    fold_gates(folded)
    torch.testing.assert_close(model.eval()(x), folded(x), rtol=0, atol=0)  # the BNs alone


def test_scop_state_resumes_the_same_knockoffs():
    reg = R.SCOP(refit=3)
    model, x, _ = attached(reg)
    model.train()
    for _ in range(4):
        model(x)
    again = R.SCOP(refit=3)
    again.attach(copy.deepcopy(model))
    again.load_state_dict(reg.state_dict())
    torch.manual_seed(5)
    a = reg.knockoffs(x)
    torch.manual_seed(5)
    b = again.knockoffs(x)
    assert torch.equal(a, b) and again.knockoffs.batches == reg.knockoffs.batches == 6  # a refit at 6


# ---- GAL ---------------------------------------------------------------------------------------------------
def test_gal_loss_is_label_free_logits_mse_plus_fooling_the_discriminator():
    reg = R.GAL(lam=0.1, miu=0.7)
    model, x, y = attached(reg)
    with torch.no_grad():
        for p in reg.params:
            p.copy_(torch.rand(p.shape, dtype=p.dtype) + 0.5)
        for p in model.parameters():
            if p is not reg.params[0]:
                p.add_(0.05 * torch.randn_like(p))  # the student drifts from the teacher
    model.eval()
    s, t = model(x), reg.teacher(x)
    d = reg.discriminator(s)
    want = 0.7 * ((s - t) ** 2).mean() - F.logsigmoid(d).mean()  # BCE(D(s), 1)
    torch.testing.assert_close(reg.task_loss(x, s, y), want, rtol=1e-12, atol=0)
    torch.testing.assert_close(reg.task_loss(x, s, (y + 1) % 10), want, rtol=0, atol=0)  # no labels
    expected = torch.autograd.grad(want, reg.params, retain_graph=True)
    reg.task_loss(x, model(x), y).backward()
    assert all(p.grad is None for p in reg.discriminator.parameters())  # the generator's term leaves D alone
    reg.after_backward()
    for g, e in zip(reg.grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-14)


def test_gal_mask_follows_fista_and_the_discriminator_its_sgd():
    reg = R.GAL(lam=0.3, every=2, d_momentum=0.9, d_weight_decay=1e-2)
    model, x, y = attached(reg)
    with torch.no_grad():
        for p in reg.params:
            p.copy_(torch.rand(p.shape, dtype=p.dtype) * 0.3)
    m = [p.detach().clone() for p in reg.params]
    previous, t = [v.clone() for v in m], 1.0
    for k in range(1, 7):  # FISTA every second iteration, from autograd's gradients (any gradient will do)
        grads = [torch.randn_like(p) for p in reg.params]
        reg.step_gates(0.1, grads)
        if k % 2 == 0:
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            ys = [a + (t - 1) / t_next * (a - b) for a, b in zip(m, previous, strict=True)]
            previous = m
            m = [soft(v - 0.1 * g, 0.1 * 0.3).clamp_min(0) for v, g in zip(ys, grads, strict=True)]
            t = t_next
        for p, want in zip(reg.params, m, strict=True):
            torch.testing.assert_close(p.detach(), want, rtol=0, atol=1e-15)
    assert any((p == 0).any() for p in reg.params)  # the proximal step closes structures exactly
    d = copy.deepcopy(reg.discriminator)
    base, fake = torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64)
    reg.pair = (base, fake)
    reg.after_step(0.05)
    loss = -F.logsigmoid(d(base)).mean() - F.logsigmoid(-d(fake)).mean()  # BCE(D(f_b), 1) + BCE(D(f_g), 0)
    grads = torch.autograd.grad(loss, list(d.parameters()))
    for p, q, g in zip(reg.discriminator.parameters(), d.parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), q.detach() - 0.05 * (g + 1e-2 * q.detach()), rtol=1e-12, atol=1e-15)


def test_gal_state_restores_teacher_discriminator_and_fista():
    reg = R.GAL(lam=0.3)
    model, x, y = attached(reg)
    start = copy.deepcopy(model).eval()
    reg.step_gates(0.1, [torch.randn_like(p) for p in reg.params])
    reg.step_gates(0.1, [torch.randn_like(p) for p in reg.params])
    reg.pair = (torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64))
    reg.after_step(0.05)
    again = R.GAL(lam=0.3)
    again.attach(build_model("vgg_tiny", num_classes=10, in_channels=1).double())
    again.load_state_dict(reg.state_dict())
    torch.testing.assert_close(again.teacher(x), reg.teacher(x), rtol=0, atol=0)
    assert not torch.equal(again.teacher(x), start(x))  # the phase's teacher, not the model as it is now
    torch.testing.assert_close(again.discriminator(start(x)), reg.discriminator(start(x)), rtol=0, atol=0)
    assert (again.steps, again.t) == (reg.steps, reg.t) and not reg.teacher.training
    assert all(torch.equal(a, b) for a, b in zip(again.previous, reg.previous, strict=True))


# ---- ResRep ------------------------------------------------------------------------------------------------
def test_resrep_resets_the_gradient_of_forgotten_rows_and_uses_its_momentum():
    reg = R.ResRep(lam=1e-2, momentum=0.99)
    model, x, y = attached(reg)
    reg.forget = {reg.groups[0]: [0, 3], reg.groups[2]: [5]}
    buffers = [torch.zeros_like(q) for q in reg.params]
    for _ in range(2):
        q0 = [q.detach().clone() for q in reg.params]
        task = task_grads(model, x, y, reg.params)
        F.cross_entropy(model(x), y).backward()
        reg.after_backward()
        reg.after_step(0.1)
        for group, q, q_before, g, buf in zip(reg.groups, reg.params, q0, task, buffers, strict=True):
            keep = torch.ones(q.shape[0], 1, dtype=q.dtype)
            keep[reg.forget.get(group, [])] = 0
            expected = keep * g + reg.lam * q_before / q_before.norm(dim=1, keepdim=True)
            buf.mul_(0.99).add_(expected)
            torch.testing.assert_close(q.detach(), q_before - 0.1 * buf, rtol=0, atol=1e-14)


def test_resrep_forgets_the_smallest_rows_until_the_budget_granularity_and_floor():
    reg = R.ResRep(flops_target=0.6, granularity=5, min_channels=30)
    model, _, _ = attached(reg)
    g0, g1, g2 = reg.groups[:3]  # 32, 32 and 64 channels
    with torch.no_grad():  # row norms: channel k of group i has 1 + i + k/100; group 1's are all tiny
        for i, q in enumerate(reg.params):
            q.copy_(torch.diag(1 + i + torch.arange(q.shape[0], dtype=q.dtype) / 100))
        reg.params[1].mul_(0.001)
    # over budget: 5 more than forgotten so far, in ascending norm, no group below 30 channels
    assert reg.select() == {g1: [0, 1], g0: [0, 1], g2: [0]}
    reg.forget = reg.select()
    assert reg.select() == {g1: [0, 1], g0: [0, 1], g2: [0, 1, 2, 3, 4, 5]}
    # once the forgotten channels meet the budget, the selection is redone without the granularity limit: the
    # shortest prefix of the ranking (floors skipped) that meets it
    reg.forget = {name: list(range(reg.model.widths[g.width] - 30)) for name, g in
                  zip(reg.groups, model.channel_groups(), strict=True)}
    assert reg.flops_kept() <= 0.6
    chosen = reg.select()
    on = {name: reg.model.widths[g.width] - len(chosen.get(name, [])) for name, g in
          zip(reg.groups, model.channel_groups(), strict=True)}
    assert reg.macs(on) <= 0.6 * reg.full_macs and sum(map(len, chosen.values())) > 10
    last = max(chosen, key=lambda k: float(reg.params[reg.groups.index(k)][chosen[k][-1]].detach().norm()))
    assert reg.macs({**on, last: on[last] + 1}) > 0.6 * reg.full_macs
    reg.forget = chosen
    scores = reg.importance()(model)
    assert all((scores[k][v] == 0).all() and int((scores[k] > 0).sum()) == len(scores[k]) - len(v)
               for k, v in chosen.items())


# ---- end to end on digits ----------------------------------------------------------------------------------
DIGITS = ["model=vgg_tiny", "dataset=digits", "dataset.size=8", "optimizer.lr=0.05", "progress=false",
          "latency=false", "threads=1"]
RUNS = {
    "sss": ["regularizer=sss", "regularizer.lam=0.3", "schedule.train.epochs=2", "schedule.finetune.epochs=1",
            "schedule.prune.on_empty=keep_min"],
    "dmc": ["regularizer=dmc", "regularizer.lam=100", "schedule=gates", "schedule.pretrain.epochs=2",
            "schedule.train.epochs=2", "schedule.finetune.epochs=1", "schedule.prune.on_empty=keep_min"],
    "gdp": ["regularizer=gdp", "regularizer.lam=20", "regularizer.init=0.3", "schedule=gates",
            "schedule.pretrain.epochs=2", "schedule.train.epochs=2", "schedule.finetune.epochs=1",
            "schedule.prune.on_empty=keep_min"],
    "bar": ["regularizer=bar", "regularizer.lam=5", "regularizer.ramp=20", "regularizer.init=0",
            "schedule.train.lr=0.2", "schedule=gates", "schedule.pretrain.epochs=2", "schedule.train.epochs=2",
            "schedule.finetune.epochs=1",
            "schedule.prune.on_empty=keep_min"],
    "scop": ["regularizer=scop", "schedule=gates", "schedule.pretrain.epochs=2", "schedule.train.epochs=2",
             "schedule.finetune.epochs=1", "schedule.prune.on_empty=keep_min"],
    "gal": ["regularizer=gal", "regularizer.lam=0.2", "schedule=gates", "schedule.pretrain.epochs=2",
            "schedule.train.epochs=2", "schedule.finetune.epochs=1", "schedule.prune.on_empty=keep_min"],
    "resrep": ["regularizer=resrep", "regularizer.warmup=5", "regularizer.every=5", "regularizer.lam=1e-3",
               "regularizer.flops_target=0.7", "schedule=gates", "schedule.pretrain.epochs=2",
               "schedule.train.epochs=2", "schedule.finetune.epochs=1"],
}


@pytest.mark.parametrize("method", list(RUNS))
def test_method_trains_prunes_and_compacts_on_digits(method, tmp_path):
    from regprune.run import run

    metrics = run(compose([*DIGITS, *RUNS[method], f"run.root={tmp_path}"]))
    assert metrics["status"] == "complete" and metrics["prune_importance"] in ("gate", "resrep_forgotten")
    assert metrics["prune_criterion"] == "threshold"
    assert metrics["acc_pruned"] == metrics["acc_pruned_masked"]  # folding and compaction are exact
    assert metrics["channels_pruned_ratio"] > 0 and metrics["macs"] < metrics["macs_unpruned"]
    run_dir = Path(metrics["run_dir"])
    assert load_checkpoint(run_dir / "trained.pt")["spec"]["gates"]  # the gates travel with the trained model
    final = load_pruned(run_dir)
    assert not any(isinstance(m, GATED) for m in final.modules()) and "gates" not in final.spec()
    history = (run_dir / "history.csv").read_text()
    assert "gates_closed" in history or "forgotten" in history


def test_sss_blocks_remove_residual_blocks_on_digits(tmp_path):
    from regprune.run import run

    metrics = run(compose([*DIGITS, "model=resnet20", "regularizer=sss", "regularizer.structures=blocks",
                           "regularizer.lam=0.5", "schedule.train.epochs=2", "schedule.finetune.epochs=1",
                           f"run.root={tmp_path}"]))
    assert metrics["blocks_removed"] and metrics["acc_pruned"] == metrics["acc_pruned_masked"]
    model = load_pruned(metrics["run_dir"])
    removed = [g for g in model.channel_groups() if g.branch in metrics["blocks_removed"]]
    assert removed and all(model.widths[g.width] == 0 for g in removed)
    assert metrics["macs"] < metrics["macs_unpruned"]


@pytest.mark.parametrize("method", [pytest.param("sss", marks=pytest.mark.slow), *(
    pytest.param(m, marks=[pytest.mark.slow, pytest.mark.ci]) for m in ("resrep", "scop", "gal"))])
def test_gate_phase_crash_then_resume_matches_uninterrupted(method, tmp_path):
    """Gate values, momentum buffers and ResRep's selection are in the checkpoint: a killed penalty phase resumes
    to the same end."""
    args = [*DIGITS, *RUNS[method]]
    train([*args, f"run.root={tmp_path / 'a'}"])
    crashed = train([*args, crash(at_step=60 if method == "resrep" else 30), f"run.root={tmp_path / 'b'}"],
                    check=False)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    train([*args, "resume=auto", f"run.root={tmp_path / 'b'}"])
    results = []
    for root in ("a", "b"):
        (run_dir,) = (tmp_path / root / "default").iterdir()
        metrics = json.loads((run_dir / "metrics.json").read_text())
        results.append({k: metrics[k] for k in ("acc_trained_final", "acc_pruned", "kept_channels",
                                                "acc_finetuned_final", "macs")})
    assert results[0] == results[1]


# ---- CIFAR presets -----------------------------------------------------------------------------------------
GATE_PRESETS = sorted(p.stem for p in (ROOT / "configs/experiment/survey").glob("*.yaml")
                      if p.stem.rsplit("_", 1)[1] in ("sss", "dmc", "gdp", "resrep", "bar", "scop", "gal"))


@pytest.mark.parametrize("row", GATE_PRESETS)
def test_gate_presets_fit_their_model_and_carry_the_published_settings(row):
    from hydra.utils import instantiate

    cfg = compose([f"experiment=survey/{row}"])
    reg = instantiate(cfg.regularizer)
    reg.attach(instantiate(cfg.model, num_classes=100 if row.startswith("c100") else 10, in_channels=3))
    phases = dict(instantiate(cfg.schedule).plan())
    method = row.rsplit("_", 1)[1]
    if method == "sss":  # from scratch; the authors' ResNet gating is per block
        assert "pretrain" not in phases and phases["prune"].criterion == "auto"
        assert reg.layout.structures == ("blocks" if "resnet56" in row else "channels")
        assert (reg.lam, reg.momentum) == (1e-2, 0.9)
        return
    assert list(phases) == ["pretrain", "train", "prune", "finetune"] and not phases["pretrain"].penalty
    if method == "scop":  # the authors' start and clip; ranked down to a FLOPs target (ours)
        assert reg.layout.init == 0.5 and reg.freeze_weights and phases["prune"].criterion == "percentile"
        assert phases["prune"].flops_target == 0.5
        return
    assert phases["prune"].criterion == "auto" and reg.criterion == "threshold"
    if method == "gal":  # ShaohuiLin/GAL, utils/options.py defaults; blocks on ResNet-56 as their resnet_56_sparse
        assert (reg.lam, reg.miu, reg.every, reg.d_momentum, reg.d_weight_decay) == (0.6, 1.0, 200, 0.9, 2e-4)
        assert reg.layout.structures == ("blocks" if "resnet56" in row else "channels")
        train_phase = phases["train"]
        assert (train_phase.epochs, train_phase.lr, train_phase.milestones, train_phase.lr_gamma,
                train_phase.weight_decay) == (100, 0.01, [0.3, 0.6, 0.9], 0.1, 2e-4)
    if method == "bar":  # the distillation settings of the regularizer's defaults; the budget reached at epoch 40
        assert (reg.temperature, reg.alpha, reg.flops_target, reg.ramp) == (4.0, 0.9, 0.5, 40 * 782)
        assert reg.layout.fn == "hard_concrete" and cfg.dataset.batch_size == 64
    if method == "resrep":  # DingXiaoH/ResRep, rr/exp_resrep.py, ResNet-56
        assert (reg.lam, reg.flops_target, reg.warmup, reg.every, reg.granularity, reg.momentum, reg.min_channels) \
            == (1e-4, 0.471, 3900, 200, 4, 0.99, 1)
        train_phase = phases["train"]
        assert (train_phase.epochs, train_phase.lr, train_phase.lr_schedule) == (480, 0.01, "cosine")
        assert phases["finetune"].epochs == 0 and cfg.dataset.batch_size == 64 and not cfg.optimizer.nesterov
