"""Budget-Aware Regularization (Lemaire, Achkar & Jodoin, CVPR 2019; docs/methods.md, BAR).

Every channel gets a stochastic hard-concrete gate after its BN (log α = θ; ``models.gates.gate_factor``): a random
draw per mini-batch while training, its deterministic value σ(θ)(ζ − γ) + γ clipped to [0, 1] otherwise, exactly 0
for θ ≤ logit(−γ/(ζ − γ)). The loss is

    (1 − α)·CE(y, s) + α·T²·KL(softmax(t/T) ‖ softmax(s/T))  +  λ·f(V)·T(P)/T₀

— distillation from the teacher t (the network at the start of the phase, frozen, in eval mode) to the student s,
and the sparsity loss: T(P) the MACs of the network at the expected open counts P(z ≠ 0) = σ(θ − β·log(−γ/ζ))
summed per group (``pruning.channel_cost``, bilinear in adjacent layers), T₀ the full network's. f is the budget
barrier: with V the MACs share of the network pruned at the closed gates, b = ``flops_target`` and a current budget
c(t) that moves from (1 + ``tolerance``) to b along a sigmoidal progress over ``ramp`` iterations,

    x = max(0, (V − l)/(c(t) − l)),  l = b − ``margin``·(1 + ``tolerance``),   f = x²/(1 − x) for x < 1, else
    ``upper_bound``

so the pull vanishes once the budget is met and grows without bound as V approaches the current budget. f is a
coefficient (no gradient), as in the authors' formulation. Gate step (ours): Adam on θ at the phase's learning
rate, outside the run's optimizer (a bounded step: beyond the current budget the barrier is 10¹⁰); the weights
train with the distillation loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.base import PrunableModel
from ..models.gates import open_probability
from ..pruning.gates import GateLayout
from .gated import GateRegularizer, check_budget, frozen_teacher, load_module_state, module_state


def sigmoid_progress(q: float, sharpness: float) -> float:
    """0 at q = 0, 1 at q ≥ 1, sigmoidal in between (the budget's progress, docs/methods.md, BAR)."""
    q = min(max(q, 0.0), 1.0)
    low = 1 / (1 + math.exp(sharpness / 2))
    return (1 / (1 + math.exp(sharpness * (0.5 - q))) - low) / (1 - 2 * low)


class BAR(GateRegularizer):
    name = "bar"
    needs_trained_model = True  # distils from the trained network
    in_loss = True
    budgeted = True

    def __init__(self, lam: float = 1.0, flops_target: float = 0.5, ramp: int = 1000, temperature: float = 4.0,
                 alpha: float = 0.9, tolerance: float = 0.01, margin: float = 1e-4, sharpness: float = 10.0,
                 upper_bound: float = 1e10, init: float = 0.0):
        if ramp < 1:
            raise ValueError(f"ramp={ramp} must be ≥ 1 iteration")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha={alpha} is outside [0, 1]")
        if not (tolerance >= 0 and margin > 0 and sharpness > 0 and upper_bound > 0):
            raise ValueError(f"tolerance={tolerance} must be ≥ 0, margin={margin}, sharpness={sharpness} and "
                             f"upper_bound={upper_bound} > 0")
        super().__init__(lam, GateLayout("channels", "hard_concrete", init))
        self.flops_target, self.ramp, self.temperature, self.alpha = check_budget(flops_target), int(ramp), \
            float(temperature), float(alpha)
        self.tolerance, self.margin, self.sharpness, self.upper_bound = float(tolerance), float(margin), \
            float(sharpness), float(upper_bound)
        self.iteration = 0

    def attach(self, model: PrunableModel) -> None:
        self.teacher = frozen_teacher(model)  # a resumed phase: load_state_dict then restores the phase's own
        super().attach(model)
        self.adam = torch.optim.Adam(self.params, lr=1.0)  # the gates' own; lr set at every step

    def task_loss(self, x: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wide = torch.promote_types(out.dtype, torch.float32)  # fp32 at least, also under autocast
        with torch.no_grad():
            target = F.softmax(self.teacher(x).to(wide) / self.temperature, dim=1)
        log_q = F.log_softmax(out.to(wide) / self.temperature, dim=1)
        kd = F.kl_div(log_q, target, reduction="batchmean") * self.temperature ** 2
        return self.alpha * kd + (1 - self.alpha) * F.cross_entropy(out, y)

    def current_budget(self) -> float:
        p = sigmoid_progress(self.iteration / self.ramp, self.sharpness)
        return (1 - p) * (1 + self.tolerance) + p * self.flops_target

    def barrier(self, kept: float) -> float:
        lower = self.flops_target - self.margin * (1 + self.tolerance)
        x = max((kept - lower) / (self.current_budget() - lower), 0.0)
        return min(x * x / (1 - x), self.upper_bound) if x < 1 else self.upper_bound

    def expected_counts(self) -> dict[str, torch.Tensor]:
        """Per group, Σ_k P(z_k ≠ 0) (the mean over a coupled group's gate BNs), differentiable in θ."""
        return {name: torch.stack([open_probability(m.gate)[index] for m, index in slots]).mean(0).sum()
                for name, slots in self.slots if slots}

    def penalty(self) -> torch.Tensor:
        return self.lam * self.barrier(self.flops_kept()) * self.cost()(self.expected_counts()) / self.full_macs

    @torch.no_grad()
    def step_gates(self, lr: float, grads: list[torch.Tensor]) -> None:
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.adam.param_groups[0]["lr"] = lr
        self.adam.step()
        for p in self.params:
            p.grad = None

    def on_iteration(self, step: int) -> None:
        self.iteration += 1

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "teacher": module_state(self.teacher), "adam": self.adam.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.iteration = int(state["iteration"])
            load_module_state(self.teacher, state["teacher"])
            self.adam.load_state_dict(state["adam"])
