"""Gates (docs/methods.md, Gates): installed from the channel groups of every model family, folded exactly
(float64) without leaving a gated module, scored, recorded in the spec, and pruned exactly — whole residual
branches included; the FLOPs of a gated network equal the MACs of the pruned one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regprune.cost import count_macs, macs_at_widths
from regprune.errors import UserError
from regprune.models import MODELS, VGG, BottleneckResNet, DenseNet, MobileNetV2, PreResNet, ResNet
from regprune.models.gates import GATED, CompactorBatchNorm2d
from regprune.pruning import Threshold, apply_masks, compact, select, widths_after
from regprune.pruning.channel_cost import ChannelCost, OutputSizes
from regprune.pruning.gates import GateLayout, fold_gates, gate_scores, gated_branches, install_gates
from regprune.pruning.io import model_from_spec, model_payload
from regprune.pruning.verify import randomise_bn

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (3, 8, 8)
# a small member of every family in the registry (test_every_family_is_covered keeps the list complete)
SMALL = {VGG: {"depth": "vgg_tiny"}, ResNet: {"depth": 14}, PreResNet: {"depth": 20}, DenseNet: {"depth": 10},
         BottleneckResNet: {"layers": [1, 2, 1, 1]}, MobileNetV2: {}}
MODES = {VGG: [None], MobileNetV2: ["inside_blocks", "coupled"]}
CASES = [(cls, mode) for cls in SMALL for mode in MODES.get(cls, ["inside_blocks", "coupled"])]
LAYOUTS = {"channels": GateLayout("channels"), "step": GateLayout("channels", "step"),
           "smooth_l0": GateLayout("channels", "smooth_l0", eps=0.1),
           "hard_concrete": GateLayout("channels", "hard_concrete"), "blocks": GateLayout("blocks"),
           "compactors": GateLayout("compactors"), "knockoffs": GateLayout("knockoffs", init=0.5)}


def small_model(cls, mode, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = cls(num_classes=10, in_channels=3, **SMALL[cls], **({} if mode is None else {"prune_mode": mode}))
    randomise_bn(model.double(), torch.Generator().manual_seed(seed))
    return model


def supported(cls, mode, layout: str) -> bool:
    """Block gates need residual branches; compactors one conv + one BN per group (VGG, ResNets inside blocks)."""
    if layout == "blocks":
        return cls in (ResNet, PreResNet, BottleneckResNet)
    if layout == "compactors":
        return cls is VGG or cls in (ResNet, BottleneckResNet) and mode == "inside_blocks"
    return True


def randomise_gates(gated: dict[str, nn.Module], g: torch.Generator, zero: float = 0.0) -> None:
    """Gate values away from the identity (a share ``zero`` of the scale gates exactly 0)."""
    with torch.no_grad():
        for m in gated.values():
            if isinstance(m, CompactorBatchNorm2d):
                n = m.compactor.shape[0]
                m.compactor.add_(0.3 * torch.randn(n, n, generator=g, dtype=m.compactor.dtype) / n ** 0.5)
            else:
                m.gate.copy_(torch.rand(m.gate.shape, generator=g, dtype=m.gate.dtype) + 0.2)
                m.gate[torch.rand(m.gate.shape, generator=g) < zero] = 0.0


def test_every_family_is_covered():
    assert {getattr(factory, "func", factory) for factory in MODELS.values()} <= set(SMALL)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("cls,mode", CASES, ids=[f"{c.__name__}-{m}" for c, m in CASES])
def test_folding_is_exact_and_leaves_no_gate(cls, mode, layout):
    model = small_model(cls, mode)
    keys = set(model.state_dict())
    if not supported(cls, mode, layout):
        with pytest.raises(ValueError, match="block gates need residual blocks|compactors need every channel group"):
            install_gates(model, LAYOUTS[layout])
        return
    gated = install_gates(model, LAYOUTS[layout])
    assert gated and all(isinstance(m, nn.BatchNorm2d) for m in gated.values())
    randomise_gates(gated, torch.Generator().manual_seed(1))
    model.eval()
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        fold_gates(model)
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)
    assert not any(isinstance(m, GATED) for m in model.modules())
    assert all(type(model.get_submodule(n)) is nn.BatchNorm2d for n in gated)
    assert set(model.state_dict()) == keys  # the architecture of the ungated model: nothing added


def test_scale_gates_fold_exactly_in_training_mode_too():
    """BN(x)·g = (γg)x̂ + βg whatever statistics normalise x̂: scale gates need no eval mode."""
    model = small_model(ResNet, "coupled")
    randomise_gates(install_gates(model, GateLayout("channels")), torch.Generator().manual_seed(1))
    x = torch.randn(4, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        before = model.train()(x)
        fold_gates(model)
        torch.testing.assert_close(model(x), before, rtol=1e-12, atol=1e-12)


def test_compactor_merge_needs_eval_mode():
    model = small_model(VGG, None)
    install_gates(model, GateLayout("compactors"))
    with pytest.raises(UserError, match="call model.eval\\(\\) first"):
        fold_gates(model.train())
    assert any(isinstance(m, CompactorBatchNorm2d) for m in model.modules())  # nothing folded


def test_compaction_refuses_a_gated_model():
    model = small_model(VGG, None)
    install_gates(model, GateLayout("channels"))
    masks = {g.name: torch.ones(model.widths[g.width], dtype=torch.bool) for g in model.channel_groups()}
    with pytest.raises(UserError, match="gates folded first"):
        compact(model, masks)


@pytest.mark.parametrize("layout", ["step", "blocks", "compactors", "knockoffs"])
def test_gates_round_trip_through_the_spec(layout):
    """Checkpoints rebuild the gates: the spec records them, model_from_spec reinstalls them."""
    model = small_model(ResNet, "inside_blocks")
    randomise_gates(install_gates(model, LAYOUTS[layout]), torch.Generator().manual_seed(1))
    payload = model_payload(model)
    assert set(payload["spec"]["gates"]) == {n for n, m in model.named_modules() if isinstance(m, GATED)}
    rebuilt = model_from_spec(payload["spec"]).double()
    rebuilt.load_state_dict(payload["state_dict"], strict=True)
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), rtol=0, atol=0)
    assert install_gates(rebuilt, LAYOUTS[layout]).keys() == payload["spec"]["gates"].keys()  # kept, not redone
    with pytest.raises(ValueError, match="already carries other gates"):
        install_gates(rebuilt, LAYOUTS["channels" if layout != "channels" else "blocks"])


def test_gate_scores_are_zero_exactly_where_gates_close():
    model = small_model(ResNet, "coupled")
    gated = install_gates(model, GateLayout("channels", "step"))
    for m in gated.values():
        m.gate.data = torch.linspace(-1, 1, m.gate.numel(), dtype=m.gate.dtype)
    scores = gate_scores(model)
    modules = dict(model.named_modules())
    for g in model.channel_groups():
        closed = torch.stack([modules[b].factor()[model.gate_index(g, b)] == 0 for b in g.gates]).all(0)
        assert torch.equal(scores[g.name] == 0, closed)
        assert (scores[g.name] >= 0).all()


def test_block_gates_score_the_groups_inside_their_branch():
    model = small_model(ResNet, "coupled")
    gated = install_gates(model, GateLayout("blocks"))
    for i, m in enumerate(gated.values()):
        m.gate.data.fill_(0.1 * i)
    scores = gate_scores(model)
    for i, branch in enumerate(model.branches()):
        (inside,) = [g for g in model.channel_groups() if g.branch == branch.name]
        assert torch.allclose(scores[inside.name], torch.full_like(scores[inside.name], 0.1 * i))
    stream = [g.name for g in model.channel_groups() if not g.branch]
    assert stream and all(torch.isinf(scores[n]).all() for n in stream)  # no gate decides them
    with pytest.raises(UserError, match="importance=gate needs a model with gates"):
        gate_scores(small_model(ResNet, "coupled"))


def prune_closed(model) -> tuple[nn.Module, list[str]]:
    """The prune phase on a gated model: zero detection on the gate scores, fold, mask, compact."""
    result = select(gate_scores(model), Threshold(0.0), on_empty="keep_min", branches=gated_branches(model))
    fold_gates(model)
    apply_masks(model, result.masks)
    return compact(model, result.masks), result.blocks_removed


@pytest.mark.parametrize("layout", ["channels", "blocks"])
@pytest.mark.parametrize("cls,mode", [c for c in CASES if c[0] in (ResNet, PreResNet, BottleneckResNet)],
                         ids=lambda c: getattr(c, "__name__", c))
def test_closed_gates_are_removed_exactly(cls, mode, layout):
    """Structures whose gate is exactly 0 leave the network without changing its output (SSS's removal): channels,
    and whole residual branches — the block keeps only its shortcut (its inner widths become 0)."""
    model = small_model(cls, mode)
    gated = install_gates(model, GateLayout(layout))
    randomise_gates(gated, torch.Generator().manual_seed(1), zero=0.3 if layout == "channels" else 0.0)
    if layout == "blocks":
        first, last = list(gated)[0], list(gated)[-1]
        gated[first].gate.data.zero_()
        gated[last].gate.data.zero_()
    model.eval()
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        small, removed = prune_closed(model)
        torch.testing.assert_close(small.eval()(x), before, rtol=1e-12, atol=1e-12)
    if layout == "blocks":
        assert len(removed) == 2
        inside = [g for g in model.channel_groups() if g.branch in removed]
        assert inside and all(small.widths[g.width] == 0 for g in inside)
        assert count_macs(small, SHAPE) < count_macs(model, SHAPE)


def test_a_branch_is_emptied_only_whole():
    """Emptying some groups of a branch (not all) is still an emptied layer; all of them remove the branch."""
    model = small_model(PreResNet, "inside_blocks")
    branches = {g.name: g.branch for g in model.channel_groups() if g.branch}
    inside = [g for g, b in branches.items() if b == "layer1.0"]
    scores = {g.name: torch.ones(model.widths[g.width]) for g in model.channel_groups()}
    scores[inside[0]] = torch.zeros_like(scores[inside[0]])
    with pytest.raises(UserError, match=f"would leave 0 channel\\(s\\) in {inside[0]}"):
        select(scores, Threshold(0.0), branches=branches)
    for g in inside:
        scores[g] = torch.zeros_like(scores[g])
    result = select(scores, Threshold(0.0), branches=branches)
    assert result.blocks_removed == ["layer1.0"] and all(result.kept()[g] == 0 for g in inside)


def test_a_block_without_branch_computes_its_shortcut():
    widths = ResNet(depth=14).widths
    widths[5] = 0  # block layer1.0
    model = ResNet(depth=14, widths=widths).eval()
    block = model.layer1[0]
    assert sum(p.numel() for p in (block.conv1.weight, block.conv2.weight, block.bn1.weight)) == 0
    x = torch.relu(torch.randn(2, 16, 8, 8))
    torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize("cls,mode", CASES, ids=[f"{c.__name__}-{m}" for c, m in CASES])
def test_channel_cost_is_the_macs_of_the_pruned_network(cls, mode):
    """Counts per group (with an emptied branch where the family has them) give macs_at_widths exactly; gate
    factors give a differentiable relaxation, linear in each group's count."""
    model = small_model(cls, mode).float().eval()
    sizes = OutputSizes(model)
    with torch.no_grad():
        model(torch.zeros(1, *SHAPE))
    sizes.remove()
    cost = ChannelCost(model, sizes.hw)
    assert float(cost({})) == count_macs(model, SHAPE)
    g = torch.Generator().manual_seed(0)
    masks = {grp.name: torch.rand(model.widths[grp.width], generator=g) < 0.6 for grp in model.channel_groups()}
    for m in masks.values():
        m[0] = True
    dead = next((grp.branch for grp in model.channel_groups() if grp.branch), None)
    for grp in model.channel_groups():
        if dead and grp.branch == dead:
            masks[grp.name][:] = False
    on = {k: int(m.sum()) for k, m in masks.items()}
    assert float(cost(on)) == macs_at_widths(model, widths_after(model, masks), SHAPE)
    name = model.channel_groups()[-1].name
    counts = {k: torch.tensor(float(v), dtype=torch.float64, requires_grad=k == name) for k, v in on.items()}
    (grad,) = torch.autograd.grad(cost(counts), counts[name])
    assert float(grad) == float(cost({**on, name: on[name] + 1}) - cost(on))
