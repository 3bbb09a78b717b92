"""Every penalty changes each gradient by exactly its derivative (float64, against autograd of penalty()),
every proximal step is exactly its operator, and every regularizer prunes through the one compaction."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import FAST, ROOT, compose
from regprune import regularizers as R
from regprune.cost import count_macs
from regprune.models import build_model
from regprune.models.base import ChannelGroup, PrunableModel
from regprune.pruning import Threshold, compact, load_pruned, select, valley_threshold
from regprune.regularizers import prox
from regprune.regularizers.groups import group_scores, weight_groups
from regprune.regularizers.rsnli import channel_costs

SHAPES = {"vgg_tiny": (1, 16, 16), "vgg11": (3, 32, 32), "residual": (3, 8, 8), "resnet20": (3, 16, 16),
          "preresnet164": (3, 16, 16), "densenet40": (3, 16, 16)}


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyResidual(PrunableModel):
    """A residual stream coupled across two producers (stem, conv2) and two gates, as ResNets declare it:
    group "stream" = stem/bn0 and conv2/bn2 outputs, consumed by conv1 and the classifier."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: list[int] | None = None):
        super().__init__()
        self.widths = list(widths or [6, 5])
        c, h = self.widths
        self.stem, self.bn0 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv1, self.bn1 = nn.Conv2d(c, h, 3, padding=1, bias=False), nn.BatchNorm2d(h)
        self.conv2, self.bn2 = nn.Conv2d(h, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, num_classes)

    def arch_kwargs(self) -> dict:
        return {"num_classes": self.classifier.out_features, "in_channels": self.stem.in_channels}

    def channel_groups(self) -> list[ChannelGroup]:
        return [ChannelGroup("stream", 0, gates=("bn0", "bn2"), out=("stem", "bn0", "conv2", "bn2"),
                             inp=("conv1", "classifier")),
                ChannelGroup("bn1", 1, gates=("bn1",), out=("conv1", "bn1"), inp=("conv2",))]

    def forward(self, x):
        s = F.relu(self.bn0(self.stem(x)))
        s = F.relu(s + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(s))))))
        return self.classifier(s.mean((2, 3)))


def model_and_batch(name: str = "vgg_tiny", dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[name]
    if name == "residual":
        model = TinyResidual().to(dtype)
    else:
        model = build_model(name, num_classes=10, in_channels=shape[0]).to(dtype)
    for bn in model.gate_modules().values():  # γ of both signs, away from 0 (nondifferentiable there)
        mag = 0.02 + torch.rand(bn.weight.shape, generator=g, dtype=dtype)
        sign = torch.where(torch.rand(bn.weight.shape, generator=g) < 0.2, -1.0, 1.0).to(dtype)
        bn.weight.data = mag * sign
    x = torch.randn(4, *shape, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (4,), generator=g)
    return model, x, y


def backward(model, x, y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


# subgradient-mode regularizers, with parameters that make every branch of the penalty active
SUBGRADIENT = {
    "l1": lambda: R.BNL1(1e-2),
    "lp_half": lambda: R.BNLp(1e-2, p=0.5),
    "lp_3_4": lambda: R.BNLp(1e-2, p=0.75),
    "lp_2_3": lambda: R.BNLp(1e-2, p=2 / 3),
    "tl1": lambda: R.BNTL1(1e-2, a=0.5),
    "mcp": lambda: R.BNMCP(0.1, gamma_sat=0.5),  # a = 5: both the quadratic and the flat part
    "scad": lambda: R.BNSCAD(0.1, gamma_sat=0.5),  # a = 5: all three pieces over γ ∈ [0.02, 1.02]
    "polarization": lambda: R.Polarization(1e-2, t=1.2),
    "rsnli": lambda: R.CostWeightedL1(1e-2, update="subgradient"),
    "group_lasso": lambda: R.GroupLasso(1e-2),
    "group_lasso_prunable": lambda: R.GroupLasso(1e-2, penalize="prunable", exclude_first=False),
    "group_lasso_channel": lambda: R.GroupLasso(1e-2, groups="channels", penalize="prunable"),
    "group_lasso_bn": lambda: R.GroupLasso(1e-2, bn=True),
    "oicsr": lambda: R.GroupLasso(1e-2, groups="oic", penalize="prunable", exclude_first=False),
    "oicsr_exclude_first": lambda: R.GroupLasso(1e-2, groups="oic", penalize="prunable"),
    "l12": lambda: R.L12(1e-3),
    "l12_bn": lambda: R.L12(1e-3, bn=True),
    "l12_smooth": lambda: R.L12(1e-3, smooth=0.008),
    "gl_half": lambda: R.GroupLHalf(1e-2, exclude_first=False),
    "gl_half_smooth": lambda: R.GroupLHalf(1e-2, smooth=0.008),
    "hgl": lambda: R.HGL(1e-3, 1e-2, m_star=None),
    "hgl_split": lambda: R.HGL(1e-3, 1e-2, m_star_rel=1.0),  # m* = each layer's median: both branches used
    "greg": None,  # λ set > 0 below
}


def make(name: str, model):
    if name == "greg":
        reg = R.GrowingL2(ratio=0.5)
        reg.attach(model)
        reg.lams = {k: 0.3 for k in reg.lams}
        reg.iteration = 1  # not an update iteration: λ stays 0.3
        return reg
    reg = SUBGRADIENT[name]()
    reg.attach(model)
    return reg


@pytest.mark.parametrize("model_name", ["vgg_tiny", "vgg11", "residual", "resnet20", "preresnet164", "densenet40"])
@pytest.mark.parametrize("name", sorted(SUBGRADIENT))
def test_after_backward_adds_exactly_the_penalty_gradient(name, model_name):
    model, x, y = model_and_batch(model_name)
    reg = make(name, model)
    backward(model, x, y)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    reg.after_backward()
    params = dict(model.named_parameters())
    expected = torch.autograd.grad(reg.penalty(), list(params.values()), allow_unused=True)
    changed = 0
    for (n, p), e in zip(params.items(), expected, strict=True):
        e = torch.zeros_like(p) if e is None else e
        torch.testing.assert_close(p.grad - before[n], e, rtol=1e-10, atol=1e-14, msg=f"{name}: {n}")
        changed += bool(e.abs().sum() > 0)
    assert changed > 0
    if name in ("l1", "lp_half", "tl1", "mcp", "scad", "polarization", "rsnli"):  # BN γ only
        gates = {f"{b}.weight" for b in model.gate_modules()}
        assert all((p.grad == before[n]).all() for n, p in params.items() if n not in gates)


def test_gate_gradients_of_bn_penalties_are_the_closed_forms():
    """Against the formulas of docs/methods.md directly (not only autograd)."""
    model, x, y = model_and_batch()
    gam = torch.cat([bn.weight.detach() for bn in model.gate_modules().values()])
    s = gam.sign()
    a = gam.abs()
    lam = 0.1
    cases = {
        R.BNL1(lam): lam * s,
        R.BNLp(lam, p=0.5): lam * 0.5 * s * a ** -0.5,
        R.BNTL1(lam, a=0.5): lam * 0.5 * 1.5 * s / (0.5 + a) ** 2,
        R.BNMCP(lam, gamma_sat=0.5): s * (lam - a / 5).clamp_min(0),
        R.BNSCAD(lam, gamma_sat=0.5): s * torch.where(a <= lam, lam, ((5 * lam - a) / 4).clamp_min(0)),
    }
    for reg, want in cases.items():
        reg.attach(model)
        backward(model, x, y)
        before = torch.cat([bn.weight.grad.clone() for bn in model.gate_modules().values()])
        reg.after_backward()
        after = torch.cat([bn.weight.grad for bn in model.gate_modules().values()])
        torch.testing.assert_close(after - before, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("p", [0.5, 0.75])
def test_lp_gradient_is_finite_at_exact_zero(p):
    model, x, y = model_and_batch()
    reg = R.BNLp(1e-2, p=p, eps=1e-4)
    reg.attach(model)
    bn = next(iter(model.gate_modules().values()))
    bn.weight.data[:3] = torch.tensor([0.0, 1e-30, -1e-12], dtype=bn.weight.dtype)
    backward(model, x, y)
    before = bn.weight.grad.clone()
    reg.after_backward()
    d = bn.weight.grad - before
    assert torch.isfinite(torch.cat([g.grad for g in reg.gammas])).all()
    assert d[0] == 0  # sign(0) = 0: an exact zero gets no penalty gradient
    bound = 1e-2 * p * 1e-4 ** (p - 1)
    torch.testing.assert_close(d[1:3], torch.tensor([bound, -bound], dtype=d.dtype))


def test_group_l_half_is_finite_on_an_all_zero_group():
    model, x, y = model_and_batch()
    conv = model.features[3]
    conv.weight.data[5] = 0.0
    for reg in (R.GroupLHalf(1e-2), R.HGL(1e-3, 1e-2), R.GroupLasso(1e-2)):
        reg.attach(model)
        backward(model, x, y)
        before = conv.weight.grad.clone()
        reg.after_backward()
        assert torch.isfinite(conv.weight.grad).all() and torch.isfinite(reg.penalty())
        assert (conv.weight.grad[5] == before[5]).all()


# prox-mode regularizers: nothing after backward, exactly the operator after the step
PROX = {
    "l1": (lambda: R.BNL1(0.5, update="prox"), lambda v, lr: prox.soft(v, lr * 0.5)),
    "lp_half": (lambda: R.BNLp(0.5, p=0.5, update="prox"), lambda v, lr: prox.half(v, lr * 0.5)),
    "lp_2_3": (lambda: R.BNLp(0.5, p=2 / 3, update="prox"), lambda v, lr: prox.two_thirds(v, lr * 0.5)),
    "tl1": (lambda: R.BNTL1(0.5, a=1.0, update="prox"), lambda v, lr: prox.tl1(v, lr * 0.5, 1.0)),
    "mcp": (lambda: R.BNMCP(0.5, gamma_sat=1.5, update="prox"), lambda v, lr: prox.firm(v, 0.5, 3.0, lr)),
    "scad": (lambda: R.BNSCAD(0.5, gamma_sat=2.0, update="prox"), lambda v, lr: prox.scad(v, 0.5, 4.0, lr)),
    "polarization": (lambda: R.Polarization(1e-2, a=0.9), lambda v, lr: v.clamp(0, 0.9)),
}


@pytest.mark.parametrize("name", sorted(PROX))
def test_bn_proximal_step_is_the_operator(name):
    build, op = PROX[name]
    model, x, y = model_and_batch()
    reg = build()
    reg.attach(model)
    backward(model, x, y)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    if name != "polarization":
        reg.after_backward()
        assert all((p.grad == before[n]).all() for n, p in model.named_parameters())
    gammas = [bn.weight.detach().clone() for bn in model.gate_modules().values()]
    reg.after_step(0.3)
    for g0, bn in zip(gammas, model.gate_modules().values(), strict=True):
        torch.testing.assert_close(bn.weight.detach(), op(g0, 0.3), rtol=1e-12, atol=0)
    if name != "polarization":
        assert sum(int((bn.weight == 0).sum()) for bn in model.gate_modules().values()) > 0


def test_rsnli_ista_step_and_cost_weights():
    model, x, y = model_and_batch()
    reg = R.CostWeightedL1(0.05)
    reg.attach(model)
    backward(model, x, y)  # the forward pass measures layer sizes
    gam = reg.flat().clone()
    reg.after_step(0.5)
    w = reg.channel_weights()
    torch.testing.assert_close(reg.flat(), gam.sign() * (gam.abs() - 0.5 * 0.05 * w).clamp_min(0))
    assert float(w.mean()) == pytest.approx(1.0)
    # Σ_g n_g·c_g counts every conv as producer and as consumer: 2·MACs − first conv − classifier
    costs = channel_costs(model, reg._out_hw)
    n = {g.name: model.widths[g.width] for g in model.channel_groups()}
    total = sum(n[k] * c for k, c in costs.items())
    first = 16 * 16 * 1 * 9 * 32
    assert total == 2 * count_macs(model, (1, 16, 16)) - first - 128 * 10


@pytest.mark.parametrize("groups", ["filters", "channels"])
def test_group_lasso_prox_is_radial_soft_threshold(groups):
    model, x, y = model_and_batch()
    reg = R.GroupLasso(2.0, groups=groups, update="prox", exclude_first=False, penalize="prunable")
    reg.attach(model)
    dim = 0 if groups == "filters" else 1
    weights = {id(w): w.detach().clone() for s in reg.wg.slices for w, _ in s}
    reg.after_step(0.2)
    for s in reg.wg.slices:
        (w, d), = s
        assert d == dim
        torch.testing.assert_close(w.detach(), prox.group(weights[id(w)], dim, prox.soft, 0.4), rtol=1e-12, atol=0)
    scores = reg.importance()(model)
    assert sum(int((v == 0).sum()) for v in scores.values()) > 0  # whole groups became exactly 0
    assert reg.criterion == "threshold"


def test_group_lasso_prox_refuses_overlapping_groups():
    with pytest.raises(ValueError, match="groups=oic overlap"):
        R.GroupLasso(1e-3, groups="oic", update="prox", penalize="prunable")


@pytest.mark.parametrize("approx", [False, True])
def test_weight_half_prox_is_half_thresholding(approx):
    model, x, y = model_and_batch()
    reg = R.WeightLHalf(1e-2, approx=approx)
    reg.attach(model)
    ws = [w.detach().clone() for w in reg.weights]
    reg.after_step(0.1)
    op = prox.half_approx if approx else prox.half
    for w0, w in zip(ws, reg.weights, strict=True):
        torch.testing.assert_close(w.detach(), op(w0, 1e-3), rtol=1e-12, atol=0)
    assert sum(int((w == 0).sum()) for w in reg.weights) > 0
    assert len(reg.weights) == len(model.channel_groups()) + 1  # every conv and the classifier


def test_penalties_are_scaler_agnostic_after_unscale():
    """Under AMP the penalty gradient goes on .grad after GradScaler.unscale_: the result equals fp32
    training without a scaler; adding it before unscale_ would divide it by the scale."""
    torch.manual_seed(0)
    ref, x, y = model_and_batch(dtype=torch.float32)
    amp = copy.deepcopy(ref)
    for reg_factory in (lambda: R.BNL1(1e-2), lambda: R.GroupLasso(1e-2), lambda: R.L12(1e-3)):
        for model in (ref, amp):
            model.zero_grad(set_to_none=True)
        r_ref, r_amp = reg_factory(), reg_factory()
        r_ref.attach(ref)
        r_amp.attach(amp)
        opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
        opt_amp = torch.optim.SGD(amp.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)

        F.cross_entropy(ref(x), y).backward()
        r_ref.after_backward()
        opt_ref.step()

        scaler.scale(F.cross_entropy(amp(x), y)).backward()
        scaler.unscale_(opt_amp)
        r_amp.after_backward()
        grads = [p.grad.clone() for p in amp.parameters()]
        scaler.step(opt_amp)
        scaler.update()
        for p, q in zip(ref.parameters(), amp.parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)

        # the wrong order: penalty before unscale_ ends up divided by the scale
        amp.zero_grad(set_to_none=True)
        wrong = torch.amp.GradScaler("cpu", init_scale=2.0**12)
        wrong.scale(F.cross_entropy(amp(x), y)).backward()
        r_amp.after_backward()
        wrong.unscale_(opt_amp)
        assert not all(torch.allclose(p.grad, g, rtol=1e-3) for p, g in zip(amp.parameters(), grads, strict=True))
        amp.load_state_dict(ref.state_dict())


# ---- pruning criteria -----------------------------------------------------------------------------------

def test_group_scores_zero_for_all_zero_groups():
    model, *_ = model_and_batch("vgg11")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    convs[2].weight.data[[1, 4]] = 0.0
    names = [g.name for g in model.channel_groups()]
    s = group_scores(model, "filters")
    assert set(s) == set(names) and all(torch.isfinite(v).all() for v in s.values())
    assert (s[names[2]][[1, 4]] == 0).all() and (s[names[2]] > 0).sum() == model.widths[2] - 2
    # OIC: the group of channel k also holds input slice k of its consumer; zero that too -> score 0
    oic = group_scores(model, "oic")
    assert (oic[names[2]][[1, 4]] > 0).all()
    convs[3].weight.data[:, [1, 4]] = 0.0
    assert (group_scores(model, "oic")[names[2]][[1, 4]] == 0).all()
    r = select(s, Threshold(0.0))
    assert r.kept()[names[2]] == model.widths[2] - 2
    small = compact(model, r.masks)
    assert small.widths[2] == model.widths[2] - 2


def test_weight_groups_are_generic_over_channel_groups():
    model, *_ = model_and_batch("vgg11")
    modules = dict(model.named_modules())
    for grouping, dims in (("filters", {0}), ("channels", {1}), ("oic", {0, 1})):
        wg = weight_groups(model, grouping)
        assert wg.names == [g.name for g in model.channel_groups()]
        for g, s in zip(model.channel_groups(), wg.slices, strict=True):
            assert {d for _, d in s} == dims
            for w, d in s:
                assert w.shape[d] == model.widths[g.width]
                assert any(modules[n].weight is w for n in (*g.out, *g.inp))


def test_coupled_groups_hold_every_producer_and_consumer():
    model, *_ = model_and_batch("residual")
    wg = weight_groups(model, "oic")
    stream = dict(zip(wg.names, wg.slices, strict=True))["stream"]
    assert [(w is model.stem.weight, w is model.conv2.weight, d) for w, d in stream] == [
        (True, False, 0), (False, True, 0), (False, False, 1), (False, False, 1)]
    model.stem.weight.data[2] = 0
    assert group_scores(model)["stream"][2] > 0  # conv2's filter 2 is still alive
    model.conv2.weight.data[2] = 0
    assert group_scores(model)["stream"][2] == 0
    # excluding the first conv (the stem) from the penalty keeps the stream's other producer, conv2
    wg = weight_groups(model, "filters", exclude_first=True)
    penalised = dict(zip(wg.names, wg.slices, strict=True))
    assert [w for w, _ in penalised["stream"]] == [model.conv2.weight]
    small = compact(model, select(group_scores(model), Threshold(0.0)).masks)
    assert small.widths == [5, 5] and small(torch.zeros(1, 3, 8, 8, dtype=torch.float64)).shape == (1, 10)
    costs = channel_costs(model, {"stem": 64, "conv1": 64, "conv2": 64})
    assert costs == {"stream": 64 * 3 * 9 + 64 * 5 * 9 + 64 * 5 * 9 + 10, "bn1": 64 * 6 * 9 + 64 * 6 * 9}


def test_valley_threshold_finds_first_local_minimum():
    scores = {"a": torch.tensor([0.0, 0.001, 0.004, 0.012, 0.5, 0.52]), "b": torch.tensor([0.003, 0.51, 0.7, 0.9])}
    # bins of 0.01: [4, 1, 0, ..., 0, 2, ...]: bin 1 still descends; bin 2 starts the flat valley
    assert valley_threshold(scores) == pytest.approx(0.025)
    flat = {"a": torch.tensor([0.0, 0.0, 0.025, 0.5]), "b": torch.tensor([0.6])}  # [2, 0, 1, ...]: bin 1
    assert valley_threshold(flat) == pytest.approx(0.015)
    from regprune.errors import UserError

    with pytest.raises(UserError, match="no valley"):
        valley_threshold({"a": torch.tensor([0.005, 0.015, 0.015, 0.025, 0.025, 0.025])})


def test_greg_selects_on_the_weights_its_phase_starts_from():
    """GReg-1 picks min(⌈r·n⌉, n − 1) lowest-ℓ1 filters per layer when its penalty phase attaches — not at
    construction, not in the run's compatibility check (which attaches a copy) — and never the first conv."""
    from regprune.engine.phases import Train
    from regprune.engine.schedule import Schedule
    from regprune.run import check_compatible

    model, *_ = model_and_batch()
    reg = R.GrowingL2(ratio=0.3)
    check_compatible(reg, model, Schedule(pretrain=Train(epochs=1, penalty=False), train=Train(epochs=1)))
    assert reg.selected is None
    reg.attach(model)
    groups = model.channel_groups()
    assert set(reg.selected) == {g.name for g in groups[1:]}  # exclude_first: the first conv is never selected
    for g in groups[1:]:
        conv = dict(model.named_modules())[g.out[0]]
        norms = conv.weight.detach().abs().flatten(1).sum(1)
        n = len(norms)
        assert reg.selected[g.name] == sorted(norms.argsort()[:min(math.ceil(0.3 * n), n - 1)].tolist())


def run_greg(reg, model, x, y, iterations: int) -> list[tuple[dict, bool]]:
    """The loop's calls for ``iterations`` steps (no optimizer step): λ per layer and finished() after each."""
    out = []
    for step in range(iterations):
        backward(model, x, y)
        reg.after_backward()
        reg.on_iteration(step)
        out.append((dict(reg.lams), reg.finished()))
    return out


def test_greg_grows_every_k_iterations_stops_at_lam_max_then_stabilises():
    model, x, y = model_and_batch()
    reg = R.GrowingL2(ratio=0.25, delta=0.1, every=3, lam_max=0.25, stabilize=4)
    reg.attach(model)
    trace = run_greg(reg, model, x, y, 12)
    lam = [next(iter(lams.values())) for lams, _ in trace]
    assert all(len(set(lams.values())) == 1 for lams, _ in trace)  # no layer separates by magnitude here
    assert lam == pytest.approx([0.1] * 3 + [0.2] * 3 + [0.25] * 6)  # updates at iterations 0, 3, 6
    assert reg.stabilize_from == 6 and [f for _, f in trace] == [False] * 9 + [True] * 3  # 4 iterations later


def test_greg_stops_growing_once_every_layer_is_separated_by_magnitude():
    model, x, y = model_and_batch()
    reg = R.GrowingL2(ratio=0.25, delta=0.1, every=3, lam_max=1.0, mag_ratio_limit=100.0, stabilize=0)
    reg.attach(model)
    modules = dict(model.named_modules())
    run_greg(reg, model, x, y, 4)
    assert reg.done == [] and set(reg.lams.values()) == {0.2}
    for g in model.channel_groups()[1:]:  # the selected filters shrink 1000× below the kept ones
        modules[g.out[0]].weight.data[reg.selected[g.name]] *= 1e-3
    run_greg(reg, model, x, y, 3)  # iteration 6 updates: the smoothed ratio 0.9·~1 + 0.1·~1000 > 100
    assert set(reg.done) == set(reg.lams) and list(reg.lams.values()) == pytest.approx([0.3] * len(reg.lams))
    assert reg.stabilize_from == 6 and reg.finished()


def test_greg_penalises_only_the_selected_filters_and_resumes_exactly():
    model, x, y = model_and_batch()
    reg = R.GrowingL2(ratio=0.25, delta=0.1, every=3, lam_max=0.25)
    reg.attach(model)
    run_greg(reg, model, x, y, 5)
    # a fresh regularizer given the state continues identically (attach then load_state_dict, as on resume)
    other = R.GrowingL2(ratio=0.5, delta=0.1, every=3, lam_max=0.25)
    other.attach(model)
    other.load_state_dict(copy.deepcopy(reg.state_dict()))
    assert other.selected == reg.selected and other.state_dict() == reg.state_dict()
    assert run_greg(other, model, x, y, 4) == run_greg(reg, model, x, y, 4)
    # only the selected filters (and their BN γ, β) get λ·w, exactly
    group = model.channel_groups()[1]
    conv, bn = (dict(model.named_modules())[n] for n in group.out)
    lam = reg.lams[group.name]
    backward(model, x, y)
    before = [p.grad.clone() for p in (conv.weight, bn.weight, bn.bias)]
    reg.after_backward()
    sel = reg.selected[group.name]
    for p, b in zip((conv.weight, bn.weight, bn.bias), before, strict=True):
        want = torch.zeros_like(p)
        want[sel] = lam * p.detach()[sel]
        torch.testing.assert_close(p.grad - b, want, rtol=1e-12, atol=0)
    r = select(reg.importance()(model), Threshold(0.0))
    assert all(int((~r.masks[k]).sum()) == len(v) for k, v in reg.selected.items())
    assert r.kept()[model.channel_groups()[0].name] == model.widths[0]


def test_greg_refuses_a_penalty_phase_on_initial_weights():
    from regprune.engine.phases import Prune, Train
    from regprune.engine.schedule import Schedule
    from regprune.errors import UserError
    from regprune.run import check_compatible

    model, *_ = model_and_batch()
    with pytest.raises(UserError, match="add a plain training phase before it"):
        check_compatible(R.GrowingL2(), model, Schedule(train=Train(epochs=1)))
    check_compatible(R.GrowingL2(), model, Schedule(train=Train(epochs=1), prune=Prune(), start_from="runs/x"))


def test_hgl_default_critical_magnitude_is_the_gradient_crossing():
    reg = R.HGL(2e-4, 3e-3)
    m = torch.tensor([reg.m_star], dtype=torch.float64)
    assert float(2 * reg.lam * m) == pytest.approx(float(reg.lam_half / (2 * m.sqrt())))


def test_hgl_relative_critical_magnitude_follows_each_layer_and_reports_both_branches():
    """m* = r × the layer's current median filter ℓ1 norm: the branch of a filter does not change when its
    layer's scale does, and epoch_stats gives the share of penalised filters above and below m*."""
    model, *_ = model_and_batch()
    reg = R.HGL(1e-3, 1e-2, m_star_rel=1.0, exclude_first=False)
    reg.attach(model)
    mags = [m.detach() for m in reg.magnitudes()]
    above = torch.cat([m > m.median() for m in mags])
    stats = reg.epoch_stats()
    assert stats["hgl_above_m_star_pct"] == pytest.approx(100.0 * float(above.sum()) / above.numel())
    assert 0 < stats["hgl_above_m_star_pct"] < 100 and stats["hgl_below_m_star_pct"] == pytest.approx(
        100.0 - stats["hgl_above_m_star_pct"])
    assert stats["penalised_groups"] == above.numel() == sum(model.widths)
    absolute = R.HGL(1e-3, 1e-2, m_star=float(mags[0].median()), exclude_first=False)
    absolute.attach(model)
    before = absolute.epoch_stats()["hgl_above_m_star_pct"]
    model.features[0].weight.data *= 10.0  # one layer 10× larger: with m* relative its filters keep their branches
    assert reg.epoch_stats() == stats
    assert absolute.epoch_stats()["hgl_above_m_star_pct"] > before  # with m* absolute they all move above


LI_HU_RESNET56 = ["li2024/c10_resnet56_l12", "li2024/c10_resnet56_gl_half", "li2024/c10_resnet56_hgl",
                  "li2024/c10_resnet56_group_lasso"]


@pytest.mark.parametrize("preset", LI_HU_RESNET56)
def test_li_hu_presets_penalise_every_conv_but_the_first(preset):
    """Li/Hu penalise the filters of every convolution except the first: all 54 of ResNet-56's other convs,
    not only the 27 whose channels inside_blocks pruning can remove; sparsity figures cover all of them."""
    from hydra.utils import instantiate

    cfg = compose([f"experiment={preset}"])
    model = instantiate(cfg.model, num_classes=10, in_channels=3)
    reg = instantiate(cfg.regularizer)
    reg.attach(model)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    penalised = [w for s in reg.wg.slices for w, d in s if d == 0 and w.dim() > 1]
    others = [m.weight for n, m in convs.items() if n != "conv"]
    assert len(convs) == 55 and len(penalised) == len(others) == 54
    assert {id(w) for w in penalised} == {id(w) for w in others}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    reg.after_backward()
    assert all((w.grad.flatten(1).abs().sum(1) > 0).all() for w in others)  # every filter gets the penalty
    assert (convs["conv"].weight.grad == 0).all()
    assert reg.epoch_stats()["penalised_groups"] == sum(w.shape[0] for w in others)


ZERO_DETECTION = ["tang2023/c10_vgg16", "tang2023/c100_resnet56_momentum0", "li2024/c10_resnet56_l12",
                  "li2024/c10_vgg16_gl_half", "li2024/c10_resnet20_hgl", "li2024/c10_resnet20_group_lasso"]


@pytest.mark.parametrize("preset", ZERO_DETECTION)
def test_zero_detection_removes_a_channel_exactly_when_its_filter_gamma_and_beta_are_zero(preset):
    """A zeroed filter still emits ReLU(BN(0)) = ReLU(β − γμ/σ): with the channel's γ, β in its group
    (bn=true), zero detection keeps it until all three are zero, and then removing it changes no output."""
    from hydra.utils import instantiate

    cfg = compose([f"experiment={preset}"])
    classes = 100 if "c100" in preset else 10
    model = instantiate(cfg.model, num_classes=classes, in_channels=3).double().eval()
    g = torch.Generator().manual_seed(0)
    for bn in model.modules():  # the statistics and shifts of a trained network
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g, dtype=torch.float64))
            bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=g, dtype=torch.float64))
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=g, dtype=torch.float64))
    reg = instantiate(cfg.regularizer)
    reg.attach(model)
    threshold = cfg.schedule.prune.threshold
    group = model.channel_groups()[1]
    conv, bn = (dict(model.named_modules())[n] for n in group.out)
    conv.weight.data[3] = 0.0
    assert reg.importance()(model)[group.name][3] > threshold  # β ≠ 0: the channel still acts
    bn.weight.data[3] = bn.bias.data[3] = 0.0
    scores = reg.importance()(model)
    assert scores[group.name][3] == 0
    result = select(scores, Threshold(threshold))
    assert result.kept() == {k: len(m) - (k == group.name) for k, m in result.masks.items()}
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    small = compact(model, result.masks)
    torch.testing.assert_close(small(x), model(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    ({"_target_": "BNLp", "p": 1.0}, "p=1.0"), ({"_target_": "BNLp", "p": 0.75, "update": "prox"}, "update='prox'"),
    ({"_target_": "BNMCP", "gamma_sat": 1e-4}, "gamma_sat=0.0001"),
    ({"_target_": "BNSCAD", "gamma_sat": 2e-4}, "gamma_sat=0.0002"), ({"_target_": "BNMCP", "lam": 0.0}, "lam=0.0"),
    ({"_target_": "GroupLasso", "groups": "rows"}, "groups='rows'"), ({"_target_": "HGL", "lam": 0.0}, "m_star"),
    ({"_target_": "GrowingL2", "ratio": 1.0}, "ratio=1.0"), ({"_target_": "Polarization", "t": 0}, "t=0"),
])
def test_constructors_validate(kwargs, match):
    kwargs = dict(kwargs)
    cls = getattr(R, kwargs.pop("_target_"))
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# ---- end to end: every regularizer yaml trains, prunes and compacts -----------------------------------

YAMLS = sorted(p.stem for p in (ROOT / "configs" / "regularizer").glob("*.yaml") if p.stem != "none")
# filter norms are not comparable across layers: rank them per layer; polarization needs a long run for a valley
EXTRA = {n: ["schedule.prune.scope=layer"] for n in ("group_lasso", "group_lasso_channel", "oicsr", "l12",
                                                      "gl_half", "hgl")}
EXTRA["polarization"] = ["schedule.prune.criterion=percentile"]
EXTRA["l1_2_prox"] = ["schedule.prune.criterion=percentile", "schedule.prune.scope=layer"]
EXTRA["rsnli"] = ["schedule.prune.criterion=percentile"]  # its zero detection needs more than one epoch of ISTA
EXTRA["oto"] = ["schedule.prune.criterion=percentile", "schedule.prune.scope=layer"]  # zero groups: tests/test_oto.py
EXTRA["greg"] = ["schedule=greg", "schedule.pretrain.epochs=1"]  # GReg starts from a trained model
# so do these gate methods; gate methods detect zeros, which one epoch does not reach: asked for the percentile
EXTRA |= {n: ["schedule=gates", "schedule.pretrain.epochs=1"] for n in ("dmc", "gdp", "resrep", "bar", "scop", "gal")}
for n in ("sss", "dmc", "gdp", "resrep", "bar", "scop", "gal"):
    EXTRA[n] = [*EXTRA.get(n, []), "schedule.prune.criterion=percentile", "schedule.prune.on_empty=keep_min"]


@pytest.mark.parametrize("name", YAMLS)
def test_every_regularizer_yaml_trains_prunes_and_compacts(name, tmp_path):
    from regprune.run import run

    cfg = compose([*FAST, f"regularizer={name}", f"run.root={tmp_path}", *EXTRA.get(name, [])])
    metrics = run(cfg)
    assert metrics["status"] == "complete"
    for key in ("acc_trained_final", "acc_pruned", "acc_finetuned_final"):
        assert 0 <= metrics[key] <= 100
    # every method prunes here (zero detection removes nothing after one epoch: l1_2_prox and rsnli are asked for
    # the percentile; test_l1_2_prox_zeroes_weights_and_removes_whole_channels checks zero detection itself)
    assert metrics["channels_pruned_ratio"] >= (0.45 if name != "greg" else 0.05), metrics["kept_channels"]
    assert metrics["acc_pruned"] == metrics["acc_pruned_masked"]  # compaction removed exactly the masked channels
    assert metrics["macs"] < metrics["macs_unpruned"] and metrics["params"] < metrics["params_unpruned"]


def test_greg_run_pretrains_ends_its_penalty_phase_by_its_rule_and_prunes_the_selection(tmp_path):
    """pretrain (no penalty) → GReg until its stopping rule (λ at lam_max, then ``stabilize`` iterations) ends the
    phase before its epoch ceiling → prune exactly the selected filters (half of every layer but the first)."""
    import csv
    from pathlib import Path

    from regprune.run import run

    cfg = compose([*FAST, "regularizer=greg", "regularizer.delta=0.05", "regularizer.every=1",
                   "regularizer.stabilize=5", "schedule=greg", "schedule.pretrain.epochs=2",
                   "schedule.pretrain.weight_decay=0.0", "schedule.train.epochs=20", "schedule.train.weight_decay=0.0",
                   "schedule.prune.criterion=auto",
                   f"run.root={tmp_path}"])
    metrics = run(cfg)
    rows = list(csv.DictReader(open(Path(metrics["run_dir"]) / "history.csv")))
    assert [r["phase"] for r in rows[:2]] == ["pretrain", "pretrain"] and "acc_pretrained_final" in metrics
    train = [r for r in rows if r["phase"] == "train"]
    assert len(train) < 20 and float(train[-1]["greg_stabilizing"]) == 1.0  # 20 λ steps + 5: the 2nd epoch
    assert float(train[-1]["greg_lam_max"]) == pytest.approx(1.0)
    kept, total = metrics["kept_channels"], metrics["total_channels"]
    first = next(iter(total))
    assert kept[first] == total[first]
    assert all(kept[k] == total[k] - math.ceil(0.5 * total[k]) for k in total if k != first)


def test_l1_2_prox_zeroes_weights_and_removes_whole_channels(tmp_path):
    """Tang et al.'s stochastic proximal gradient on digits: exact zeros, whole filters zero, and the
    compacted model is smaller by exactly those channels."""
    from regprune.run import run

    cfg = compose(["model=vgg_tiny", "dataset=digits", "regularizer=l1_2_prox", "regularizer.lam=3e-2",
                   "optimizer.lr=0.05", "schedule.train.epochs=3", "schedule.finetune.epochs=1", "progress=false",
                   "latency=false", "magnitude_every=3", f"run.root={tmp_path}"])
    metrics = run(cfg)
    assert metrics["prune_criterion"] == "threshold" and metrics["prune_threshold"] == 0.0
    import json
    from pathlib import Path

    mags = [json.loads(ln) for ln in (Path(metrics["run_dir"]) / "magnitudes.jsonl").read_text().splitlines()]
    trained = next(m for m in mags if m["phase"] == "train")["overall"]
    assert trained["zero"] > 0.5 * trained["weights"] and trained["filters_zero"] > 0
    assert metrics["channels_pruned_ratio"] > 0
    kept, total = metrics["kept_channels"], metrics["total_channels"]
    assert sum(kept.values()) < sum(total.values())
    assert metrics["macs"] < metrics["macs_unpruned"]


def test_pruning_a_model_the_penalty_flattened_completes(tmp_path):
    """A λ so strong that every γ ends at 0 (a calibration grid's top value) is a poor result, not a bad input: the
    run that prunes that model completes (only a run whose first phase trains with the penalty checks that it acts:
    tests/test_bad_inputs.py)."""
    from regprune.run import run

    common = [*FAST, "regularizer=lp_half", "regularizer.update=prox", "regularizer.lam=30", f"run.root={tmp_path}"]
    trained = run(compose([*common, "schedule.stop_after=train", "run.id=trained"]))
    gammas = torch.cat([m.weight.detach().flatten() for m in load_pruned(Path(trained["run_dir"]) / "trained.pt")
                        .modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert not gammas.any()  # every gate γ is exactly 0: the penalty is flat everywhere now
    pruned = run(compose([*common, f"schedule.start_from={trained['run_dir']}", "schedule.prune.criterion=percentile",
                          "run.id=pruned"]))
    assert pruned["status"] == "complete" and pruned["acc_pruned"] == pruned["acc_pruned_masked"]
