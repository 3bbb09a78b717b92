"""Gates with Differentiable Polarization (Guo et al., ICCV 2021; docs/methods.md, GDP).

Every channel gets the smoothed-ℓ0 gate g(θ) = θ²/(θ² + ε) after its BN (the paper's gate function): 0 only at
θ = 0, ≈ 1 once |θ| ≫ √ε, where its gradient 2θε/(θ² + ε)² vanishes, so open gates stop moving while gates near
0 feel the full pull of the penalty: they polarise to exactly 0 or to a large value. The penalty is the FLOPs of
the gated network, λ·T(g)/T₀ (bilinear in the gates of adjacent layers, ``pruning.channel_cost``; T₀ the full
network's MACs), which acts while the network pruned where g = 0 still exceeds the budget p·T₀ (``flops_target``)
and is switched off for good once it fits. Our choices where the paper's settings were not available here: ε,
plain SGD on θ at the phase's learning rate, and a step that would carry θ across 0 stops at exactly 0 — a
closed gate then stays closed, since g'(0) = 0 leaves it no gradient; a step that would close a layer's last open
gate leaves that gate as it was (``keep_one_open``). Pruning removes the gates at 0.
"""

from __future__ import annotations

import torch

from ..pruning.gates import GateLayout
from .gated import GateRegularizer, check_budget, keep_one_open


class GDP(GateRegularizer):
    name = "gdp"
    in_loss = True
    budgeted = True

    def __init__(self, lam: float = 1.0, flops_target: float = 0.5, eps: float = 1e-2, init: float = 0.3,
                 check_every: int = 10):
        if not eps > 0:
            raise ValueError(f"eps={eps} must be > 0")
        if not init > 0:
            raise ValueError(f"init={init} must be > 0 (every gate starts open)")
        if not check_every >= 1:
            raise ValueError(f"check_every={check_every} must be ≥ 1")
        super().__init__(lam, GateLayout("channels", "smooth_l0", init, eps))
        self.flops_target, self.check_every = check_budget(flops_target), int(check_every)
        self.met = False  # the budget was met: the penalty is off for good
        self.iteration = 0

    def penalty(self) -> torch.Tensor:
        if self.met:
            return torch.zeros(())
        return self.lam * self.cost()({name: f.sum() for name, f in self.factors().items()}) / self.full_macs

    @torch.no_grad()
    def step_gates(self, lr: float, grads: list[torch.Tensor]) -> None:
        for theta, g in zip(self.params, grads, strict=True):
            before = theta.clone()
            new = theta - lr * g
            theta.copy_(torch.where(new * theta > 0, new, torch.zeros_like(new)))
            keep_one_open(theta, before, torch.abs)

    def on_iteration(self, step: int) -> None:
        self.iteration += 1
        if not self.met and self.iteration % self.check_every == 0:
            self.met = self.flops_kept() <= self.flops_target

    def state_dict(self) -> dict:
        return {"met": self.met, "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.met, self.iteration = bool(state["met"]), int(state["iteration"])
