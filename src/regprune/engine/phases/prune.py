"""The prune phase: importance → criterion → guards → masks → the one compaction."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...cost import macs_at_widths, model_cost
from ...distributed import on_main
from ...errors import UserError
from ...models.base import PrunableModel
from ...pruning import (
    CRITERIA,
    Importance,
    Percentile,
    PruneResult,
    apply_masks,
    build_criterion,
    build_importance,
    compact,
    scores_of,
    select,
    widths_after,
)
from ...pruning.criteria import SCOPES, ratio_for_flops
from ...pruning.importance import Batches, constant_outputs
from ...pruning.masks import ON_EMPTY
from ..bn_recalib import recalibrate_bn
from .base import Phase, role

if TYPE_CHECKING:
    from ..runner import Runner, RunState

PRUNERS = ("regprune", "torch_pruning")  # ours | the peer (Torch-Pruning's ranking and surgery)


@dataclass
class Prune(Phase):
    """Score channels (``importance``, default the regularizer's), choose survivors (``criterion``, default
    the regularizer's: a ``ratio`` percentile, a fixed ``threshold`` or the histogram valley), or meet a
    FLOPs target instead of a ratio (``flops_target`` = the share of the unpruned MACs to keep, by bisection
    on the percentile); apply the guards, zero the pruned channels' BN γ and β (the masked model), compact.
    ``recal_batches`` > 0 also measures the compacted model's accuracy after adaptive-BN recalibration on that
    many training batches (EagleEye), on a copy: the model that continues is the plain compacted one."""

    ratio: float = 0.5
    importance: str = "auto"
    criterion: str = "auto"
    scope: str = "global"
    threshold: float = 0.0
    flops_target: float | None = None
    max_layer_ratio: float | None = None
    min_channels: int = 1
    on_empty: str = "error"
    recal_batches: int = 0
    pruner: str = "regprune"

    def __post_init__(self):
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner={self.pruner!r}: choose from {list(PRUNERS)}")
        if not 0 <= self.ratio < 1:
            raise ValueError(f"ratio={self.ratio} is outside [0, 1)")
        if self.scope not in SCOPES:
            raise ValueError(f"scope={self.scope!r}: choose from {list(SCOPES)}")
        if self.criterion not in ("auto", *CRITERIA):
            raise ValueError(f"criterion={self.criterion!r}: choose auto or one of {list(CRITERIA)}")
        if self.flops_target is not None and not 0 < self.flops_target < 1:
            raise ValueError(f"flops_target={self.flops_target} is outside (0, 1)")
        if self.max_layer_ratio is not None and not 0 < self.max_layer_ratio < 1:
            raise ValueError(f"max_layer_ratio={self.max_layer_ratio} is outside (0, 1)")
        if self.min_channels < 1:
            raise ValueError(f"min_channels={self.min_channels} must be ≥ 1")
        if self.on_empty not in ON_EMPTY:
            raise ValueError(f"on_empty={self.on_empty!r}: choose from {list(ON_EMPTY)}")
        if self.recal_batches < 0:
            raise ValueError(f"recal_batches={self.recal_batches} must be ≥ 0")

    def run(self, runner: Runner, state: RunState, name: str) -> None:
        reg = runner.regularizer(state.model, state.regularizer)
        importance = reg.importance() if self.importance == "auto" else build_importance(self.importance)
        criterion = self.criterion if self.criterion != "auto" else reg.criterion
        reg.detach()
        if self.pruner == "torch_pruning":  # the peer row: Torch-Pruning's global |γ| ranking and its surgery
            from ...peer import torch_pruning_prune

            peer = torch_pruning_prune(state.model, self.ratio, runner.data.input_shape)
            labels = {"prune_ratio": self.ratio, "prune_criterion": "torch_pruning", "prune_importance": "bn_gamma",
                      "prune_skipped_layers": peer.skipped}
            record_pruning(runner, state, name, PruneResult(peer.masks, peer.threshold), labels, self.recal_batches,
                           compacted=peer.model)
            return
        runner.train_batches.set_epoch(len(state.history))  # a data-driven importance sees this epoch's batches
        # across processes rank 0 decides and every rank compacts the same way
        result = on_main(lambda: self.select(state.model, importance, criterion, runner.data.input_shape,
                                             runner.train_batches))
        labels = {"prune_ratio": self.ratio if result.ratio is None else result.ratio, "prune_criterion": criterion,
                  "prune_flops_target": self.flops_target, "prune_importance": importance.name}
        record_pruning(runner, state, name, result, labels, self.recal_batches)

    def select(self, model: PrunableModel, importance: Importance, criterion: str,
               input_shape: tuple[int, ...], batches: Batches | None = None) -> PruneResult:
        scores, tiebreak = scores_of(importance, model, batches), constant_outputs(model)
        guards = {"min_channels": self.min_channels, "on_empty": self.on_empty,
                  "max_layer_ratio": self.max_layer_ratio}
        if self.flops_target is None:
            return select(scores, build_criterion(criterion, self.ratio, self.scope, self.threshold, tiebreak),
                          **guards)
        if criterion != "percentile":
            raise UserError(f"schedule.prune.flops_target needs criterion=percentile (the regularizer's criterion "
                            f"is {criterion}); set schedule.prune.criterion=percentile")

        def at(ratio: float) -> PruneResult | None:
            try:
                return select(scores, Percentile(ratio, self.scope, tiebreak), **guards)
            except UserError:
                return None

        def macs_at(ratio: float) -> int | None:
            result = at(ratio)
            return None if result is None else macs_at_widths(model, widths_after(model, result.masks), input_shape)

        target = self.flops_target * macs_at_widths(model, model.widths, input_shape)
        ratio = ratio_for_flops(macs_at, target)
        result = at(ratio)
        result.ratio = ratio
        return result


def record_pruning(runner: Runner, state: RunState, name: str, result: PruneResult, labels: dict,
                   recal_batches: int = 0, keep_recalibrated: bool = False,
                   compacted: PrunableModel | None = None) -> None:
    """Mask, compact and record: accuracy of the masked and of the compacted model (they must agree) and the
    kept channels (the pruned ratio counts from the unpruned model, also after several passes); with
    ``recal_batches``, accuracy after adaptive-BN recalibration of the compacted model (of a copy, unless
    ``keep_recalibrated``: then the recalibrated model continues). ``compacted``: the model another pruner's
    surgery made (the peer row) instead of our compaction."""
    model = state.model
    apply_masks(model, result.masks)
    masked = runner.evaluate(model)
    state.model = compact(model, result.masks) if compacted is None else compacted
    kept = result.kept()
    total = state.metrics.get("total_channels") or {k: int(m.numel()) for k, m in result.masks.items()}
    metrics = {**accuracies("acc_pruned", runner.evaluate(state.model)), **accuracies("acc_pruned_masked", masked),
               **labels, "prune_threshold": result.threshold, "kept_channels": kept, "total_channels": total,
               "channels_pruned_ratio": 1.0 - sum(kept.values()) / sum(total.values()),
               "channels_topped_up": result.topped_up, "channels_capped": result.capped}
    if recal_batches:
        target = state.model if keep_recalibrated else copy.deepcopy(state.model)
        runner.train_batches.set_epoch(len(state.history))
        recalibrate_bn(runner.forward_module(target), runner.train_batches, recal_batches)
        metrics.update(accuracies("acc_pruned_recal", runner.evaluate(target)))
    state.metrics.update(metrics)
    if role(name) != name:  # one pass of a repeated schedule: keep each pass's outcome
        state.metrics.setdefault("passes", []).append(
            {"phase": name, "pass_pruned_ratio": result.pruned_ratio(),
             **{k: metrics[k] for k in ("acc_pruned", "channels_pruned_ratio", "kept_channels")}})
    runner.logger.table("kept_channels", ["layer", "kept", "total"],
                        [[k, v, metrics["total_channels"][k]] for k, v in kept.items()])
    summary = {"acc_pruned": metrics["acc_pruned"], "acc_pruned_masked": metrics["acc_pruned_masked"],
               "kept_channels": sum(kept.values()), "total_channels": sum(total.values()),
               **{k: state.metrics[k] for k in ("params_unpruned", "flops_unpruned") if k in state.metrics},
               **model_cost(state.model, runner.data.input_shape, latency=False)}
    runner.logger.log({f"prune/{k}": v for k, v in summary.items()}, step=state.step)


def accuracies(key: str, evaluated: dict[str, float]) -> dict[str, float]:
    """``{key: test accuracy, val_<key>: validation accuracy}`` (the latter when a validation split exists)."""
    out = {key: evaluated["test_acc"]}
    if "val_acc" in evaluated:
        out[f"val_{key}"] = evaluated["val_acc"]
    return out
