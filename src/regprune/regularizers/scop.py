"""Scientific Control for reliable pruning (Tang et al., NeurIPS 2020; docs/methods.md, SCOP).

Every channel of every group gets a real factor β ∈ [0, 1] and a knockoff factor β̃ = 1 − β after its BN
(``models.gates.KnockoffBatchNorm2d``, β = ``init`` at the start). In training, each batch x goes through the
network together with knockoffs x̃ of it (here Gaussian model-X knockoffs of the inputs, ours:
``regularizers.knockoffs``); at every gated BN the real half becomes β·BN(x) + β̃·BN(x̃) while the knockoff half
passes on, and the loss is the task loss of the real half's output. The network's weights stay fixed
(``freeze_weights``, as the authors' code); β takes plain SGD at the phase's learning rate, clipped to [0, 1]
(the authors' clamp). Importance β − β̃ (``gate``): with the threshold criterion, channels whose real feature does
not beat its knockoff (β ≤ β̃) are pruned; the folded network is the BN alone.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.base import PrunableModel
from ..pruning.gates import GateLayout
from .gated import GateRegularizer
from .knockoffs import GaussianKnockoffs


class SCOP(GateRegularizer):
    name = "scop"
    needs_trained_model = True  # a scientific control on the filters of a trained network

    def __init__(self, init: float = 0.5, shrinkage: float = 0.1, refit: int = 100, max_features: int = 4096,
                 freeze_weights: bool = True):
        if not 0 <= init <= 1:
            raise ValueError(f"init={init} is outside [0, 1]")
        super().__init__(0.0, GateLayout("knockoffs", init=init), freeze_weights)
        self.knockoffs = GaussianKnockoffs(shrinkage, refit, max_features)
        self.hooks: list = []

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self.hooks = [model.register_forward_pre_hook(self.with_knockoffs), model.register_forward_hook(self.real)]
        for m in self.gated.values():
            m.paired = True

    def detach(self) -> None:
        super().detach()
        for h in self.hooks:
            h.remove()
        self.hooks = []
        for m in getattr(self, "gated", {}).values():
            m.paired = False

    def with_knockoffs(self, model: nn.Module, args: tuple) -> tuple | None:
        """Training batches go in as [x; x̃]."""
        if not model.training:
            return None
        x, *rest = args
        return (torch.cat([x, self.knockoffs(x)]), *rest)

    def real(self, model: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        """The real half of a training batch's output."""
        return out[: len(out) // 2] if model.training else None

    @torch.no_grad()
    def step_gates(self, lr: float, grads: list[torch.Tensor]) -> None:
        for beta, g in zip(self.params, grads, strict=True):
            beta.sub_(lr * g).clamp_(0, 1)

    def state_dict(self) -> dict:
        return self.knockoffs.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.knockoffs.load_state_dict(state, self.params[0].device)
