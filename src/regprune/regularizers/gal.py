"""Generative adversarial learning of a sparse soft mask (Lin et al., CVPR 2019; docs/methods.md, GAL).

A soft mask m ≥ 0 (init 1) scales every structure's output (``structures=channels``: each channel of every
group; ``blocks``: each residual branch); the masked network is the generator, the network at the start of the
phase (frozen, eval mode) the baseline. Label-free: with f_b, f_g the two networks' logits and D a discriminator
on logits (three linear layers C → 128 → 256 → 128, as the authors'), the generator (weights and mask) minimises

    μ·MSE(f_g, f_b)  +  BCE(D(f_g), 1)  +  λ‖m‖₁

and D minimises BCE(D(f_b), 1) + BCE(D(f_g), 0). The weights take the run's optimizer on the first two terms;
the mask takes FISTA (Beck & Teboulle) on them, every ``every`` iterations, with the ℓ1 term as its proximal step:

    t' = (1 + √(1 + 4t²))/2;   y = m + ((t − 1)/t')(m − m₋);   m₋ ← m;   m ← max(soft(y − η·∂L/∂m, ηλ), 0);   t ← t'

(t = 1 at the start; the gradient is the one at m, as the authors' code). D takes SGD (``d_momentum``,
``d_weight_decay``) at the phase's learning rate after the generator's step, on that step's logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import PrunableModel
from ..pruning.gates import GateLayout
from .gated import GateRegularizer, frozen_teacher, load_module_state, module_state


def discriminator(num_classes: int) -> nn.Sequential:
    """The authors' discriminator: three linear layers, no activation, weights N(0, 0.01²), biases 0."""
    layers = [nn.Linear(a, b) for a, b in zip((num_classes, 128, 256), (128, 256, 128), strict=True)]
    for layer in layers:
        nn.init.normal_(layer.weight, 0, 0.01)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class GAL(GateRegularizer):
    name = "gal"
    needs_trained_model = True  # the baseline is the trained network

    def __init__(self, lam: float = 0.6, structures: str = "channels", miu: float = 1.0, every: int = 1,
                 d_momentum: float = 0.9, d_weight_decay: float = 2e-4, init: float = 1.0):
        if structures not in ("channels", "blocks"):
            raise ValueError(f"structures={structures!r}: choose channels or blocks")
        if not miu >= 0:
            raise ValueError(f"miu={miu} must be ≥ 0")
        if every < 1:
            raise ValueError(f"every={every} must be ≥ 1 iteration")
        if not (0 <= d_momentum < 1 and d_weight_decay >= 0):
            raise ValueError(f"d_momentum={d_momentum} must be in [0, 1) and d_weight_decay={d_weight_decay} ≥ 0")
        super().__init__(lam, GateLayout(structures, "identity", init))
        self.miu, self.every, self.d_momentum, self.d_weight_decay = float(miu), int(every), float(d_momentum), \
            float(d_weight_decay)
        self.steps, self.t = 0, 1.0
        self.previous: list[torch.Tensor] | None = None
        self.pair: tuple[torch.Tensor, torch.Tensor] | None = None

    def attach(self, model: PrunableModel) -> None:
        self.teacher = frozen_teacher(model)  # a resumed phase: load_state_dict restores the phase's own
        super().attach(model)
        weight = self.params[0]
        self.discriminator = discriminator(model.num_classes).to(device=weight.device, dtype=weight.dtype)
        self.d_optimizer = torch.optim.SGD(self.discriminator.parameters(), lr=0.0, momentum=self.d_momentum,
                                           weight_decay=self.d_weight_decay)

    # -- the generator's loss (label-free) -------------------------------------------------------------
    def task_loss(self, x: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wide = torch.promote_types(out.dtype, torch.float32)
        with torch.no_grad():
            base = self.teacher(x).to(wide)
        fake = out.to(wide)
        self.pair = (base, fake.detach())
        self.discriminator.requires_grad_(False)  # the generator's adversarial term moves the generator only
        judged = self.discriminator(fake)
        self.discriminator.requires_grad_(True)
        adversarial = F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
        return self.miu * F.mse_loss(fake, base) + adversarial

    def penalty(self) -> torch.Tensor:
        return self.lam * sum(p.abs().sum() for p in self.params)

    # -- the mask (FISTA) and the discriminator ----------------------------------------------------------
    @torch.no_grad()
    def step_gates(self, lr: float, grads: list[torch.Tensor]) -> None:
        self.steps += 1
        if self.steps % self.every:
            return
        if self.previous is None:
            self.previous = [p.detach().clone() for p in self.params]
        t_next = (1 + math.sqrt(1 + 4 * self.t * self.t)) / 2
        for m, g, before in zip(self.params, grads, self.previous, strict=True):
            y = m + (self.t - 1) / t_next * (m - before)
            before.copy_(m)
            z = y - lr * g
            m.copy_((z.sign() * (z.abs() - lr * self.lam).clamp_min(0)).clamp_min(0))
        self.t = t_next

    def after_step(self, lr: float) -> None:
        super().after_step(lr)
        if self.pair is None:
            return
        base, fake = self.pair
        self.pair = None
        with torch.enable_grad():
            real, forged = self.discriminator(base), self.discriminator(fake)
            loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
                F.binary_cross_entropy_with_logits(forged, torch.zeros_like(forged))
            self.d_optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.d_optimizer.param_groups[0]["lr"] = lr
        self.d_optimizer.step()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "t": self.t, "teacher": module_state(self.teacher),
                "discriminator": module_state(self.discriminator), "d_optimizer": self.d_optimizer.state_dict(),
                "previous": self.buffers_state(self.previous) if self.previous is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.steps, self.t = int(state["steps"]), float(state["t"])
            load_module_state(self.teacher, state["teacher"])
            load_module_state(self.discriminator, state["discriminator"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
            self.previous = self.restored(state["previous"]) if state["previous"] is not None else None
