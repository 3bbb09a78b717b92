"""Polarization regularizer (Zhuang et al., NeurIPS 2020; docs/methods.md, Polarization).

R(γ) = λ[t‖γ‖₁ − ‖γ − γ̄1‖₁] over all gate γ of the network, γ̄ their mean (the authors' code uses the
global mean over every BN), γ clamped to [0, a] after each step. The subgradient is analytic:
∂R/∂γ_i = λ[t·sign(γ_i) − sign(γ_i − γ̄) + (1/n)Σ_j sign(γ_j − γ̄)] (the last term because γ̄ depends on
γ_i), equal to autograd of ``penalty()``. Pruning threshold: the valley of the |γ| histogram.
"""

from __future__ import annotations

import torch

from .base import BNRegularizer


class Polarization(BNRegularizer):
    name = "polarization"
    criterion = "valley"

    def __init__(self, lam: float = 3e-5, t: float = 1.5, a: float = 1.0):
        super().__init__(lam)
        if not t > 0:
            raise ValueError(f"t={t} must be > 0")
        if not a > 0:
            raise ValueError(f"a={a} must be > 0")
        self.t, self.a = float(t), float(a)

    def penalty(self) -> torch.Tensor:
        g = self.flat(detach=False)
        return self.lam * (self.t * g.abs().sum() - (g - g.mean()).abs().sum())

    @torch.no_grad()
    def after_backward(self) -> None:
        if self.lam == 0:
            return
        g = self.flat()
        s = (g - g.mean()).sign()
        self.add_grad(self.lam * (self.t * g.sign() - s + s.mean()))

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        torch._foreach_clamp_min_(self.gammas, 0.0)
        torch._foreach_clamp_max_(self.gammas, self.a)
