"""ResRep (Ding et al., ICCV 2021; docs/methods.md, ResRep): compactors with gradient resetting.

A compactor Q (a 1×1 conv, the identity at installation) follows every prunable BN; channel k is Q's row k. The
penalty is group lasso on the rows, λΣ_k‖Q_k‖₂, and the compactors' gradient is reset per row:

    G_k = m_k·∂L/∂Q_k + λ·Q_k/‖Q_k‖₂

with m_k = 1 for the channels to remember and 0 for the channels selected to forget, which then feel only the
penalty and shrink to 0 while the task loss adapts to their absence. After ``warmup`` iterations, every ``every``
iterations the selection is redone from all channels ranked by ‖Q_k‖₂ (ascending, globally): channels are forgotten
in that order until the network without them fits the FLOPs budget (``flops_target``, the share of MACs kept) — at
most ``granularity`` more than are forgotten so far while the budget is not yet met — never leaving a layer fewer
than ``min_channels``. Compactors take SGD with their own momentum (0.99) and no weight decay. At pruning the
forgotten channels go (they score 0) and conv, BN and compactor merge into one conv and a shifting BN.
Settings: the authors' ResNet-56 configuration (lasso strength 1e-4, mask interval 200, compactor momentum 0.99,
5 epochs before the first mask, 4 more channels per mask update, at least 1 channel per layer).
"""

from __future__ import annotations

import torch

from ..models.base import PrunableModel
from ..pruning.gates import GateLayout, gate_scores
from ..pruning.importance import Importance, Scores
from .gated import GateRegularizer, check_budget


class ResRep(GateRegularizer):
    name = "resrep"
    needs_trained_model = True  # gates a trained network
    budgeted = True

    def __init__(self, lam: float = 1e-4, flops_target: float = 0.471, warmup: int = 3900, every: int = 200,
                 granularity: int = 4, momentum: float = 0.99, min_channels: int = 1):
        if warmup < 0 or every < 1 or granularity < 1 or min_channels < 1:
            raise ValueError(f"warmup={warmup} must be ≥ 0, every={every}, granularity={granularity} and "
                             f"min_channels={min_channels} ≥ 1")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum} is outside [0, 1)")
        super().__init__(lam, GateLayout("compactors"))
        self.flops_target = check_budget(flops_target)
        self.warmup, self.every, self.granularity = int(warmup), int(every), int(granularity)
        self.momentum, self.min_channels = float(momentum), int(min_channels)
        self.iteration = 0
        self.forget: dict[str, list[int]] = {}  # group -> channels selected to forget
        self.buffers: list[torch.Tensor] | None = None

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self.groups = [g.name for g in model.channel_groups()]
        self.params = [self.gated[g.gates[0]].compactor for g in model.channel_groups()]  # group i's: params[i]

    def penalty(self) -> torch.Tensor:
        return self.lam * sum(q.norm(dim=1).sum() for q in self.params)

    def remember(self, group: str, q: torch.Tensor) -> torch.Tensor:
        m = torch.ones(q.shape[0], 1, dtype=q.dtype, device=q.device)
        m[self.forget.get(group, [])] = 0
        return m

    @torch.no_grad()
    def gate_grads(self, grads: list[torch.Tensor]) -> None:
        for group, q, g in zip(self.groups, self.params, grads, strict=True):
            norm = q.norm(dim=1, keepdim=True)
            lasso = torch.where(norm > 0, q / norm.clamp_min(torch.finfo(q.dtype).tiny), 0.0)
            g.mul_(self.remember(group, q)).add_(lasso, alpha=self.lam)

    @torch.no_grad()
    def step_gates(self, lr: float, grads: list[torch.Tensor]) -> None:
        if self.buffers is None:
            self.buffers = [torch.zeros_like(q) for q in self.params]
        for q, g, buf in zip(self.params, grads, self.buffers, strict=True):
            buf.mul_(self.momentum).add_(g)
            q.sub_(lr * buf)

    def on_iteration(self, step: int) -> None:
        self.iteration += 1
        if self.iteration > self.warmup and (self.iteration - self.warmup) % self.every == 0:
            self.forget = self.select()

    @torch.no_grad()
    def select(self) -> dict[str, list[int]]:
        """Channels to forget: ascending ‖Q_k‖₂ over all groups until the budget is met (see the module doc)."""
        norms = {group: q.norm(dim=1).cpu() for group, q in zip(self.groups, self.params, strict=True)}
        ranked = sorted(((float(v), group, k) for group, n in norms.items() for k, v in enumerate(n)))
        on = {group: len(n) for group, n in norms.items()}
        budget = self.flops_target * self.full_macs
        forgotten = sum(len(v) for v in self.forget.values())
        limit = forgotten + self.granularity if self.macs({g: on[g] - len(self.forget.get(g, [])) for g in on}) > \
            budget else len(ranked)
        chosen: dict[str, list[int]] = {}
        for _, group, k in ranked:
            if self.macs(on) <= budget or sum(map(len, chosen.values())) >= limit:
                break
            if on[group] > self.min_channels:
                on[group] -= 1
                chosen.setdefault(group, []).append(k)
        return {group: sorted(v) for group, v in chosen.items()}

    def macs(self, on: dict[str, int]) -> float:
        return float(self.cost()(on))

    def importance(self) -> Importance:
        return ForgottenChannels(self)

    def epoch_stats(self) -> dict[str, float]:
        total = sum(q.shape[0] for q in self.params)
        return {"forgotten": sum(map(len, self.forget.values())) / total, "flops_kept": self.flops_kept()}

    def flops_kept(self) -> float:
        """MACs without the forgotten channels, as a share of the full network's."""
        return self.macs({g: q.shape[0] - len(self.forget.get(g, [])) for g, q in zip(self.groups, self.params,
                                                                                       strict=True)}) / self.full_macs

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "forget": self.forget,
                "buffers": self.buffers_state(self.buffers) if self.buffers is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.iteration, self.forget = int(state["iteration"]), {k: list(v) for k, v in state["forget"].items()}
            self.buffers = self.restored(state["buffers"]) if state["buffers"] is not None else None


class ForgottenChannels(Importance):
    """ResRep's own importance: ‖Q_k‖₂, with the channels selected to forget scored 0 (zero detection removes
    exactly them)."""

    name = "resrep_forgotten"

    def __init__(self, resrep: ResRep):
        self.resrep = resrep

    @torch.no_grad()
    def __call__(self, model: PrunableModel) -> Scores:
        scores = gate_scores(model)
        for group, channels in self.resrep.forget.items():
            scores[group][channels] = 0.0
        return scores
