"""The base of the gate methods (docs/methods.md, Gates): SSS, DMC, GDP, ResRep.

``attach`` installs the gates the method trains (``layout``, a ``regprune.pruning.gates.GateLayout``) unless the
model already carries them (a resumed run, the prune phase). The method moves its gates itself: after backward,
``after_backward`` takes their gradients away from the run's optimizer (which then neither decays nor moves them)
and ``gate_grads`` adds the method's own terms; after the optimizer step, ``after_step`` applies the method's
update ``step_gates`` with the phase's learning rate. ``freeze_weights`` leaves every other parameter unchanged
(DMC trains only its gates). Pruning defaults to the gates' own scores (importance ``gate``) with zero detection.
Methods with a FLOPs budget read the MACs of the gated network from ``cost`` (``pruning.channel_cost``), sized on
the first forward pass after ``attach``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ..models.base import PrunableModel
from ..models.gates import CompactorBatchNorm2d
from ..pruning.channel_cost import ChannelCost, OutputSizes
from ..pruning.gates import GateLayout, fold_gates, gate_scores, install_gates
from ..pruning.importance import GateValue, Importance
from .base import Regularizer


def check_budget(flops_target: float) -> float:
    if not 0 < flops_target < 1:
        raise ValueError(f"flops_target={flops_target} is outside (0, 1)")
    return float(flops_target)


@torch.no_grad()
def keep_one_open(theta: torch.Tensor, before: torch.Tensor,
                  openness: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """If a step closed every gate of a layer (``openness(θ)`` all 0; ``before``: θ before the step), the gate that
    was most open gets its value back (ours; docs/methods.md, Gates): a layer with every gate closed makes the
    network's output independent of its input, so no gradient could reopen any gate."""
    if not (openness(theta) > 0).any():
        top = openness(before).argmax()
        theta[top] = before[top]


def frozen_teacher(model: PrunableModel) -> nn.Module:
    """The network as it is (gates folded), frozen and in eval mode: the teacher of a distilling gate method."""
    teacher = copy.deepcopy(model).eval()
    fold_gates(teacher)
    return teacher.requires_grad_(False)


def module_state(module: nn.Module) -> dict:
    """A module's state dict on the CPU, as lists (checkpoint state of a regularizer's own network)."""
    state = module.state_dict()
    return {"keys": list(state), "values": [v.detach().cpu().clone() for v in state.values()]}


def load_module_state(module: nn.Module, state: dict) -> None:
    module.load_state_dict(dict(zip(state["keys"], state["values"], strict=True)))


class GateRegularizer(Regularizer):
    criterion = "threshold"
    budgeted = False  # a FLOPs budget: history.csv records flops_kept

    def __init__(self, lam: float, layout: GateLayout, freeze_weights: bool = False):
        super().__init__(lam)
        self.layout, self.freeze_weights = layout, bool(freeze_weights)
        self.sizes: OutputSizes | None = None
        self._cost: ChannelCost | None = None

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self.gated = install_gates(model, self.layout)
        self.params: list[nn.Parameter] = [m.compactor if isinstance(m, CompactorBatchNorm2d) else m.gate
                                           for m in self.gated.values()]
        ids = {id(p) for p in self.params}
        self.frozen = [p for p in model.parameters() if id(p) not in ids] if self.freeze_weights else []
        self.grads: list[torch.Tensor] = []
        self.slots = [(g.name, [(self.gated[b], model.gate_index(g, b)) for b in g.gates if b in self.gated])
                      for g in model.channel_groups()]  # where each group's channels sit in its gates
        self.detach()
        self.sizes, self._cost = OutputSizes(model), None

    def detach(self) -> None:
        if self.sizes is not None:
            self.sizes.remove()

    # -- the FLOPs of the gated network ------------------------------------------------------------------
    def cost(self) -> ChannelCost:
        if self._cost is None:
            if not self.sizes.hw:
                raise RuntimeError(f"{self.name} sizes its FLOPs on a forward pass after attach()")
            self.sizes.remove()
            self._cost = ChannelCost(self.model, self.sizes.hw)
            self._full = float(self._cost({}))
        return self._cost

    @property
    def full_macs(self) -> float:
        self.cost()
        return self._full

    def factors(self) -> dict[str, torch.Tensor]:
        """Each group's channel gate factors, differentiable (the mean over a coupled group's gate BNs)."""
        return {name: torch.stack([m.factor()[index] for m, index in slots]).mean(0)
                for name, slots in self.slots if slots}

    def flops_kept(self) -> float:
        """MACs of the network pruned where the gates are closed, as a share of the full network's."""
        on = {k: float((s > 0).sum()) for k, s in gate_scores(self.model).items() if torch.isfinite(s).all()}
        return float(self.cost()(on)) / self.full_macs

    # -- the update ------------------------------------------------------------------------------------
    @torch.no_grad()
    def after_backward(self) -> None:
        self.grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        for p in self.params + self.frozen:
            p.grad = None
        self.gate_grads(self.grads)

    def gate_grads(self, grads: list[torch.Tensor]) -> None:
        """Add the method's own gradient terms to the task gradients of the gates (in place)."""

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self.grads:
            self.step_gates(lr, self.grads)
            self.grads = []

    def step_gates(self, lr: float, grads: list[torch.Tensor]) -> None:
        raise NotImplementedError

    # -- pruning and records ---------------------------------------------------------------------------
    def importance(self) -> Importance:
        return GateValue()

    def epoch_stats(self) -> dict[str, float]:
        scores = torch.cat([m.channel_scores().flatten().cpu() for m in self.gated.values()])
        stats = {"gates_closed": float((scores <= 0).float().mean())}
        return {**stats, "flops_kept": self.flops_kept()} if self.budgeted else stats

    def buffers_state(self, buffers: list[torch.Tensor]) -> list[torch.Tensor]:
        return [b.detach().cpu().clone() for b in buffers]

    def restored(self, saved: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """Saved per-gate buffers on the gates' devices, or None if they belong to other gates (another model)."""
        if len(saved) != len(self.params) or any(s.shape != p.shape for s, p in zip(saved, self.params, strict=True)):
            return None
        return [s.to(p) for s, p in zip(saved, self.params, strict=True)]
