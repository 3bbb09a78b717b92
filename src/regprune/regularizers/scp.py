"""SCP, operation-aware soft channel pruning (Kang & Han, ICML 2020; docs/methods.md, SCP).

A channel's BN output is taken as N(β, γ²) before its ReLU: it passes the ReLU (with a value above ``eps``) with
probability Φ((β − ε)/|γ|). The channel's mask is open with probability p = Φ((β − ε)/|γ| + κ) (``margin`` κ,
ours: a channel is closed when even its mean + κ standard deviations stays below ε, so a channel that the ReLU
cuts only part of the time stays open; κ = 0 is the plain ReLU probability; ``pruning.importance.relu_survival``,
the mean over a coupled group's gates). Training multiplies every gate's output by a differentiable mask drawn
from a relaxed Bernoulli(p) (logistic noise u, temperature τ): m = σ((logit p + logit u)/τ), one draw per sample
and channel, shared by a coupled group's gates; gradients reach γ and β through p as well as through the BN
output. In evaluation the mask is the hard decision 1[p > ½]. The penalty λ Σ p (the expected number of open
channels) is added to the loss. Pruning ranks channels by p (importance ``relu_prob``, same ranking for any κ);
threshold ½ removes exactly the channels the evaluation mask closes, so accuracy right after pruning equals the
trained model's.
"""

from __future__ import annotations

import torch

from ..models.base import PrunableModel
from ..pruning.importance import ReluSurvival, gate_rows, relu_survival
from .base import Regularizer

PROB_FLOOR = 1e-6  # p is kept in [1e-6, 1 − 1e-6] inside the logit


class SoftChannelPruning(Regularizer):
    name = "scp"
    in_loss = True

    def __init__(self, lam: float = 1e-3, eps: float = 0.0, margin: float = 2.0, temperature: float = 0.5):
        super().__init__(lam)
        if not eps >= 0:
            raise ValueError(f"eps={eps} must be ≥ 0")
        if not margin >= 0:
            raise ValueError(f"margin={margin} must be ≥ 0")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        self.eps, self.margin, self.temperature = float(eps), float(margin), float(temperature)
        self._hooks: list = []
        self._masks: dict[str, torch.Tensor] = {}

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        if not model.gate_modules():
            raise ValueError(f"{self.name} masks BatchNorm outputs, but {type(model).__name__} has none")
        self.detach()
        self.rows = gate_rows(model)
        members: dict[torch.nn.Module, list[tuple[str, torch.Tensor]]] = {}  # gate -> (group, its channels there)
        for g, gates in self.rows:
            for bn, idx in gates:
                members.setdefault(bn, []).append((g, idx))
        self._hooks.append(model.register_forward_pre_hook(self._draw))
        for bn, groups in members.items():
            self._hooks.append(bn.register_forward_hook(self._apply(groups)))

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._masks = [], {}

    def probabilities(self) -> dict[str, torch.Tensor]:
        return relu_survival(self.rows, self.eps, self.margin)

    def _draw(self, module, inputs) -> None:
        """The masks of this forward pass, [batch, channels] per group: relaxed Bernoulli(p) draws per sample and
        channel in training, 1[p > ½] in evaluation."""
        probs = self.probabilities()
        n = inputs[0].shape[0]
        if not self.model.training:
            self._masks = {g: (p > 0.5).to(p.dtype).expand(n, -1) for g, p in probs.items()}
            return
        self._masks = {}
        for g, p in probs.items():
            u = torch.rand(n, len(p), dtype=p.dtype, device=p.device).clamp(PROB_FLOOR, 1 - PROB_FLOOR)
            self._masks[g] = torch.sigmoid((torch.logit(p, PROB_FLOOR) + torch.logit(u)) / self.temperature)

    def _apply(self, groups: list[tuple[str, torch.Tensor]]):
        def hook(module, inputs, output):
            mask = torch.ones(output.shape[:2], dtype=output.dtype, device=output.device)
            for g, index in groups:
                mask = mask.index_copy(1, index, self._masks[g].to(output.dtype))
            return output * mask.view(*output.shape[:2], *([1] * (output.dim() - 2)))
        return hook

    def penalty(self) -> torch.Tensor:
        return self.lam * sum(p.sum() for p in self.probabilities().values())

    @torch.no_grad()
    def epoch_stats(self) -> dict[str, float]:
        p = torch.cat(list(self.probabilities().values()))
        return {"open_channels_pct": 100.0 * float((p > 0.5).sum()) / p.numel()}

    def importance(self) -> ReluSurvival:
        return ReluSurvival(self.eps, self.margin)
