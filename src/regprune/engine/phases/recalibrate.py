"""Adaptive-BN recalibration as a phase of its own (EagleEye): new BN statistics, weights untouched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..bn_recalib import recalibrate_bn
from .base import Phase
from .prune import accuracies

if TYPE_CHECKING:
    from ..runner import Runner, RunState


@dataclass
class RecalibrateBN(Phase):
    """Recompute BN running statistics on ``batches`` training batches (0: the phase is off)."""

    batches: int = 100

    def __post_init__(self):
        if self.batches < 0:
            raise ValueError(f"batches={self.batches} must be ≥ 0")

    def expand(self, name: str) -> list[tuple[str, Phase]]:
        return super().expand(name) if self.batches else []

    def run(self, runner: Runner, state: RunState, name: str) -> None:
        runner.train_batches.set_epoch(len(state.history))
        # through the prepared module: the same weight layout (and kernels) as training and evaluation,
        # whether the model comes from the previous phase or from a checkpoint
        recalibrate_bn(runner.forward_module(state.model), runner.train_batches, self.batches)
        state.metrics.update(accuracies("acc_recalibrated", runner.evaluate(state.model)))
