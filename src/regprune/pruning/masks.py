"""Channel masks from BN scale factors: global percentile or per-layer ratio, with an empty-layer guard.

Scores are |γ| of each group's gate BNs (the mean over gates when a group has several, as for a
coupled residual stream). Following NS (papers.md §3, §6), a channel survives only if its score is
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


def gate_values(model: PrunableModel, param: str = "weight",
                groups: list[ChannelGroup] | None = None) -> dict[str, torch.Tensor]:
    """A gate BN parameter (γ: ``weight``, β: ``bias``) per channel of every prunable group, averaged over a
    group's gates."""
    modules = dict(model.named_modules())
    groups = model.channel_groups() if groups is None else groups
    return {g.name: torch.stack([getattr(modules[b], param).detach()[model.gate_index(g, b)].float().cpu()
                                 for b in g.gates]).mean(0)
            for g in groups}


def group_scores(model: PrunableModel, groups: list[ChannelGroup] | None = None) -> dict[str, torch.Tensor]:
    """|γ| per channel of every prunable group (averaged over a group's gates)."""
    return {k: v.abs() for k, v in gate_values(model, "weight", groups).items()}


def constant_outputs(model: PrunableModel) -> dict[str, torch.Tensor]:
    """ReLU(β) per channel: what a channel whose γ is 0 still emits after its BN and ReLU (a constant). The
    tie-break of ``masks_from_scores``: among equal scores, removing a smaller constant changes the network less
    (β ≤ 0: the channel is exactly 0 and its removal changes nothing)."""
    return {k: v.clamp_min(0) for k, v in gate_values(model, "bias").items()}


def ranked(scores: torch.Tensor, tiebreak: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of ``scores`` from lowest to highest; equal scores by ``tiebreak`` (lowest first), then position."""
    if tiebreak is None:
        return scores.argsort(stable=True)
    order = tiebreak.argsort(stable=True)
    return order[scores[order].argsort(stable=True)]


def masks_from_scores(scores: dict[str, torch.Tensor], ratio: float, scope: str = "global",
                      min_channels: int = 1, on_empty: str = "error", threshold: float | None = None,
                      tiebreak: dict[str, torch.Tensor] | None = None) -> PruneResult:
    """Keep channels whose score is strictly above a threshold.

    scope="global": one threshold, the ``ratio`` quantile of all scores (NS).
    scope="layer":  each group drops its own ``ratio`` share of lowest-scored channels.
    ``threshold`` (optional) overrides the ratio with a fixed global value (e.g. zero detection).
    ``tiebreak`` (optional, per channel like ``scores``): the global percentile then prunes exactly NS's count,
    ⌊N·ratio⌋ + 1, taking tied scores lowest ``tiebreak`` first. Without it NS's rule prunes every channel tied
    with the threshold: all exact zeros of a proximal penalty, whatever the ratio.
    """
    if not 0.0 <= ratio < 1.0:
        raise UserError(f"schedule.prune.ratio={ratio} is outside [0, 1)")
    if scope not in ("global", "layer"):
        raise UserError(f"schedule.prune.scope={scope!r}: choose global or layer")
    if on_empty not in ("error", "keep_min"):
        raise UserError(f"schedule.prune.on_empty={on_empty!r}: choose error or keep_min")
    dropped: dict[str, torch.Tensor] | None = None
    if threshold is None and scope == "global":
        flat = torch.cat(list(scores.values()))
        # NS: sort all |γ| and take the value at index ⌊N·ratio⌋ (ratio 0 keeps everything)
        n_drop = int(len(flat) * ratio) + 1 if ratio > 0 else 0
        if tiebreak is None:
            threshold = float(flat.sort().values[n_drop - 1]) if n_drop else -1.0
        else:
            order = ranked(flat, torch.cat([tiebreak[k] for k in scores]))
            drop = torch.zeros(len(flat), dtype=torch.bool)
            drop[order[:n_drop]] = True
            dropped = dict(zip(scores, drop.split([len(v) for v in scores.values()]), strict=True))
            threshold = float(flat[order[n_drop - 1]]) if n_drop else -1.0
    masks, topped = {}, {}
    for name, s in scores.items():
        if dropped is not None:
            mask = ~dropped[name]
        elif threshold is not None:
            mask = s > threshold
        else:
            mask = torch.ones_like(s, dtype=torch.bool)
            mask[ranked(s, None if tiebreak is None else tiebreak[name])[:int(len(s) * ratio)]] = False
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
