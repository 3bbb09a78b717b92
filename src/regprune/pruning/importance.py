"""Importance: one score per channel of every prunable group (higher = more important).

An importance is a callable ``model -> {group name: scores}``; one that ``needs_data`` is called as
``importance(model, batches)`` with training batches (``scores_of`` does the dispatch). Criteria (``pruning.criteria``)
turn scores into masks. A regularizer names its default importance (``Regularizer.importance()``);
``schedule.prune.importance`` picks another from ``IMPORTANCES`` by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..models.base import PrunableModel

Scores = dict[str, torch.Tensor]
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class Importance:
    name = "importance"
    needs_data = False  # True: called as importance(model, batches)

    def __call__(self, model: PrunableModel) -> Scores:
        raise NotImplementedError


def scores_of(importance: Importance, model: PrunableModel, batches: Batches | None = None) -> Scores:
    """``importance``'s scores of ``model``; a data-driven importance sees ``batches``."""
    if not importance.needs_data:
        return importance(model)
    if batches is None:
        raise ValueError(f"importance {importance.name!r} scores channels on training batches; none were given")
    return importance(model, batches)


@torch.no_grad()
def gate_values(model: PrunableModel, param: str = "weight") -> Scores:
    """A gate BN parameter per channel of every prunable group (γ: ``weight``, β: ``bias``), averaged over the
    gates when a group has several (a coupled stream)."""
    modules = dict(model.named_modules())
    return {g.name: torch.stack([getattr(modules[b], param).detach()[model.gate_index(g, b)].float().cpu()
                                 for b in g.gates]).mean(0)
            for g in model.channel_groups()}


def constant_outputs(model: PrunableModel) -> Scores:
    """ReLU(β) per channel: what a channel whose γ is 0 still emits after its BN and ReLU, a constant. The
    percentile's tie-break (docs/methods.md, Pruning criteria): among equal scores, removing a smaller constant
    changes the network less (β ≤ 0: the channel outputs exactly 0 and its removal changes nothing)."""
    return {k: v.clamp_min(0) for k, v in gate_values(model, "bias").items()}


class BNScale(Importance):
    """|γ| of each group's gate BNs, averaged over the gates when a group has several (a coupled stream)."""

    name = "bn_gamma"

    def __call__(self, model: PrunableModel) -> Scores:
        return {k: v.abs() for k, v in gate_values(model, "weight").items()}


class WeightNorm(Importance):
    """A norm of the weights each channel owns (docs/methods.md, Group lasso (SSL)): ``grouping`` filters (its
    producers' dim-0 slices), channels (its consumers' dim-1 slices) or oic (both); ``norm`` l1 | l2 | max;
    ``bn`` adds the gate BN's γ and β of the channel to its group."""

    def __init__(self, grouping: str = "filters", norm: str = "l2", bn: bool = False):
        self.grouping, self.norm, self.bn = grouping, norm, bn
        self.name = f"{grouping}_{norm}"

    def __call__(self, model: PrunableModel) -> Scores:
        from ..regularizers.groups import group_scores  # penalties and importance share the weight groups

        return group_scores(model, self.grouping, self.norm, self.bn)


GateRows = list[tuple[str, list[tuple[torch.nn.Module, torch.Tensor]]]]


def gate_rows(model: PrunableModel) -> GateRows:
    """(group name, [(gate BN, the group's channels in it), ...]) for every channel group."""
    return [(g.name, [(model.get_submodule(b), model.gate_index(g, b)) for b in g.gates])
            for g in model.channel_groups()]


def relu_survival(rows: GateRows, eps: float = 0.0, margin: float = 0.0) -> Scores:
    """P(BN output > ε) of every channel, its BN output taken as N(β, γ²): Φ((β − ε)/|γ|) (docs/methods.md, SCP),
    averaged over a coupled group's gates; differentiable in γ and β. ``margin`` κ shifts the argument,
    Φ((β − ε)/|γ| + κ): the probability that the channel's output stays below ε even at κ standard deviations
    above its mean is 1 − that. An exact γ = 0 gives 1 or 0 by sign(β − ε)."""
    out = {}
    for name, gates in rows:
        probs = []
        for bn, idx in gates:
            gamma, beta = bn.weight[idx], bn.bias[idx]
            z = (beta - eps) / gamma.abs().clamp_min(torch.finfo(gamma.dtype).tiny) + margin
            probs.append(0.5 * torch.erfc(-z / math.sqrt(2.0)))  # Φ(z), accurate in both tails
        out[name] = torch.stack(probs).mean(0)
    return out


class ReluSurvival(Importance):
    """P(N(β, γ²) > ε), the probability that a channel's BN output passes the ReLU (SCP's operation-aware score;
    ``margin`` as in ``relu_survival``, which does not change the ranking). Invariant under a function-preserving
    rescaling of γ and β by the same α > 0."""

    name = "relu_prob"

    def __init__(self, eps: float = 0.0, margin: float = 0.0):
        self.eps, self.margin = float(eps), float(margin)

    @torch.no_grad()
    def __call__(self, model: PrunableModel) -> Scores:
        return {k: v.float().cpu() for k, v in relu_survival(gate_rows(model), self.eps, self.margin).items()}


@torch.no_grad()
def gate_derivative(bn: torch.nn.Module, index: torch.Tensor) -> torch.Tensor:
    """∂L/∂φ·φ at φ = 1 for a gate φ on the channels ``index`` of ``bn``'s output, from its parameter gradients."""
    if bn.weight.grad is None:  # the gate did not take part in the loss
        return torch.zeros(len(index), dtype=torch.float64)
    return (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad)[index].double().cpu()


class Taylor(Importance):
    """First-order Taylor importance |Σ_batches ∂L/∂φ·φ| of a gate φ = 1 on each channel's BN outputs (Gate
    Decorator's score; Molchanov et al.'s on activations): the loss change of removing the channel, to first
    order. For a gate y = γx̂ + β, ∂L/∂φ·φ = Σ_{n,h,w} ∂L/∂y·y = γ·∂L/∂γ + β·∂L/∂β, so the parameter gradients give it
    without hooks; a coupled group sums over its gates (one φ silences all of them). Summed over ``max_batches``
    training batches (0: all of them) in eval mode (BN running statistics, nothing in the model changes) before
    the absolute value. Invariant under a function-preserving rescaling (y → αy, ∂L/∂y → ∂L/∂y/α)."""

    name = "taylor"
    needs_data = True

    def __init__(self, max_batches: int = 0):
        if max_batches < 0:
            raise ValueError(f"max_batches={max_batches} must be ≥ 0")
        self.max_batches = max_batches

    def __call__(self, model: PrunableModel, batches: Batches) -> Scores:
        modules, groups = dict(model.named_modules()), model.channel_groups()
        gates = [p for m in model.gate_modules().values() for p in (m.weight, m.bias)]
        params = list(model.parameters())
        saved = [(p.requires_grad, p.grad) for p in params]
        was_training = model.training
        gate_ids = {id(p) for p in gates}
        for p in params:
            p.requires_grad_(id(p) in gate_ids)  # no weight gradients: only the gates' are needed
            p.grad = None
        total = {g.name: torch.zeros(model.widths[g.width], dtype=torch.float64) for g in groups}
        model.eval()
        try:
            for i, (x, y) in enumerate(batches):
                if self.max_batches and i >= self.max_batches:
                    break
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                for g in groups:
                    total[g.name] += sum(gate_derivative(modules[b], model.gate_index(g, b)) for b in g.gates)
        finally:
            model.train(was_training)
            for p, (requires, grad) in zip(params, saved, strict=True):
                p.requires_grad_(requires)
                p.grad = grad
        return {k: v.abs().float() for k, v in total.items()}


IMPORTANCES = {
    "bn_gamma": BNScale,
    "relu_prob": ReluSurvival,
    "taylor": Taylor,
    "filter_l1": partial(WeightNorm, "filters", "l1"),
    "filter_l2": partial(WeightNorm, "filters", "l2"),
    "channel_l2": partial(WeightNorm, "channels", "l2"),
    "oic_l2": partial(WeightNorm, "oic", "l2"),
}


def register_importance(name: str, factory) -> None:
    IMPORTANCES[name] = factory


def build_importance(name: str) -> Importance:
    if name not in IMPORTANCES:
        raise UserError(f"schedule.prune.importance={name!r}: choose auto or one of {sorted(IMPORTANCES)}")
    return IMPORTANCES[name]()
