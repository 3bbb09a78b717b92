"""ℓ1 on BN scale factors: network slimming (Liu et al. 2017; docs/methods.md, Network Slimming)."""

from __future__ import annotations

import torch

from .base import BNRegularizer, checked_update


class BNL1(BNRegularizer):
    """λ Σ|γ|. ``update=subgradient`` adds λ·sign(γ) to the gradient (NS);
    ``update=prox`` soft-thresholds γ by lr·λ after each step (ISTA)."""

    name = "l1"

    def __init__(self, lam: float = 1e-4, update: str = "subgradient"):
        super().__init__(lam)
        self.update = checked_update(update)

    @property
    def criterion(self) -> str:
        """NS's |γ| percentile; zero detection after proximal steps, which give exact zeros."""
        return "threshold" if self.update == "prox" else "percentile"

    def penalty(self) -> torch.Tensor:
        return self.lam * sum(g.abs().sum() for g in self.gammas)

    @torch.no_grad()
    def after_backward(self) -> None:
        if self.update == "subgradient" and self.lam > 0:
            torch._foreach_add_(self.grads(), torch._foreach_sign(self.gammas), alpha=self.lam)

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self.update == "prox" and self.lam > 0:
            # soft threshold: γ ← sign(γ)·max(|γ| − lr·λ, 0)
            shrunk = torch._foreach_sub(torch._foreach_abs(self.gammas), lr * self.lam)
            torch._foreach_clamp_min_(shrunk, 0.0)
            torch._foreach_mul_(shrunk, torch._foreach_sign(self.gammas))
            torch._foreach_copy_(self.gammas, shrunk)
