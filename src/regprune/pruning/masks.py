"""Channel masks from BN scale factors: global percentile or per-layer ratio, with an empty-layer guard.

Scores are |γ| of each group's gate BNs (the mean over gates when a group has several, as for a
coupled residual stream). Following NS (docs/methods.md, Pruning criteria), a channel survives only if its score is
strictly above the threshold; a layer that would lose every channel is either an error or is
topped up to ``min_channels`` of its best channels, and the record says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..models.base import ChannelGroup, PrunableModel


@dataclass
class PruneResult:
    masks: dict[str, torch.Tensor]  # group name -> bool mask over its channels
    threshold: float | None
    topped_up: dict[str, int] = field(default_factory=dict)  # group -> channels kept only by the guard

    def kept(self) -> dict[str, int]:
        return {k: int(m.sum()) for k, m in self.masks.items()}

    def pruned_ratio(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(self.kept().values()) / total


def group_scores(model: PrunableModel, groups: list[ChannelGroup] | None = None) -> dict[str, torch.Tensor]:
    """|γ| per channel of every prunable group (averaged over a group's gates)."""
    modules = dict(model.named_modules())
    groups = model.channel_groups() if groups is None else groups
    return {g.name: torch.stack([modules[b].weight.detach()[model.gate_index(g, b)].abs().float().cpu()
                                 for b in g.gates]).mean(0)
            for g in groups}


def masks_from_scores(scores: dict[str, torch.Tensor], ratio: float, scope: str = "global",
                      min_channels: int = 1, on_empty: str = "error",
                      threshold: float | None = None) -> PruneResult:
    """Keep channels whose score is strictly above a threshold.

    scope="global": one threshold, the ``ratio`` quantile of all scores (NS).
    scope="layer":  each group drops its own ``ratio`` share of lowest-scored channels.
    ``threshold`` (optional) overrides the ratio with a fixed global value (e.g. zero detection).
    """
    if not 0.0 <= ratio < 1.0:
        raise UserError(f"schedule.prune.ratio={ratio} is outside [0, 1)")
    if scope not in ("global", "layer"):
        raise UserError(f"schedule.prune.scope={scope!r}: choose global or layer")
    if on_empty not in ("error", "keep_min"):
        raise UserError(f"schedule.prune.on_empty={on_empty!r}: choose error or keep_min")
    if threshold is None and scope == "global":
        flat = torch.cat(list(scores.values())).sort().values
        # NS: sort all |γ| and take the value at index ⌊N·ratio⌋ (ratio 0 keeps everything)
        threshold = float(flat[int(len(flat) * ratio)]) if ratio > 0 else -1.0
    masks, topped = {}, {}
    for name, s in scores.items():
        if threshold is not None:
            mask = s > threshold
        else:
            n_drop = int(len(s) * ratio)
            mask = torch.ones_like(s, dtype=torch.bool)
            mask[s.argsort()[:n_drop]] = False
        need = min(min_channels, len(s))
        if int(mask.sum()) < need:
            if on_empty == "error":
                raise UserError(f"pruning would leave {int(mask.sum())} channel(s) in {name} (minimum "
                                f"{need}); lower schedule.prune.ratio or set schedule.prune.on_empty=keep_min")
            best = s.argsort(descending=True)[:need]
            topped[name] = need - int(mask.sum())
            mask[best] = True
        masks[name] = mask
    return PruneResult(masks=masks, threshold=threshold, topped_up=topped)


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
