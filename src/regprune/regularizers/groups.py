"""Weight groups per prunable channel, built generically from ``model.channel_groups()``.

Channel k of a ChannelGroup owns slices of conv/linear weights: index k on dim 0 of every producer in
``out`` (its filters) and index k on dim 1 of every consumer in ``inp`` (its input channels). A grouping
picks which slices form the penalised group w_{g,k}:

- ``filters``:  producer slices (SSL filter-wise, Li/Hu, GReg); a group without a producer conv (a
  pre-activation channel-selection group) falls back to its consumer slices;
- ``channels``: consumer slices (SSL channel-wise); falls back to producer slices;
- ``oic``:      both (OICSR's out-in-channel group; coupled channels come for free, because a group
  lists every producer and consumer of its channels).

``bn`` adds the channel's gate BN scale and shift (γ_k, β_k) to its group: with BN after a conv, shrinking
the filter alone does not silence the channel (BN renormalises it), shrinking γ and β does. Only gates
narrowed with the group (listed in ``out``) join; a full-width BN before a channel selection does not.

``exclude_first`` drops every group that the network's first conv produces (Li/Hu exclude the first conv
of ResNets): such a group is neither penalised nor pruned (score +inf).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.base import PrunableModel
from ..pruning.importance import WeightNorm
from . import penalties as P
from .base import Regularizer

GROUPINGS = ("filters", "channels", "oic")
SCORES = ("l2", "l1", "max")
WEIGHT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass
class WeightGroups:
    names: list[str]  # ChannelGroup names that are penalised
    slices: list[list[tuple[nn.Parameter, int]]]  # per group: (weight, dim indexed by the channels)
    excluded: list[str]


def first_conv(model: nn.Module) -> str | None:
    return next((n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)), None)


def weight_groups(model: PrunableModel, grouping: str = "filters", exclude_first: bool = False,
                  bn: bool = False) -> WeightGroups:
    modules = dict(model.named_modules())
    first = first_conv(model) if exclude_first else None
    names, slices, excluded = [], [], []
    for g in model.channel_groups():
        if first is not None and first in g.out:
            excluded.append(g.name)
            continue
        out = [(modules[n].weight, 0) for n in g.out if isinstance(modules[n], WEIGHT_TYPES)]
        inp = [(modules[n].weight, 1) for n in g.inp if isinstance(modules[n], WEIGHT_TYPES)]
        chosen = {"filters": out or inp, "channels": inp or out, "oic": out + inp}[grouping]
        if bn:
            chosen = chosen + [(p, 0) for b in g.gates if b in g.out for p in (modules[b].weight, modules[b].bias)]
        if chosen:
            names.append(g.name)
            slices.append(chosen)
    return WeightGroups(names, slices, excluded)


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
def group_scores(model: PrunableModel, grouping: str = "filters", exclude_first: bool = False,
                 score: str = "l2", bn: bool = False) -> dict[str, torch.Tensor]:
    """Per-channel magnitude of each group's weights (an all-zero group scores exactly 0); +inf for
    excluded groups, so that no criterion prunes them."""
    wg = weight_groups(model, grouping, exclude_first, bn)
    out = {n: magnitude(s, score).float().cpu() for n, s in zip(wg.names, wg.slices, strict=True)}
    widths = {g.name: model.widths[g.width] for g in model.channel_groups()}
    for n in wg.excluded:
        out[n] = torch.full((widths[n],), float("inf"))
    missing = [g for g in widths if g not in out]
    if missing:
        raise ValueError(f"groups {missing} have no conv/linear weights to score")
    return {g: out[g] for g in widths}


def grad_of(p: nn.Parameter) -> torch.Tensor:
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad


class GroupPenalty(Regularizer):
    """Σ_g Σ_k φ_g(m_{g,k}) with m a norm of channel k's weight group; subclasses define φ and φ'.

    ``norm`` (class attribute): ``l2`` (group lasso family), ``sq`` (growing L2), ``l1`` (Li/Hu family).
    The gradient ∂φ(m)/∂w = φ'(m)·∂m/∂w is added to every slice after backward; ∂m/∂w = w/m for ``l2``
    (0 for an all-zero group), 2w for ``sq``, sign(w) (or the smoothed |·|') for ``l1``.
    """

    norm = "l2"
    criterion = "percentile"

    def __init__(self, lam: float, groups: str = "filters", exclude_first: bool = False, score: str = "l2",
                 smooth: float = 0.0, bn: bool = False):
        super().__init__(lam)
        if groups not in GROUPINGS:
            raise ValueError(f"groups={groups!r}: choose from {list(GROUPINGS)}")
        if score not in SCORES:
            raise ValueError(f"score={score!r}: choose from {list(SCORES)}")
        if not smooth >= 0:
            raise ValueError(f"smooth={smooth} must be ≥ 0")
        self.groups, self.exclude_first, self.score, self.smooth = groups, exclude_first, score, float(smooth)
        self.bn = bool(bn)

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self.wg = weight_groups(model, self.groups, self.exclude_first, self.bn)

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

    def importance(self) -> WeightNorm:
        return WeightNorm(self.groups, self.score, self.exclude_first, self.bn)
