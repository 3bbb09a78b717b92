"""OTO, Only Train Once (Chen et al., NeurIPS 2021; docs/methods.md, OTO): group lasso on zero-invariant groups,
optimised by the half-space stochastic projected gradient (HSPG); the compressed model is read off the trained
one with no fine-tuning.

Penalty λ Σ_{g,k} ‖x_{g,k}‖₂ over the zero-invariant group of every prunable channel (``pruning.zero_invariant``:
its filters, biases and BN γ, β). Each step adds λ·x/‖x‖ to the gradient of every non-zero group after backward
(the optimizer's momentum then acts on the whole ψ-gradient, as in the authors' code). For ``warmup_epochs`` that
is all (subgradient descent). Afterwards every step is a half-space step: with x the groups before the optimizer
step and x̂ after it, a group with ⟨x̂, x⟩ < ε‖x‖² (the step left the half-space around x) is projected to exactly
zero, and a group that was zero stays zero. Pruning then removes exactly the zero groups (threshold 0 on their
norms), which changes no output.
"""

from __future__ import annotations

import torch

from ..models.base import PrunableModel
from ..pruning.zero_invariant import ZeroInvariantGroups, ZeroInvariantNorm
from .base import Regularizer
from .groups import grad_of


class HSPG(Regularizer):
    name = "oto"
    criterion = "threshold"

    def __init__(self, lam: float = 1e-3, eps: float = 0.0, warmup_epochs: int = 0):
        super().__init__(lam)
        if not 0 <= eps < 1:
            raise ValueError(f"eps={eps} is outside [0, 1)")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs={warmup_epochs} must be ≥ 0")
        self.eps, self.warmup_epochs = float(eps), int(warmup_epochs)
        self.half_space = False
        self._before: dict[int, torch.Tensor] | None = None
        self._before_sq: dict[str, torch.Tensor] = {}

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self.zig = ZeroInvariantGroups(model)

    def on_epoch(self, epoch: int) -> None:
        self.half_space = epoch >= self.warmup_epochs

    def penalty(self) -> torch.Tensor:
        return self.lam * sum(n.sqrt().sum() for n in self.zig.sq_norms().values())

    @torch.no_grad()
    def after_backward(self) -> None:
        sq = self.zig.sq_norms()
        if self.lam > 0:  # ∂(λ‖x‖)/∂x = λx/‖x‖ on non-zero groups (0 on zero groups)
            coef = {g: torch.where(n > 0, self.lam / n.sqrt().clamp_min(torch.finfo(n.dtype).tiny), 0.0)
                    for g, n in sq.items()}
            self.zig.add_rows({id(p): grad_of(p) for p in self.zig.params}, coef)
        if self.half_space:
            self._before = {id(p): p.detach().clone() for p in self.zig.params}
            self._before_sq = sq

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self._before is None:
            return
        dots = self.zig.dots(self._before)  # ⟨x̂, x⟩ with x̂ the parameters after the step
        self.zig.zero_({g: (dots[g] < self.eps * sq) | (sq == 0) for g, sq in self._before_sq.items()})
        self._before = None

    @torch.no_grad()
    def epoch_stats(self) -> dict[str, float]:
        sq = torch.cat(list(self.zig.sq_norms().values()))
        return {"zero_groups_pct": 100.0 * float((sq == 0).sum()) / sq.numel(), "half_space": float(self.half_space)}

    def importance(self) -> ZeroInvariantNorm:
        return ZeroInvariantNorm()
