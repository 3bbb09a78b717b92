"""Weight groups: what a group penalty acts on, built generically from ``model.channel_groups()``.

Channel k of a ChannelGroup owns slices of conv/linear weights: index k on dim 0 of every producer in
``out`` (its filters) and index k on dim 1 of every consumer in ``inp`` (its input channels). A grouping
picks which slices form the penalised group w_{g,k}:

- ``filters``:  producer slices (SSL filter-wise, Li/Hu, GReg); a group without a producer conv (a
  pre-activation channel-selection group) falls back to its consumer slices;
- ``channels``: consumer slices (SSL channel-wise); falls back to producer slices;
- ``oic``:      both (OICSR's out-in-channel group; coupled channels come for free, because a group
  lists every producer and consumer of its channels).

What a penalty acts on is separate from what pruning can remove (the prune mode's channel groups):
``penalize=prunable`` penalises the channel groups only; ``penalize=all_convs`` (filters only) adds one group
per filter of every conv that produces no prunable channel (e.g. a ResNet block's second conv, which writes
the residual stream), so that every conv's filters are penalised, as Li, Hu et al. do
(docs/methods.md, Group sparsity on filters). ``exclude_first`` leaves the network's first conv out of every
penalised group (Li/Hu do not penalise it); a group left with no weights is not penalised. Pruning scores
(``group_scores``) always cover every channel group of the prune mode.

``bn`` adds the channel's gate BN scale and shift (γ_k, β_k) to a prunable group: with BN after a conv,
shrinking the filter alone does not silence the channel (a zero filter still emits ReLU(β) after BN),
shrinking γ and β does, so that removing an all-zero group changes no output. Only gates narrowed with the
group (listed in ``out``) join; a full-width BN before a channel selection does not, and the per-filter
groups of ``all_convs`` (never removed) get none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..analysis.magnitudes import ZERO_THRESHOLD
from ..models.base import ChannelGroup, PrunableModel
from ..pruning.importance import WeightNorm
from . import penalties as P
from .base import Regularizer

GROUPINGS = ("filters", "channels", "oic")
PENALIZE = ("all_convs", "prunable")
SCORES = ("l2", "l1", "max")
WEIGHT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass
class WeightGroups:
    names: list[str]  # a ChannelGroup's name, or a conv's module name for its per-filter groups
    slices: list[list[tuple[nn.Parameter, int]]]  # per group: (tensor, dim indexed by the group's members)


def first_conv(model: nn.Module) -> str | None:
    return next((n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)), None)


def gate_slices(group: ChannelGroup, modules: dict[str, nn.Module]) -> list[tuple[nn.Parameter, int]]:
    """γ and β of the group's gate BNs that are narrowed with it (listed in ``out``)."""
    return [(p, 0) for b in group.gates if b in group.out for p in (modules[b].weight, modules[b].bias)]


def gate_params(model: PrunableModel) -> list[nn.Parameter]:
    """Every prunable channel's gate γ and β (``gate_slices`` over all groups), each tensor once."""
    modules = dict(model.named_modules())
    params = [p for g in model.channel_groups() for p, _ in gate_slices(g, modules)]
    return list({id(p): p for p in params}.values())


def weight_groups(model: PrunableModel, grouping: str = "filters", exclude_first: bool = False,
                  bn: bool = False, penalize: str = "prunable") -> WeightGroups:
    """The penalised groups (module docstring): the channel groups' slices, then with ``all_convs`` the
    filters of every other conv."""
    modules = dict(model.named_modules())
    first = first_conv(model) if exclude_first else None
    skip = modules[first].weight if first is not None else None
    names, slices = [], []
    for g in model.channel_groups():
        out = [(modules[n].weight, 0) for n in g.out if isinstance(modules[n], WEIGHT_TYPES)]
        inp = [(modules[n].weight, 1) for n in g.inp if isinstance(modules[n], WEIGHT_TYPES)]
        chosen = [(w, d) for w, d in {"filters": out or inp, "channels": inp or out, "oic": out + inp}[grouping]
                  if w is not skip]
        if chosen:
            names.append(g.name)
            slices.append(chosen + (gate_slices(g, modules) if bn else []))
    if penalize == "all_convs":
        covered = {id(w) for s in slices for w, d in s if d == 0}
        for n, m in modules.items():
            if isinstance(m, nn.modules.conv._ConvNd) and id(m.weight) not in covered and m.weight is not skip:
                names.append(n)
                slices.append([(m.weight, 0)])
    return WeightGroups(names, slices)


def per_channel(x: torch.Tensor, dim: int, reduce: str = "sum") -> torch.Tensor:
    """Reduce every dim but ``dim``: one value per channel."""
    other = [d for d in range(x.dim()) if d != dim]
    if not other:
        return x
    return x.amax(other) if reduce == "max" else x.sum(other)


def expand(c: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    return c.view([-1 if d == dim else 1 for d in range(like.dim())])


def magnitude(slices: list[tuple[torch.Tensor, int]], norm: str, smooth: float = 0.0) -> torch.Tensor:
    """Per-channel magnitude of a group: ``l2`` ‖w‖₂, ``sq`` ‖w‖₂², ``l1`` ‖w‖₁ (|·| smoothed near 0 if
    ``smooth`` > 0), ``max`` max|w|. Differentiable when the weights require grad."""
    if norm == "max":
        return torch.stack([per_channel(w.abs(), d, "max") for w, d in slices]).amax(0)
    if norm == "l1":
        return sum(per_channel(P.smooth_abs(w, smooth), d) for w, d in slices)
    sq = sum(per_channel(w * w, d) for w, d in slices)
    return sq.sqrt() if norm == "l2" else sq


@torch.no_grad()
def group_scores(model: PrunableModel, grouping: str = "filters", score: str = "l2",
                 bn: bool = False) -> dict[str, torch.Tensor]:
    """Per-channel magnitude of every prunable channel group's weights (an all-zero group scores exactly 0)."""
    wg = weight_groups(model, grouping, bn=bn)
    out = {n: magnitude(s, score).float().cpu() for n, s in zip(wg.names, wg.slices, strict=True)}
    missing = [g.name for g in model.channel_groups() if g.name not in out]
    if missing:
        raise ValueError(f"groups {missing} have no conv/linear weights to score")
    return out


def grad_of(p: nn.Parameter) -> torch.Tensor:
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad


class GroupPenalty(Regularizer):
    """Σ_g Σ_k φ_g(m_{g,k}) with m a norm of channel k's weight group; subclasses define φ and φ'.

    ``norm`` (class attribute): ``l2`` (group lasso family), ``sq`` (growing L2), ``l1`` (Li/Hu family).
    The groups are ``weight_groups(model, groups, exclude_first, bn, penalize)``; ``importance()`` scores every
    channel group of the prune mode by ``score`` (with the channel's γ, β when ``bn``).
    The gradient ∂φ(m)/∂w = φ'(m)·∂m/∂w is added to every slice after backward; ∂m/∂w = w/m for ``l2``
    (0 for an all-zero group), 2w for ``sq``, sign(w) (or the smoothed |·|') for ``l1``.
    """

    norm = "l2"
    criterion = "percentile"

    def __init__(self, lam: float, groups: str = "filters", exclude_first: bool = False, score: str = "l2",
                 smooth: float = 0.0, bn: bool = False, penalize: str = "prunable"):
        super().__init__(lam)
        if groups not in GROUPINGS:
            raise ValueError(f"groups={groups!r}: choose from {list(GROUPINGS)}")
        if penalize not in PENALIZE:
            raise ValueError(f"penalize={penalize!r}: choose from {list(PENALIZE)}")
        if penalize == "all_convs" and groups != "filters":
            raise ValueError(f"penalize='all_convs' penalises conv filters: it needs groups='filters', not {groups!r}")
        if score not in SCORES:
            raise ValueError(f"score={score!r}: choose from {list(SCORES)}")
        if not smooth >= 0:
            raise ValueError(f"smooth={smooth} must be ≥ 0")
        self.groups, self.exclude_first, self.score, self.smooth = groups, exclude_first, score, float(smooth)
        self.bn, self.penalize = bool(bn), penalize

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self.wg = weight_groups(model, self.groups, self.exclude_first, self.bn, self.penalize)

    def phi(self, m: torch.Tensor, i: int) -> torch.Tensor:
        raise NotImplementedError

    def dphi(self, m: torch.Tensor, i: int) -> torch.Tensor:
        raise NotImplementedError

    def magnitudes(self) -> list[torch.Tensor]:
        return [magnitude(s, self.norm, self.smooth) for s in self.wg.slices]

    def penalty(self) -> torch.Tensor:
        return sum((self.phi(m, i).sum() for i, m in enumerate(self.magnitudes())), torch.zeros(()))

    @torch.no_grad()
    def after_backward(self) -> None:
        for i, m in enumerate(self.magnitudes()):
            c = self.dphi(m, i)
            if self.norm == "l2":
                c = torch.where(m > 0, c / m.clamp_min(torch.finfo(m.dtype).tiny), 0.0)
            elif self.norm == "sq":
                c = 2 * c
            for w, d in self.wg.slices[i]:
                dm = P.smooth_abs_grad(w, self.smooth) if self.norm == "l1" else w
                grad_of(w).add_(dm * expand(c, w, d))

    @torch.no_grad()
    def epoch_stats(self) -> dict[str, float]:
        """Sparsity of every penalised group: the share entirely zero and entirely below Li/Hu's 0.009."""
        peak = torch.cat([magnitude(s, "max") for s in self.wg.slices])
        return {"penalised_groups": peak.numel(),
                "penalised_zero_pct": 100.0 * float((peak == 0).sum()) / peak.numel(),
                "penalised_small_pct": 100.0 * float((peak < ZERO_THRESHOLD).sum()) / peak.numel()}

    def importance(self) -> WeightNorm:
        return WeightNorm(self.groups, self.score, self.bn)
