"""ℓ1/2 on every conv/linear weight by stochastic proximal gradient (Tang et al. 2023; docs/methods.md,
L1/2 stochastic proximal gradient).

After each optimizer step v = w − η·(update), every weight becomes w ← half(v, η·λ) (exact half thresholding,
or our cheaper polynomial approximation with ``approx=true``), one flat vector over all weights. With SGD
momentum the update is the momentum buffer, not the gradient: ``optimizer.momentum=0`` gives the textbook
stochastic proximal gradient. Weights below (3/2)(ηλ)^(2/3) become exactly 0; a channel disappears when its
whole weight group is zero, so the default criterion is zero detection on group norms (``groups``: filters,
channels or oic slices). With ``bn`` (ours) the prunable channels' gate BN γ and β are thresholded too and
belong to the channel's group: a channel then goes only when its filter, γ and β are all zero, and removing
it changes no output (an all-zero filter alone still emits ReLU(β) after BN).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.base import PrunableModel
from ..pruning.importance import WeightNorm
from . import penalties as P
from . import prox
from .base import Regularizer
from .groups import GROUPINGS, SCORES, WEIGHT_TYPES, gate_params


class WeightLHalf(Regularizer):
    name = "l1_2_prox"
    criterion = "threshold"

    def __init__(self, lam: float = 1e-4, approx: bool = False, groups: str = "filters", score: str = "l2",
                 bn: bool = False):
        super().__init__(lam)
        if groups not in GROUPINGS:
            raise ValueError(f"groups={groups!r}: choose from {list(GROUPINGS)}")
        if score not in SCORES:
            raise ValueError(f"score={score!r}: choose from {list(SCORES)}")
        self.approx, self.groups, self.score, self.bn = bool(approx), groups, score, bool(bn)

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self.weights: list[nn.Parameter] = [m.weight for m in model.modules() if isinstance(m, WEIGHT_TYPES)]
        if self.bn:
            self.weights += gate_params(model)
        self.sizes = [w.numel() for w in self.weights]

    def flat(self, detach: bool = True) -> torch.Tensor:
        return torch.cat([(w.detach() if detach else w).reshape(-1) for w in self.weights])

    def penalty(self) -> torch.Tensor:
        return self.lam * P.lp(self.flat(detach=False), 0.5).sum()

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self.lam > 0:
            op = prox.half_approx if self.approx else prox.half
            new = op(self.flat(), lr * self.lam).split(self.sizes)
            torch._foreach_copy_(self.weights, [v.view_as(w) for v, w in zip(new, self.weights, strict=True)])

    def importance(self) -> WeightNorm:
        return WeightNorm(self.groups, self.score, self.bn)
