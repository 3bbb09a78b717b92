"""The regularizer interface: how a sparsity penalty touches the training loop.

A training phase calls ``on_epoch(epoch)`` at the start of each epoch; the loop calls, per iteration:  loss =
``task_loss(x, out, y)`` (+ ``penalty()`` if ``in_loss``) → backward → ``after_backward()`` (add a (sub)gradient to
``.grad``, after any GradScaler unscale) → optimizer step → ``after_step(lr)`` (proximal step / clamp) →
``on_iteration(step)`` (growing penalties). ``attach(model)`` is called whenever the model changes (start of a
phase, after compaction); ``detach()`` when the phase ends.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import PrunableModel
from ..pruning.importance import BNScale, Importance

UPDATES = ("subgradient", "prox")


def checked_update(update: str, allowed: tuple[str, ...] = UPDATES, why: str = "") -> str:
    """``update`` if it is one of ``allowed``; otherwise a ValueError naming the choices."""
    if update not in allowed:
        raise ValueError(f"update={update!r}: choose from {list(allowed)}" + (f" ({why})" if why else ""))
    return update


class Regularizer:
    name = "none"
    in_loss = False  # True: penalty() is added to the loss and differentiated by autograd
    criterion = "percentile"  # default prune criterion (a name in regprune.pruning.criteria.CRITERIA)

    def __init__(self, lam: float = 0.0):
        if not lam >= 0:
            raise ValueError(f"lam={lam} must be ≥ 0")
        self.lam = float(lam)
        self.model: PrunableModel | None = None

    def attach(self, model: PrunableModel) -> None:
        self.model = model

    def detach(self) -> None:
        """Undo what ``attach`` (or training) hooked into the model (forward hooks, a reparametrisation); the
        regularizer is not used after."""

    def check_acts(self) -> None:
        """Refuse (UserError) a penalty that would not act on the attached model's current weights; checked when a
        run's first phase trains with the penalty."""

    def on_epoch(self, epoch: int) -> None:
        """Start of the phase's epoch ``epoch`` (0-based; a resumed phase continues at its next epoch)."""

    def task_loss(self, x: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The data term of the loss for inputs ``x``, outputs ``out`` and labels ``y``: cross-entropy, unless the
        method trains on something else (BAR's distillation)."""
        return F.cross_entropy(out, y)

    def penalty(self) -> torch.Tensor:
        """The penalty's value (differentiable where the penalty is)."""
        return torch.zeros(())

    def after_backward(self) -> None:
        """Add the penalty's (sub)gradient to parameter gradients."""

    def after_step(self, lr: float) -> None:
        """Proximal step or projection after the optimizer step."""

    def on_iteration(self, step: int) -> None:
        """Per-iteration schedule update (e.g. growing λ)."""

    def finished(self) -> bool:
        """True once the penalty's own stopping rule is met: the training phase ends at that epoch's end."""
        return False

    def epoch_stats(self) -> dict[str, float]:
        """Extra per-epoch numbers for history.csv and the logger (e.g. the share of groups in a branch)."""
        return {}

    def importance(self) -> Importance:
        """The default importance for pruning after this penalty: |γ| of each group's gate BNs."""
        return BNScale()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state, got keys {sorted(state)}")


class NoRegularizer(Regularizer):
    """Plain training (the baseline)."""

    def __init__(self):
        super().__init__(0.0)


class BNRegularizer(Regularizer):
    """Base for penalties on BatchNorm scale factors γ of every prunable group's gate."""

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        gates = model.gate_modules()
        if not gates:
            raise ValueError(f"{self.name} penalises BatchNorm scales, but {type(model).__name__} has none")
        self.gammas: list[nn.Parameter] = [m.weight for m in gates.values()]
        self.sizes = [g.numel() for g in self.gammas]

    def grads(self) -> list[torch.Tensor]:
        for g in self.gammas:
            if g.grad is None:
                g.grad = torch.zeros_like(g)
        return [g.grad for g in self.gammas]

    # every γ as one flat vector: one kernel per operation instead of one per layer
    def flat(self, detach: bool = True) -> torch.Tensor:
        return torch.cat([(g.detach() if detach else g).reshape(-1) for g in self.gammas])

    @torch.no_grad()
    def add_grad(self, flat: torch.Tensor) -> None:
        torch._foreach_add_(self.grads(), list(flat.split(self.sizes)))

    @torch.no_grad()
    def assign(self, flat: torch.Tensor) -> None:
        torch._foreach_copy_(self.gammas, list(flat.split(self.sizes)))
