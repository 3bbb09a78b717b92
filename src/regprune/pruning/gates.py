"""Gates, generically from a model's channel groups (docs/methods.md, Gates): install, score, fold.

``install_gates``  swaps BatchNorms for gated ones (``regprune.models.gates``): every group's gate BN gets one
                   factor per channel (``channels``), every residual branch's last BN one factor for the whole
                   branch (``blocks``), or every group's BN a compactor (``compactors``: groups made of one conv
                   and one BN only), or every group's gate BN SCOP's real/knockoff factors (``knockoffs``). The model
                   spec records them; ``restore_gates`` rebuilds them from it.
``gate_scores``    one score per channel of every group, 0 exactly where the gates close the channel (≤ 0 for
                   knockoff gates: SCOP's β − (1 − β)).
``gated_branches`` the groups inside block-gated branches: the guards let pruning empty such a branch whole.
``fold_gates``     every gate folded away: γ·f and β·f (exact for any factor f, in train and eval mode), a knockoff
                   gate dropped (its BN is what the network computes without knockoffs), or the
                   compactor Q merged into the producer conv and the BN, which becomes an identity plus a shift
                   (exact with the BN's running statistics, so only in eval mode). No gated module is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..models.base import ChannelGroup, PrunableModel
from ..models.gates import (
    GATE_FUNCTIONS,
    GATED,
    CompactorBatchNorm2d,
    GatedBatchNorm2d,
    KnockoffBatchNorm2d,
    bn_kwargs,
    gated_copy,
)
from .importance import Scores

STRUCTURES = ("channels", "blocks", "compactors", "knockoffs")


@dataclass(frozen=True)
class GateLayout:
    """Which gates a method trains: ``structures`` (see the module docstring), the gate function ``fn`` of
    scale gates (``regprune.models.gates.gate_factor``), the initial parameter ``init`` and ``eps`` of the
    smoothed ℓ0 gate."""

    structures: str = "channels"
    fn: str = "identity"
    init: float = 1.0
    eps: float = 0.0

    def __post_init__(self):
        if self.structures not in STRUCTURES:
            raise ValueError(f"structures={self.structures!r}: choose from {list(STRUCTURES)}")
        if self.fn not in GATE_FUNCTIONS:
            raise ValueError(f"gate function {self.fn!r}: choose from {list(GATE_FUNCTIONS)}")

    def hosts(self, model: PrunableModel) -> dict[str, dict]:
        """The BNs to gate and each one's gate config; a ValueError if the model lacks the structures."""
        modules = dict(model.named_modules())
        scale = {"kind": "scale", "fn": self.fn, "gate_eps": self.eps}
        if self.structures == "channels":
            return {n: {**scale, "size": m.num_features} for n, m in model.gate_modules().items()}
        if self.structures == "knockoffs":
            return {n: {"kind": "knockoff"} for n in model.gate_modules()}
        if self.structures == "blocks":
            branches = model.branches()
            if not branches:
                raise ValueError(f"block gates need residual blocks, and {type(model).__name__} declares none")
            return {b.bn: {**scale, "size": 1} for b in branches}
        for g in model.channel_groups():
            producer_conv(model, g, modules)
        return {g.gates[0]: {"kind": "compactor"} for g in model.channel_groups()}


def producer_conv(model: PrunableModel, group: ChannelGroup, modules: dict[str, nn.Module]) -> nn.Conv2d:
    """The one conv a compactor group's BN follows; a ValueError for a group that is not one conv + one BN."""
    convs = [m for m in group.out if isinstance(modules[m], nn.Conv2d)]
    ok = (len(convs) == 1 and modules[convs[0]].groups == 1 and len(group.gates) == 1 and group.gates[0] in group.out
          and not group.select and not group.offsets and len(group.out) == 2)
    if not ok:
        raise ValueError(f"compactors need every channel group to be one conv followed by one BatchNorm, and group "
                         f"{group.name} of {type(model).__name__} is not (convs {convs}, BNs {list(group.gates)})")
    return modules[convs[0]]


def replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def installed(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, GATED)}


def install_gates(model: PrunableModel, layout: GateLayout) -> dict[str, nn.Module]:
    """Gate the BNs ``layout`` names (in place) and return the gated modules by name. A model that already
    carries exactly these gates (a resumed run, the next phase) keeps them; other gates are an error."""
    wanted = layout.hosts(model)
    present = installed(model)
    if present:
        if {n: m.gate_config() for n, m in present.items()} != wanted:
            raise ValueError(f"the model already carries other gates ({sorted(present)[:3]}...); fold them first")
        return present
    modules = dict(model.named_modules())
    for name, config in wanted.items():
        replace(model, name, gated_copy(modules[name], config, layout.init))
    return installed(model)


def restore_gates(model: PrunableModel, gates: dict[str, dict]) -> None:
    """Reinstall the gates a model spec records (their values come with the state dict)."""
    modules = dict(model.named_modules())
    for name, config in gates.items():
        replace(model, name, gated_copy(modules[name], config))


@torch.no_grad()
def gate_scores(model: PrunableModel) -> Scores:
    """Per group: the mean over its channel-gated BNs of their channel scores, times the block gate's score when
    the group lies in a gated branch; +inf where no gate decides the group (a criterion never prunes it)."""
    modules = dict(model.named_modules())
    if not installed(model):
        raise UserError("importance=gate needs a model with gates: train it with a gate regularizer (sss, dmc, "
                        "gdp, resrep) or choose another schedule.prune.importance")
    blocks = {b.name: modules[b.bn].channel_scores().float().cpu() for b in model.branches()
              if isinstance(modules[b.bn], GatedBatchNorm2d) and modules[b.bn].gate.numel() == 1}
    scores = {}
    for g in model.channel_groups():
        width = model.widths[g.width]
        gated = [b for b in g.gates if isinstance(modules[b], (CompactorBatchNorm2d, KnockoffBatchNorm2d))
                 or isinstance(modules[b], GatedBatchNorm2d) and modules[b].gate.numel() == modules[b].num_features]
        per_bn = [modules[b].channel_scores().float().cpu()[model.gate_index(g, b).cpu()] for b in gated]
        s = torch.stack(per_bn).mean(0) if per_bn else None
        if g.branch in blocks:
            s = blocks[g.branch].expand(width) if s is None else s * blocks[g.branch]
        scores[g.name] = s if s is not None else torch.full((width,), float("inf"))
    return scores


def gated_branches(model: PrunableModel) -> dict[str, str]:
    """The groups inside branches that carry a block gate, with their branch: pruning them all removes the branch
    (the block gate's decision); a branch without one keeps the usual guards."""
    modules = dict(model.named_modules())
    gated = {b.name for b in model.branches()
             if isinstance(modules[b.bn], GatedBatchNorm2d) and modules[b.bn].gate.numel() == 1}
    return {g.name: g.branch for g in model.channel_groups() if g.branch in gated}


def plain_copy(gated: nn.BatchNorm2d) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(**bn_kwargs(gated)).to(device=gated.weight.device, dtype=gated.weight.dtype)
    bn.load_state_dict({k: v for k, v in gated.state_dict().items() if k not in ("gate", "compactor")})
    return bn.train(gated.training)


@torch.no_grad()
def fold_gates(model: PrunableModel) -> None:
    """Fold every gate into the modules around it (in place); a no-op without gates. Compactors need the model in
    eval mode (the merge uses the BN's running statistics)."""
    modules = dict(model.named_modules())
    owner = {g.gates[0]: g for g in model.channel_groups()}
    for name, m in installed(model).items():
        bn = plain_copy(m)
        if isinstance(m, GatedBatchNorm2d):
            f = m.factor()
            bn.weight.mul_(f)
            bn.bias.mul_(f)
        elif isinstance(m, CompactorBatchNorm2d):
            if m.training:
                raise UserError(f"merging the compactor of {name} uses its BatchNorm's running statistics: call "
                                "model.eval() first (in training mode the BN normalises with batch statistics)")
            merge_compactor(producer_conv(model, owner[name], modules), bn, m.compactor)
        replace(model, name, bn)


def merge_compactor(conv: nn.Conv2d, bn: nn.BatchNorm2d, q: torch.Tensor) -> None:
    """Q·BN(conv(x)) as one conv and a BN that only shifts (docs/methods.md, ResRep): with s = γ/√(var + eps),
    Q·BN(Wx + b) = (Q·diag(s)·W)x + Q(β + s(b − μ)); the BN keeps mean 0, var 1 − eps, γ = 1, β = that shift."""
    s = bn.weight / (bn.running_var + bn.eps).sqrt()
    bias = conv.bias if conv.bias is not None else torch.zeros_like(s)
    shift = q @ (bn.bias + s * (bias - bn.running_mean))
    conv.weight.copy_(torch.einsum("ok,kihw->oihw", q * s, conv.weight))
    if conv.bias is not None:
        conv.bias.zero_()
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.fill_(1.0)
    bn.bias.copy_(shift)
