"""Masks: which channels of each group survive, the guards every criterion shares, and masking.

Guards (docs/methods.md, Pruning criteria): a layer may lose at most ``max_layer_ratio`` of its channels in one
pruning step (Network Slimming's multi-pass cap), and a layer left with fewer than ``min_channels`` is an
error or is topped up with its best channels (``on_empty=keep_min``); the record says which layers a guard
changed, so nothing is pruned less than asked without saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..models.base import PrunableModel

ON_EMPTY = ("error", "keep_min")


@dataclass
class PruneResult:
    masks: dict[str, torch.Tensor]  # group name -> bool mask over its channels
    threshold: float | None
    topped_up: dict[str, int] = field(default_factory=dict)  # group -> channels kept only by the min guard
    capped: dict[str, int] = field(default_factory=dict)  # group -> channels kept only by max_layer_ratio
    ratio: float | None = None  # the percentile ratio a FLOPs target was met with

    def kept(self) -> dict[str, int]:
        return {k: int(m.sum()) for k, m in self.masks.items()}

    def pruned_ratio(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(self.kept().values()) / total


def keep_best(mask: torch.Tensor, scores: torch.Tensor, need: int) -> int:
    """Set the ``need`` best-scored channels of ``mask`` on; returns how many were off."""
    best = scores.argsort(descending=True, stable=True)[:need]
    added = int((~mask[best]).sum())
    mask[best] = True
    return added


def guard(masks: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], threshold: float | None,
          min_channels: int = 1, on_empty: str = "error", max_layer_ratio: float | None = None) -> PruneResult:
    if on_empty not in ON_EMPTY:
        raise UserError(f"schedule.prune.on_empty={on_empty!r}: choose from {list(ON_EMPTY)}")
    result = PruneResult(masks={}, threshold=threshold)
    for name, mask in masks.items():
        s, mask = scores[name], mask.clone()
        if max_layer_ratio is not None:
            keep = math.ceil(len(s) * (1 - max_layer_ratio))
            if int(mask.sum()) < keep:
                result.capped[name] = keep_best(mask, s, keep)
        need = min(min_channels, len(s))
        if int(mask.sum()) < need:
            if on_empty == "error":
                raise UserError(f"pruning would leave {int(mask.sum())} channel(s) in {name} (minimum "
                                f"{need}); lower schedule.prune.ratio or set schedule.prune.on_empty=keep_min")
            result.topped_up[name] = keep_best(mask, s, need)
        result.masks[name] = mask
    return result


@torch.no_grad()
def apply_masks(model: PrunableModel, masks: dict[str, torch.Tensor]) -> None:
    """Zero γ and β of pruned channels in every gate BN (the NS 'masked' model)."""
    modules = dict(model.named_modules())
    for g in model.channel_groups():
        keep = masks[g.name].to(next(model.parameters()).device)
        for b in g.gates:
            drop = model.gate_index(g, b)[~keep]
            modules[b].weight[drop] = 0
            modules[b].bias[drop] = 0


def widths_after(model: PrunableModel, masks: dict[str, torch.Tensor]) -> list[int]:
    """The model's widths once ``masks`` are compacted."""
    widths = list(model.widths)
    for g in model.channel_groups():
        widths[g.width] = int(masks[g.name].sum())
    return widths
