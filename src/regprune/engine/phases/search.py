"""EagleEye's pruning search (Li et al., ECCV 2020; docs/methods.md, EagleEye): random layer-wise pruning
ratios at a FLOPs target, filters ranked by ℓ1 norm within each layer, BN statistics re-estimated on a few
training batches (adaptive BN), each candidate scored on held-out data; the best one is kept (``acc_pruned_recal``;
the median candidate's accuracy after adaptive BN is recorded beside it, ``acc_search_median_recal`` and its
``val_`` twin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...cost import macs_at_widths
from ...errors import UserError
from ...models.base import PrunableModel
from ...pruning import PruneResult, build_importance, compact, guard, scores_of, widths_after
from ...pruning.importance import Scores
from ..bn_recalib import recalibrate_bn
from ..loop import evaluate
from .base import Phase
from .prune import accuracies, record_pruning

if TYPE_CHECKING:
    from ..runner import Runner, RunState


def layer_masks(scores: Scores, ratios: dict[str, float]) -> dict[str, torch.Tensor]:
    """Per group, drop the ⌊ratio·n⌋ lowest-scored channels."""
    masks = {}
    for k, s in scores.items():
        mask = torch.ones_like(s, dtype=torch.bool)
        mask[s.argsort(stable=True)[:int(len(s) * ratios[k])]] = False
        masks[k] = mask
    return masks


@dataclass
class SearchPrune(Phase):
    """``candidates`` pruning structures at ``flops_target`` (share of the unpruned MACs kept, within
    ``tolerance``). EagleEye draws each layer's ratio uniformly and rejects structures outside the FLOPs band;
    we draw a random direction d ∈ [0, 1]^L and scale it, r = min(s·d, max_layer_ratio), with s found by
    bisection, so every candidate meets the target without rejection (ours). Each candidate is compacted,
    recalibrated on ``recal_batches`` training batches and scored by accuracy on the validation split (at most
    ``eval_images`` of it; 0 = all). The best candidate, with its recalibrated statistics, continues."""

    flops_target: float = 0.5
    candidates: int = 50
    max_layer_ratio: float = 0.9
    importance: str = "filter_l1"
    recal_batches: int = 100
    eval_images: int = 0
    tolerance: float = 0.01

    def __post_init__(self):
        if not 0 < self.flops_target < 1:
            raise ValueError(f"flops_target={self.flops_target} is outside (0, 1)")
        if self.candidates < 1:
            raise ValueError(f"candidates={self.candidates} must be ≥ 1")
        if not 0 < self.max_layer_ratio < 1:
            raise ValueError(f"max_layer_ratio={self.max_layer_ratio} is outside (0, 1)")
        if self.recal_batches < 1:
            raise ValueError(f"recal_batches={self.recal_batches} must be ≥ 1")
        if self.eval_images < 0 or not 0 < self.tolerance < 1:
            raise ValueError("eval_images must be ≥ 0 and tolerance in (0, 1)")

    def run(self, runner: Runner, state: RunState, name: str) -> None:
        if "val" not in runner.eval_batches:
            raise UserError("schedule=eagleeye scores candidates on held-out data: set dataset.val_fraction > 0")
        model, shape = state.model, runner.data.input_shape
        runner.train_batches.set_epoch(len(state.history))
        scores = scores_of(build_importance(self.importance), model, runner.train_batches)
        full = macs_at_widths(model, model.widths, shape)
        gen = torch.Generator().manual_seed(runner.seed)
        held_out = runner.held_out(self.eval_images)
        candidates = []
        for i in range(self.candidates):
            direction = {k: float(v) for k, v in zip(scores, torch.rand(len(scores), generator=gen), strict=True)}
            result = self.structure(model, scores, direction, full, shape)
            if result is not None:
                small = self.recalibrated(runner, model, result, len(state.history))
                score = evaluate(runner.forward_module(small), held_out, runner.accel.precision())["acc"]
                macs = macs_at_widths(model, widths_after(model, result.masks), shape)
                candidates.append({"candidate": i, "score": score, "macs_ratio": macs / full,
                                   "kept_channels": result.kept(), "result": result})
        if not candidates:
            raise UserError(f"no pruning structure reaches flops_target={self.flops_target}; raise max_layer_ratio "
                            "or the target")
        runner.record.write_json("search_candidates.json", {"candidates": [
            {k: v for k, v in c.items() if k != "result"} for c in candidates]})
        ranked = sorted(candidates, key=lambda c: c["score"])
        median, best = ranked[(len(ranked) - 1) // 2], ranked[-1]
        median_model = self.recalibrated(runner, model, median["result"], len(state.history))
        state.metrics.update({**accuracies("acc_search_median_recal", runner.evaluate(median_model)),
                              "search_best_score": best["score"], "search_median_score": median["score"],
                              "search_candidates": len(candidates)})
        record_pruning(runner, state, name, best["result"], {
            "prune_criterion": "flops_search", "prune_importance": self.importance,
            "prune_flops_target": self.flops_target}, self.recal_batches, keep_recalibrated=True)

    def structure(self, model: PrunableModel, scores: Scores, direction: dict[str, float], full: int,
                  shape: tuple[int, ...]) -> PruneResult | None:
        """Masks at the FLOPs target along ``direction`` (None if the cap cannot reach it)."""

        def at(s: float) -> tuple[PruneResult, float]:
            ratios = {k: min(s * d, self.max_layer_ratio) for k, d in direction.items()}
            result = guard(layer_masks(scores, ratios), scores, None, on_empty="keep_min")
            return result, macs_at_widths(model, widths_after(model, result.masks), shape) / full

        lo, hi = 0.0, 1.0 / max(min(direction.values()), 1e-6)  # at hi every layer sits at the cap
        if at(hi)[1] > self.flops_target + self.tolerance:
            return None
        for _ in range(30):
            mid = (lo + hi) / 2
            result, ratio = at(mid)
            if abs(ratio - self.flops_target) <= self.tolerance / 4:
                return result
            lo, hi = (mid, hi) if ratio > self.flops_target else (lo, mid)
        result, ratio = at(hi)
        return result if abs(ratio - self.flops_target) <= self.tolerance else None

    def recalibrated(self, runner: Runner, model: PrunableModel, result: PruneResult,
                     epoch: int) -> PrunableModel:
        small = compact(model, result.masks)
        runner.train_batches.set_epoch(epoch)  # every candidate sees the same batches
        recalibrate_bn(runner.forward_module(small), runner.train_batches, self.recal_batches)
        return small
