"""Discrete Model Compression (Gao et al., CVPR 2020; docs/methods.md, DMC).

Every channel gets a discrete gate g = 1[θ > 0] after its BN, so the loss is the loss of the network actually
pruned where gates are 0; θ is trained through the straight-through estimator (∂g/∂θ := 1), with the other
weights frozen (``freeze_weights``, as the paper optimises the gates of a trained network alone). The FLOPs
constraint enters the loss as

    λ·log(max(T(g), p·T₀) / (p·T₀))

with T(g) the MACs of the gated network (bilinear in the gates of adjacent layers, ``pruning.channel_cost``), T₀
the full network's and p = ``flops_target``: zero once the gated network fits the budget, growing with the
excess otherwise. Gate step (ours: the paper's optimiser settings were not available here): plain SGD on θ at the
phase's learning rate, θ clipped to [−1, 1]; θ starts at ``init``. A layer whose gates would all close keeps its
most open gate as it was (ours, ``keep_one_open``). Pruning removes the closed gates (θ ≤ 0).
"""

from __future__ import annotations

import torch

from ..pruning.gates import GateLayout
from .gated import GateRegularizer, check_budget, keep_one_open


class DMC(GateRegularizer):
    name = "dmc"
    needs_trained_model = True  # gates a trained network
    in_loss = True
    budgeted = True

    def __init__(self, lam: float = 1.0, flops_target: float = 0.5, init: float = 0.5, clip: float = 1.0,
                 freeze_weights: bool = True):
        if not init > 0:
            raise ValueError(f"init={init} must be > 0 (every gate starts open)")
        if not clip >= init:
            raise ValueError(f"clip={clip} must be ≥ init={init}")
        super().__init__(lam, GateLayout("channels", "step", init), freeze_weights)
        self.flops_target, self.clip = check_budget(flops_target), float(clip)

    def penalty(self) -> torch.Tensor:
        t = self.cost()({name: f.sum() for name, f in self.factors().items()}) / self.full_macs
        return self.lam * (t / self.flops_target).clamp_min(1.0).log()

    @torch.no_grad()
    def step_gates(self, lr: float, grads: list[torch.Tensor]) -> None:
        for theta, g in zip(self.params, grads, strict=True):
            before = theta.clone()
            theta.sub_(lr * g).clamp_(-self.clip, self.clip)
            keep_one_open(theta, before, lambda t: t.clamp_min(0))
