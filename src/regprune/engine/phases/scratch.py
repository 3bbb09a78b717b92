"""Scratch retraining: the pruned widths of a finished run, trained again from random initialisation
(the control of Liu et al. 2019, "Rethinking the value of network pruning"; docs/methods.md, Scratch retraining)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UserError
from ...pruning.io import load_checkpoint
from .train import Train

if TYPE_CHECKING:
    from ..runner import Runner, RunState

LABELS = ("regularizer", "lam", "schedule", "prune_ratio", "prune_flops_target", "channels_pruned_ratio", "seed")


@dataclass
class ScratchRetrain(Train):
    """Build the final architecture of the run in ``source`` (its ``model.pt``: class and widths) with fresh
    random weights, then train it without penalty for ``epochs`` (default: as many epochs as all the source's
    training phases took, Liu et al.'s Scratch-E budget)."""

    source: str = ""
    epochs: int | None = None
    penalty: bool = False

    def __post_init__(self):
        if not self.source:
            raise ValueError("source must name a finished run folder (its pruned widths are retrained)")
        if self.penalty:
            raise ValueError("penalty=true: scratch retraining trains the pruned widths without the penalty")
        if self.epochs is not None:
            super().__post_init__()

    def run(self, runner: Runner, state: RunState, name: str) -> None:
        if self.epochs is None:
            self.epochs = source_epochs(Path(self.source))
            super().__post_init__()
        if state.epoch == 0:
            payload = load_checkpoint(Path(self.source) / "model.pt")
            runner.check_architecture(payload, Path(self.source) / "model.pt")
            state.model = runner.fresh_model(payload["spec"])
            metrics = json.loads((Path(self.source) / "metrics.json").read_text())
            state.metrics.update({"scratch_of": metrics["run_id"], "scratch_source": str(Path(self.source).resolve()),
                                  **{f"source_{k}": metrics.get(k) for k in LABELS}})
        super().run(runner, state, name)


def source_epochs(source: Path) -> int:
    """Epochs the source run spent training its weights (every training phase, its own source's included)."""
    metrics_file = source / "metrics.json"
    if not metrics_file.is_file():
        raise UserError(f"schedule source {source} is not a run folder (no metrics.json)")
    metrics = json.loads(metrics_file.read_text())
    if metrics.get("status") != "complete":
        raise UserError(f"schedule source {source} is not complete (status {metrics.get('status')!r})")
    return int(metrics["epochs_total"])


