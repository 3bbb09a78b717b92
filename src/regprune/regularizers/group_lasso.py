"""Group lasso λΣ_g‖w_g‖₂ on filters / channels (SSL, Wen et al. 2016) or out-in-channel groups (OICSR,
Li et al. 2019); docs/methods.md, Group lasso (SSL) and OICSR. On filters it acts by default on every conv but
the first (``penalize=all_convs``, ``exclude_first``), as Li, Hu et al.'s group-lasso baseline does.

``update=subgradient`` adds λ·w_g/‖w_g‖₂ (0 for an all-zero group) after backward; ``update=prox`` applies
the radial soft threshold w_g ← max(0, 1 − lr·λ/‖w_g‖₂)·w_g after each step, which zeroes whole groups
(zero detection then prunes them). The proximal step needs non-overlapping groups: OIC groups overlap
(W_{l+1}[j, k] is in out-group j of layer l+1 and in-group k of layer l), so ``groups=oic`` is
subgradient-only.
"""

from __future__ import annotations

import torch

from ..models.base import PrunableModel
from . import prox
from .base import checked_update
from .groups import GroupPenalty, expand, magnitude


class GroupLasso(GroupPenalty):
    norm = "l2"

    def __init__(self, lam: float = 1e-4, groups: str = "filters", update: str = "subgradient",
                 exclude_first: bool = True, score: str = "l2", bn: bool = False, penalize: str = "all_convs"):
        super().__init__(lam, groups, exclude_first, score, bn=bn, penalize=penalize)
        if checked_update(update) == "prox" and groups == "oic":
            raise ValueError("update='prox' needs non-overlapping groups; groups=oic overlap (use subgradient)")
        self.update = update
        self.name = {"filters": "group_lasso", "channels": "group_lasso_channel", "oic": "oicsr"}[groups]

    @property
    def criterion(self) -> str:
        return "threshold" if self.update == "prox" else "percentile"

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        if self.update == "prox":
            seen = [id(w) for s in self.wg.slices for w, _ in s]
            if len(seen) != len(set(seen)):
                raise ValueError(f"update='prox' needs non-overlapping groups; groups={self.groups} share a weight "
                                 f"tensor in {type(model).__name__}")

    def phi(self, m, i):
        return self.lam * m

    def dphi(self, m, i):
        return torch.full_like(m, self.lam)

    def after_backward(self) -> None:
        if self.update == "subgradient" and self.lam > 0:
            super().after_backward()

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self.update != "prox" or self.lam == 0:
            return
        for slices in self.wg.slices:
            m = magnitude(slices, "l2")
            scale = prox.radial_scale(m, prox.soft(m, lr * self.lam))
            for w, d in slices:
                w.mul_(expand(scale, w, d))
