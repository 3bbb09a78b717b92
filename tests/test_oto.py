"""OTO: zero-invariant groups are exact on every model family, HSPG's steps are its update rule (float64), and a
digits run prunes right after training with no fine-tuning and no change in accuracy."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F

from conftest import FAST_TRAIN, compose
from regprune.models import MODELS, build_model
from regprune.pruning import Threshold, ZeroInvariantGroups, ZeroInvariantNorm, compact, select
from regprune.pruning.verify import randomise_bn
from regprune.regularizers import HSPG

pytestmark = pytest.mark.usefixtures("one_thread")


def family(name: str) -> type:
    factory = MODELS[name]
    return factory.func if isinstance(factory, functools.partial) else factory


# one model per family in the registry (the shortest name), with each of its pruning modes
FAMILIES = {}
for _name in sorted(MODELS, key=lambda n: (len(n), n)):
    FAMILIES.setdefault(family(_name), _name)
CASES = [(n, m) for n in sorted(FAMILIES.values())
         for m in (["inside_blocks", "coupled"] if "prune_mode" in family(n).__init__.__code__.co_varnames else [None])]


def tiny(name: str, mode: str | None) -> tuple[torch.nn.Module, tuple[int, ...]]:
    model = build_model(name, num_classes=10, in_channels=3, **({"prune_mode": mode} if mode else {}))
    size = 32 if name.startswith("vgg") else 16 if name in ("resnet50", "mobilenet_v2") else 8  # every stage runs
    return model.double().eval(), (3, size, size)


@pytest.mark.parametrize("name,mode", CASES)
def test_removing_zero_groups_changes_no_output(name, mode):
    """Zero 40% of the channels' zero-invariant groups (nothing else: not the BN statistics, not the consumers);
    the channels whose group norm is 0 are exactly those, and the compacted network computes the same outputs."""
    model, shape = tiny(name, mode)
    g = torch.Generator().manual_seed(0)
    randomise_bn(model, g)
    zig = ZeroInvariantGroups(model)
    drop = {k: torch.rand(len(idx), generator=g) < 0.4 for k, ((_, idx), *_) in zig.rows.items()}
    for d in drop.values():
        d[0] = False  # never a whole layer
    zig.zero_(drop)
    result = select(ZeroInvariantNorm()(model), Threshold(0.0))
    assert {k: (~m).tolist() for k, m in result.masks.items()} == {k: d.tolist() for k, d in drop.items()}
    small = compact(model, result.masks).eval()
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(small(x), expected, rtol=1e-10, atol=1e-10 * float(expected.abs().max()))


def test_zero_invariant_groups_hold_filters_biases_and_gates():
    """vgg_tiny: channel k of a layer owns its conv filter, BN γ_k and β_k (the conv has no bias); a pre-activation
    selection group owns its full-width BN's γ, β at the selected positions."""
    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    rows = ZeroInvariantGroups(model).rows["features.1"]
    assert [p.shape for p, _ in rows] == [(32, 1, 3, 3), (32,), (32,)]
    pre = build_model("preresnet164", num_classes=10, in_channels=3)
    rows = ZeroInvariantGroups(pre).rows["layer1.1.bn1"]
    bn1 = pre.get_submodule("layer1.1.bn1")
    assert [p for p, _ in rows] == [bn1.weight, bn1.bias]
    assert rows[0][1].tolist() == pre.get_submodule("layer1.1.select").index.tolist()


def model_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = build_model("vgg_tiny", num_classes=10, in_channels=1).double()
    x = torch.randn(8, 1, 16, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (8,), generator=g)
    return model, x, y


def group_lasso(zig: ZeroInvariantGroups) -> torch.Tensor:
    """Σ_g Σ_k ‖x_{g,k}‖₂ written out with autograd (rows gathered by hand)."""
    total = torch.zeros((), dtype=torch.float64)
    for rows in zig.rows.values():
        sq = sum(p[i].reshape(len(i), -1).pow(2).sum(1) for p, i in rows)
        total = total + sq.sqrt().sum()
    return total


def test_hspg_adds_the_group_lasso_gradient_and_none_on_zero_groups():
    model, x, y = model_batch()
    reg = HSPG(lam=0.3, eps=0.0)
    reg.attach(model)
    reg.zig.zero_({k: torch.arange(len(i)) < 2 for k, ((_, i), *_) in reg.zig.rows.items()})  # 2 zero groups each
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    loss_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    reg.after_backward()
    penalty_grads = torch.autograd.grad(0.3 * group_lasso(reg.zig), list(model.parameters()), allow_unused=True)
    for (n, p), extra in zip(model.named_parameters(), penalty_grads, strict=True):
        expected = loss_grads[n] + (torch.nan_to_num(extra) if extra is not None else 0.0)  # d‖0‖ := 0
        torch.testing.assert_close(p.grad, expected, rtol=1e-12, atol=1e-15)
    assert float(reg.penalty()) == pytest.approx(0.3 * float(group_lasso(reg.zig).detach()))


def test_half_space_step_projects_groups_that_leave_the_half_space_and_keeps_zeros():
    """With x before and x̂ after an SGD step: a group becomes exactly 0 iff ⟨x̂, x⟩ < ε‖x‖² or x = 0; every other
    parameter keeps the optimizer's value. In warm-up epochs nothing is projected."""
    model, x, y = model_batch(1)
    eps = 0.9
    reg = HSPG(lam=0.25, eps=eps, warmup_epochs=1)
    reg.attach(model)
    reg.zig.zero_({k: torch.arange(len(i)) == 0 for k, ((_, i), *_) in reg.zig.rows.items()})
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        reg.after_backward()
        before = copy.deepcopy(model.state_dict())
        opt.step()
        stepped = copy.deepcopy(model.state_dict())
        reg.after_step(0.5)
        return before, stepped

    reg.on_epoch(0)  # warm-up: a plain step, zeros may leave zero
    before, stepped = step()
    assert all(torch.equal(v, stepped[k]) for k, v in model.state_dict().items())

    reg.on_epoch(1)
    before, stepped = step()
    names = {id(p): n for n, p in model.named_parameters()}
    projected = 0
    for rows in reg.zig.rows.values():
        old = sum((before[names[id(p)]][i].reshape(len(i), -1).pow(2).sum(1) for p, i in rows))
        dot = sum(((before[names[id(p)]][i] * stepped[names[id(p)]][i]).reshape(len(i), -1).sum(1) for p, i in rows))
        zero = (dot < eps * old) | (old == 0)
        projected += int(zero.sum())
        for p, i in rows:
            now = p.detach()[i]
            assert (now[zero] == 0).all()
            torch.testing.assert_close(now[~zero], stepped[names[id(p)]][i][~zero], rtol=0, atol=0)
    total = sum(len(i) for (_, i), *_ in reg.zig.rows.values())
    assert len(reg.zig.rows) < projected < total  # some groups projected, not all
    owned = {id(p) for p in reg.zig.params}
    for n, p in model.named_parameters():
        if id(p) not in owned:
            assert torch.equal(p.detach(), stepped[n])


@pytest.mark.parametrize("kwargs,match", [({"eps": -0.1}, "eps=-0.1 is outside"), ({"eps": 1.0}, "eps=1.0 is outside"),
                                          ({"warmup_epochs": -1}, "warmup_epochs=-1"), ({"lam": -1.0}, "lam=-1.0")])
def test_hspg_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HSPG(**kwargs)


def test_oto_on_digits_prunes_after_training_with_no_fine_tuning_and_no_change(tmp_path):
    from regprune.run import run

    cfg = compose([*FAST_TRAIN, "schedule=oto", "regularizer=oto", "regularizer.lam=0.05", "regularizer.eps=0.5",
                   "schedule.train.epochs=3", f"run.root={tmp_path}"])
    metrics = run(cfg)
    assert metrics["status"] == "complete" and "acc_finetuned_final" not in metrics
    assert metrics["prune_criterion"] == "threshold" and metrics["prune_importance"] == "zig_l2"
    assert metrics["channels_pruned_ratio"] > 0 and metrics["macs"] < metrics["macs_unpruned"]
    assert metrics["acc_pruned"] == metrics["acc_pruned_masked"] == metrics["acc_trained_final"]
