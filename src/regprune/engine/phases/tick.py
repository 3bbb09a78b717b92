"""Gate Decorator's tick (docs/methods.md, Gate Decorator): a short pass that scores and prunes a step of FLOPs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import torch

from ...cost import model_cost
from ...pruning import build_importance
from ...pruning.importance import Taylor
from ..loop import train_one_epoch
from .base import Phase
from .prune import Prune, record_pruning

if TYPE_CHECKING:
    from ..runner import Runner, RunState


@dataclass
class Tick(Phase):
    """Train only the gates (the gate BNs' γ and β) and the final linear layer for one pass over the first
    ``data_share`` of the training batches, score channels on the same batches (``importance``, default Taylor
    |Σ ∂L/∂φ·φ|) and prune globally the fewest channels that take the model's FLOPs ``flops_step`` (a share of the
    unpruned FLOPs) lower, never below ``flops_target``. A tick whose model already meets the target is ``done``:
    a ``Repeat`` skips the rest of the passes."""

    flops_target: float = 0.5
    flops_step: float = 0.1
    data_share: float = 0.1
    lr: float | None = None
    importance: str = "taylor"
    min_channels: int = 1
    on_empty: str = "keep_min"

    def __post_init__(self):
        if not 0 < self.flops_target < 1:
            raise ValueError(f"flops_target={self.flops_target} is outside (0, 1)")
        if not 0 < self.flops_step < 1:
            raise ValueError(f"flops_step={self.flops_step} is outside (0, 1)")
        if not 0 < self.data_share <= 1:
            raise ValueError(f"data_share={self.data_share} is outside (0, 1]")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        build_importance(self.importance)  # an unknown name fails when the schedule is built, not mid-run
        self.pruner(0.5)  # so do bad guards

    def pruner(self, flops_target: float) -> Prune:
        return Prune(flops_target=flops_target, criterion="percentile", min_channels=self.min_channels,
                     on_empty=self.on_empty)

    @property
    def min_passes(self) -> int:
        """Ticks needed to reach the target (each removes at least ``flops_step`` of the unpruned FLOPs)."""
        return math.ceil((1 - self.flops_target) / self.flops_step - 1e-9)

    def done(self, runner: Runner, state: RunState) -> bool:
        return flops_share(runner, state) <= self.flops_target + 1e-9

    def run(self, runner: Runner, state: RunState, name: str) -> None:
        share = flops_share(runner, state)
        if share <= self.flops_target + 1e-9:
            return
        n = max(1, math.ceil(self.data_share * len(runner.train_batches)))
        train_gates_and_head(runner, state, n, self.lr)
        importance = Taylor(max_batches=n) if self.importance == "taylor" else build_importance(self.importance)
        pruner = self.pruner(max(self.flops_target, share - self.flops_step) / share)  # of the current FLOPs
        runner.train_batches.set_epoch(len(state.history))  # the batches the pass trained on
        result = pruner.select(state.model, importance, "percentile", runner.data.input_shape,
                                    islice(runner.train_batches, n))
        # no prune_ratio: the passes choose their own (tables give such a run one row, its ratio "–")
        labels = {"prune_ratio": None, "tick_ratio": result.ratio, "prune_criterion": "percentile",
                  "prune_importance": importance.name, "prune_flops_target": self.flops_target, "tick_batches": n}
        record_pruning(runner, state, name, result, labels)


def flops_share(runner: Runner, state: RunState) -> float:
    """The model's FLOPs as a share of the unpruned model's."""
    return model_cost(state.model, runner.data.input_shape, latency=False)["flops"] / state.metrics["flops_unpruned"]


def train_gates_and_head(runner: Runner, state: RunState, batches: int, lr: float | None) -> None:
    """One pass over the first ``batches`` training batches that updates only the gate BNs' γ and β and the last
    linear layer (Gate Decorator's tick); the run's optimizer at ``lr`` (default its own), a fresh state."""
    model = state.model
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    trainable = {id(p) for m in (*model.gate_modules().values(), head) for p in m.parameters()}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(id(p) in trainable)
    try:
        optimizer = runner.optimizer_spec.build(model)
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        runner.train_batches.set_epoch(len(state.history))
        _, state.step = train_one_epoch(runner.forward_module(model), islice(runner.train_batches, batches),
                                        optimizer, None, epoch=0, step=state.step, precision=runner.accel.precision())
    finally:
        for p, requires in saved:
            p.requires_grad_(requires)
