"""Importance: one score per channel of every prunable group (higher = more important).

An importance is a callable ``model -> {group name: scores}``; criteria (``pruning.criteria``) turn scores into
masks. A regularizer names its default importance (``Regularizer.importance()``); ``schedule.prune.importance``
picks another from ``IMPORTANCES`` by name.
"""

from __future__ import annotations

from functools import partial

import torch

from ..errors import UserError
from ..models.base import PrunableModel

Scores = dict[str, torch.Tensor]


class Importance:
    name = "importance"

    def __call__(self, model: PrunableModel) -> Scores:
        raise NotImplementedError


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


IMPORTANCES = {
    "bn_gamma": BNScale,
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
