"""Training phases: with the penalty (``Train``) or without it (``Finetune``); one loop for both."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ...analysis.magnitudes import record_magnitudes
from ..loop import NonFiniteError, train_one_epoch
from ..optim import LR_SCHEDULES, lr_at, set_lr
from .base import Phase, role

if TYPE_CHECKING:
    from ..runner import Runner, RunState

METRIC_PREFIX = {"train": "acc_trained", "finetune": "acc_finetuned", "pretrain": "acc_pretrained",
                 "retrain": "acc_scratch"}


def metric_prefix(name: str) -> str:
    return METRIC_PREFIX.get(role(name), f"acc_{role(name)}")


@dataclass
class Train(Phase):
    """``epochs`` of SGD/Adam with the run's optimizer; the regularizer acts when ``penalty`` is true and may
    end the phase early (``Regularizer.finished``). ``lr`` and ``weight_decay`` override the optimizer's."""

    epochs: int = 160
    lr: float | None = None
    lr_schedule: str = "step"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    lr_gamma: float = 0.1
    penalty: bool = True
    weight_decay: float | None = None

    def __post_init__(self):
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs} must be ≥ 0")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be ≥ 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: choose from {list(LR_SCHEDULES)}")
        self.milestones = [float(m) for m in self.milestones]
        if any(not 0 < m <= 1 for m in self.milestones):
            raise ValueError(f"milestones={self.milestones} must be fractions in (0, 1]")

    def run(self, runner: Runner, state: RunState, name: str) -> None:
        model = state.model
        forward = runner.train_module(model)  # weights in the perf layout before the optimizer sees them
        reg = runner.regularizer(model, state.regularizer if state.epoch > 0 else None) if self.penalty else None
        optimizer = runner.optimizer_spec.build(model, self.weight_decay)
        if state.optimizer is not None:
            optimizer.load_state_dict(state.optimizer)
        base_lr = self.lr if self.lr is not None else runner.optimizer_spec.lr
        for epoch in range(state.epoch, self.epochs):
            t0 = time.perf_counter()
            lr = lr_at(epoch, self.epochs, base_lr, self.lr_schedule, self.milestones, self.lr_gamma)
            set_lr(optimizer, lr)
            if reg is not None:
                reg.on_epoch(epoch)
            runner.train_batches.set_epoch(len(state.history))
            batches = runner.callbacks.watch(runner.train_batches, state.step)
            train, state.step = train_one_epoch(forward, batches, optimizer, reg, epoch=epoch, step=state.step,
                                                precision=runner.accel.precision(), progress=runner.progress,
                                                desc=f"{name} {epoch + 1}/{self.epochs}")
            check_finite(model, name, epoch)
            row = {"phase": name, "epoch": epoch + 1, "lr": lr, "train_loss": train["loss"],
                   "train_acc": train["acc"], **runner.evaluate(model),
                   "penalty": float(reg.penalty().detach()) if reg is not None else 0.0,
                   **(reg.epoch_stats() if reg is not None else {}), "epoch_time_s": time.perf_counter() - t0}
            if runner.magnitude_every and (epoch + 1) % runner.magnitude_every == 0:
                row.update(record_magnitudes(runner.record, runner.logger, model, name, epoch + 1, state.step))
            state.history.append(row)
            runner.logger.log({f"{name}/{k}": v for k, v in row.items() if k != "phase"}, step=state.step)
            state.epoch = epoch + 1
            state.optimizer = optimizer.state_dict()
            if reg is not None:
                state.regularizer = reg.state_dict()
                if reg.finished():
                    break
            if state.epoch % runner.checkpoint_every == 0 and state.epoch < self.epochs:
                runner.checkpoint(state)
        if reg is not None:
            reg.detach()
            state.regularizer = reg.state_dict()  # what detach undid is not undone again by a later attach
        runner.log_gamma_histogram(model, name, state.step)
        record_accuracies(state, name)


@dataclass
class Finetune(Train):
    """Training without the penalty (Network Slimming's fine-tuning)."""

    penalty: bool = False


def record_accuracies(state: RunState, name: str) -> None:
    """``<prefix>_final``/``_best`` (test) and their ``val_`` twins, and the test accuracy at the best
    validation epoch, from the phase's history rows; nothing for a phase that trained no epoch."""
    rows = [r for r in state.history if r["phase"] == name]
    if not rows:
        return
    prefix = metric_prefix(name)
    for split, pre in (("test", ""), ("val", "val_")):
        key = f"{split}_acc"
        if key in rows[-1]:
            state.metrics[f"{pre}{prefix}_final"] = rows[-1][key]
            state.metrics[f"{pre}{prefix}_best"] = max(r[key] for r in rows)
    if "val_acc" in rows[-1]:
        state.metrics[f"{prefix}_at_best_val"] = max(rows, key=lambda r: r["val_acc"])["test_acc"]
    state.metrics[f"epochs_{role(name)}"] = rows[-1]["epoch"]
    state.metrics["epochs_total"] = state.metrics.get("epochs_total", 0) + rows[-1]["epoch"]


def check_finite(model: torch.nn.Module, phase: str, epoch: int) -> None:
    for pname, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteError(f"non-finite values in {pname} after {phase} epoch {epoch + 1}")
