"""Sparse Structure Selection (Huang & Wang, ECCV 2018; docs/methods.md, SSS).

A scaling factor λ per structure (``structures=channels``: every channel of every group; ``blocks``: every
residual branch), initialised to 1, multiplies the structure's output; the loss adds γ‖λ‖₁. λ is optimised by
the paper's accelerated proximal gradient in its NAG form (the authors' ``APGNAG`` update), with the stored λ the
look-ahead point, μ the momentum and η the learning rate:

    z ← λ − η·∂L/∂λ;   z ← sign(z)·max(|z| − ηγ, 0);   v ← z − λ + μv;   λ ← max(z + μv, 0)

(no weight decay on λ, projected onto λ ≥ 0 as the authors' code does). Structures whose factor is exactly 0
are removed: zero detection on the gate scores.
"""

from __future__ import annotations

import torch

from ..pruning.gates import GateLayout
from .gated import GateRegularizer


class SSS(GateRegularizer):
    name = "sss"

    def __init__(self, lam: float = 1e-2, structures: str = "channels", momentum: float = 0.9, init: float = 1.0):
        if structures not in ("channels", "blocks"):
            raise ValueError(f"structures={structures!r}: choose channels or blocks")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum} is outside [0, 1)")
        super().__init__(lam, GateLayout(structures, "identity", init))
        self.momentum = float(momentum)
        self.velocity: list[torch.Tensor] | None = None

    def penalty(self) -> torch.Tensor:
        return self.lam * sum(p.abs().sum() for p in self.params)

    @torch.no_grad()
    def step_gates(self, lr: float, grads: list[torch.Tensor]) -> None:
        if self.velocity is None:
            self.velocity = [torch.zeros_like(p) for p in self.params]
        for lam, g, v in zip(self.params, grads, self.velocity, strict=True):
            z = lam - lr * g
            z = z.sign() * (z.abs() - lr * self.lam).clamp_min(0)
            v.mul_(self.momentum).add_(z - lam)
            lam.copy_((z + self.momentum * v).clamp_min(0))

    def state_dict(self) -> dict:
        return {"velocity": self.buffers_state(self.velocity)} if self.velocity is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.velocity = self.restored(state["velocity"])
