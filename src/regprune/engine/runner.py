"""Runs a schedule's phases on one model with per-epoch checkpoints, writing the run record."""

from __future__ import annotations

import copy
import os
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..analysis.magnitudes import record_magnitudes
from ..cost import model_cost
from ..data.base import DatasetSpec, ImageData
from ..data.loader import BatchLoader
from ..models.base import PrunableModel
from ..peer import torch_pruning_prune
from ..pruning.compact import compact
from ..pruning.io import model_from_payload, model_payload
from ..pruning.masks import PruneResult, apply_masks, constant_outputs, masks_from_scores
from ..regularizers.base import Regularizer
from ..regularizers.criteria import valley_threshold
from ..tracking.record import RunRecord
from .bn_recalib import recalibrate_bn
from .loop import Accel, NonFiniteError, evaluate, train_one_epoch
from .optim import OptimizerSpec, lr_at, set_lr
from .schedule import PrunePhase, RecalibrateBN, Schedule, TrainPhase

METRIC_PREFIX = {"train": "acc_trained", "finetune": "acc_finetuned"}
FAULT_EXIT_CODE = 86  # the abrupt exit of fault injection (tests of exact resume)


def rng_states() -> dict:
    """Every RNG a run touches, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class RunState:
    """Everything a checkpoint holds: where the schedule is, the model, and what has been recorded."""

    model: PrunableModel
    phase: int = 0  # index into schedule.phases()
    epoch: int = 0  # epochs finished in the current phase
    step: int = 0  # optimizer steps so far (all phases)
    optimizer: dict | None = None
    regularizer: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def to_checkpoint(self) -> dict:
        return {"phase": self.phase, "epoch": self.epoch, "step": self.step, "model": model_payload(self.model),
                "optimizer": self.optimizer, "regularizer": self.regularizer, "metrics": self.metrics,
                "history": self.history, "rng": rng_states()}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> RunState:
        set_rng_states(ckpt["rng"])
        return cls(model=model_from_payload(ckpt["model"]), phase=ckpt["phase"], epoch=ckpt["epoch"],
                   step=ckpt["step"], optimizer=ckpt["optimizer"], regularizer=ckpt["regularizer"],
                   metrics=ckpt["metrics"], history=ckpt["history"])


class Runner:
    def __init__(self, *, schedule: Schedule, data: ImageData, dataset: DatasetSpec, regularizer: Regularizer,
                 optimizer: OptimizerSpec, record: RunRecord, logger, device: torch.device, seed: int,
                 checkpoint_every: int = 1, progress: bool = True, latency: bool = True,
                 fault_at_step: int | None = None, fault_after_phase: str | None = None, magnitude_every: int = 0,
                 accel: Accel | None = None):
        self.schedule, self.data, self.regularizer, self.optimizer_spec = schedule, data, regularizer, optimizer
        self.record, self.logger, self.device = record, logger, device
        self.checkpoint_every, self.progress, self.latency = checkpoint_every, progress, latency
        self.fault_at_step, self.fault_after_phase = fault_at_step, fault_after_phase
        self.magnitude_every = magnitude_every  # epochs between magnitude histograms (0: off)
        self.accel = accel or Accel(device_type=torch.device(device).type)
        self._prepared: tuple[torch.nn.Module, torch.nn.Module] | None = None
        stats = {"mean": data.mean, "std": data.std, "device": device, "memory_format": self.accel.memory_format}
        self.train_batches = BatchLoader(*data.train, dataset.batch_size, shuffle=True, drop_last=False,
                                         crop_padding=dataset.crop_padding if dataset.augment else 0,
                                         flip=dataset.augment, seed=seed, **stats)
        self.eval_batches = {split: BatchLoader(*getattr(data, split), dataset.eval_batch_size, **stats)
                             for split in ("val", "test") if getattr(data, split) is not None}

    # -- helpers -----------------------------------------------------------------------------------
    def forward_module(self, model: PrunableModel) -> torch.nn.Module:
        """What runs ``model``'s forward passes under the perf settings (compiled once per model)."""
        if self._prepared is None or self._prepared[0] is not model:
            self._prepared = (model, self.accel.prepare(model))
        return self._prepared[1]

    def evaluate(self, model: PrunableModel) -> dict[str, float]:
        out = {}
        for split, batches in self.eval_batches.items():
            r = evaluate(self.forward_module(model), batches, self.accel.precision())
            out[f"{split}_acc"], out[f"{split}_loss"] = r["acc"], r["loss"]
        return out

    def cost(self, model: PrunableModel, suffix: str = "") -> dict:
        return {f"{k}{suffix}": v for k, v in model_cost(model, self.data.input_shape, self.latency).items()}

    def checkpoint(self, state: RunState) -> None:
        self.record.save("ckpt.pt", state.to_checkpoint())
        self.record.write_history(state.history)

    # -- phases ------------------------------------------------------------------------------------
    def run(self, state: RunState) -> RunState:
        state.model.to(self.device)
        if not state.metrics.get("params_unpruned"):
            state.metrics.update(self.cost(state.model, "_unpruned"))
        phases = self.schedule.phases()
        for index in range(state.phase, len(phases)):
            name, settings = phases[index]
            if isinstance(settings, TrainPhase):
                self.train_phase(name, settings, state)
            elif isinstance(settings, PrunePhase):
                self.prune_phase(settings, state)
            elif isinstance(settings, RecalibrateBN):
                self.train_batches.set_epoch(len(state.history))
                # through the prepared module: the same weight layout (and kernels) as training and evaluation,
                # whether the model comes from the previous phase or from a checkpoint
                recalibrate_bn(self.forward_module(state.model), self.train_batches, settings.batches)
                state.metrics["acc_recalibrated"] = self.evaluate(state.model)["test_acc"]
            if name == self.fault_after_phase:
                os._exit(FAULT_EXIT_CODE)  # the phase's work is done, its checkpoint not yet written
            state.phase, state.epoch, state.optimizer = index + 1, 0, None
            if name == "train":
                self.record.save("trained.pt", model_payload(state.model))
            self.checkpoint(state)
        state.metrics.update(self.cost(state.model))
        if state.metrics.get("flops_unpruned"):
            state.metrics["flops_reduction"] = 1.0 - state.metrics["flops"] / state.metrics["flops_unpruned"]
            state.metrics["params_reduction"] = 1.0 - state.metrics["params"] / state.metrics["params_unpruned"]
        self.record.save("model.pt", model_payload(state.model))
        return state

    def train_phase(self, name: str, phase: TrainPhase, state: RunState) -> None:
        model = state.model
        forward = self.forward_module(model)  # weights in the perf layout before the optimizer sees them
        precision = self.accel.precision()
        reg = self.regularizer if phase.penalty else None
        if reg is not None:
            reg.attach(model)
            if state.regularizer:
                reg.load_state_dict(state.regularizer)
        optimizer = self.optimizer_spec.build(model)
        if state.optimizer is not None:
            optimizer.load_state_dict(state.optimizer)
        base_lr = phase.lr if phase.lr is not None else self.optimizer_spec.lr
        prefix = METRIC_PREFIX.get(name, f"acc_{name}")
        for epoch in range(state.epoch, phase.epochs):
            t0 = time.perf_counter()
            lr = lr_at(epoch, phase.epochs, base_lr, phase.lr_schedule, phase.milestones, phase.lr_gamma)
            set_lr(optimizer, lr)
            self.train_batches.set_epoch(len(state.history))
            batches = self.batches_until_fault(state.step)
            train, state.step = train_one_epoch(forward, batches, optimizer, reg, epoch=epoch, step=state.step,
                                                precision=precision, progress=self.progress,
                                                desc=f"{name} {epoch + 1}/{phase.epochs}")
            self.check_finite(model, name, epoch)
            row = {"phase": name, "epoch": epoch + 1, "lr": lr, "train_loss": train["loss"],
                   "train_acc": train["acc"], **self.evaluate(model),
                   "penalty": float(reg.penalty().detach()) if reg is not None else 0.0,
                   **(reg.epoch_stats() if reg is not None else {}), "epoch_time_s": time.perf_counter() - t0}
            if self.magnitude_every and (epoch + 1) % self.magnitude_every == 0:
                row.update(record_magnitudes(self.record, self.logger, model, name, epoch + 1, state.step))
            state.history.append(row)
            self.logger.log({f"{name}/{k}": v for k, v in row.items() if k != "phase"}, step=state.step)
            state.epoch = epoch + 1
            state.optimizer = optimizer.state_dict()
            state.regularizer = reg.state_dict() if reg is not None else {}
            if reg is not None and reg.finished():
                break
            if state.epoch % self.checkpoint_every == 0 and state.epoch < phase.epochs:
                self.checkpoint(state)
        gates = [m.weight.detach().abs().flatten().cpu() for m in model.gate_modules().values()]
        if gates:
            self.logger.histogram(f"{name}/gamma_abs", torch.cat(gates), step=state.step)
        rows = [r for r in state.history if r["phase"] == name]
        if rows:
            state.metrics[f"{prefix}_final"] = rows[-1]["test_acc"]
            state.metrics[f"{prefix}_best"] = max(r["test_acc"] for r in rows)
            if "val_acc" in rows[-1]:
                best_val = max(rows, key=lambda r: r["val_acc"])
                state.metrics[f"{prefix}_at_best_val"] = best_val["test_acc"]
                state.metrics[f"val_{prefix}_final"] = rows[-1]["val_acc"]
        else:
            state.metrics[f"{prefix}_final"] = state.metrics[f"{prefix}_best"] = self.evaluate(model)["test_acc"]

    def prune_phase(self, phase: PrunePhase, state: RunState) -> None:
        model = state.model
        pruned = None
        if phase.pruner == "torch_pruning":  # the peer row: Torch-Pruning's |γ| ranking and surgery
            peer = torch_pruning_prune(model, phase.ratio, self.data.input_shape)
            criterion, pruned = "torch_pruning", peer.model
            result = PruneResult(masks=peer.masks, threshold=peer.threshold)
            state.metrics["prune_skipped_layers"] = peer.skipped
        else:
            scores = self.regularizer.channel_scores(model)
            criterion = phase.criterion if phase.criterion != "auto" else getattr(self.regularizer, "criterion",
                                                                                  "percentile")
            threshold = None  # percentile: from phase.ratio
            if criterion == "threshold":
                threshold = phase.threshold
            elif criterion == "valley":  # polarization: the valley of the score histogram
                threshold = valley_threshold(scores)
            result = masks_from_scores(scores, phase.ratio, phase.scope, phase.min_channels, phase.on_empty,
                                       threshold=threshold, tiebreak=constant_outputs(model))
        apply_masks(model, result.masks)
        masked = self.evaluate(model)
        state.model = pruned if pruned is not None else compact(model, result.masks)
        accs = {"acc_pruned": self.evaluate(state.model), "acc_pruned_masked": masked}
        if phase.recalibrate_batches:
            accs["acc_pruned_recal"] = self.recalibrated_copy_accuracy(state, phase.recalibrate_batches)
        for key, acc in accs.items():
            state.metrics[key] = acc["test_acc"]
            if "val_acc" in acc:
                state.metrics[f"val_{key}"] = acc["val_acc"]
        kept = result.kept()
        state.metrics.update({
            "prune_ratio": phase.ratio, "prune_criterion": criterion, "prune_threshold": result.threshold,
            "channels_pruned_ratio": result.pruned_ratio(), "kept_channels": kept,
            "total_channels": {k: int(m.numel()) for k, m in result.masks.items()},
            "channels_topped_up": result.topped_up,
        })
        self.logger.table("kept_channels", ["layer", "kept", "total"],
                          [[k, v, state.metrics["total_channels"][k]] for k, v in kept.items()])

    def recalibrated_copy_accuracy(self, state: RunState, batches: int) -> dict[str, float]:
        """Accuracy of a copy of the pruned model after adaptive BN (EagleEye); the model itself is unchanged."""
        recal = copy.deepcopy(state.model)
        self.train_batches.set_epoch(len(state.history))
        recalibrate_bn(self.forward_module(recal), self.train_batches, batches)
        return self.evaluate(recal)

    def batches_until_fault(self, step: int):
        """The training batches; with fault injection, the process dies abruptly at the given step."""
        if self.fault_at_step is None:
            return self.train_batches
        return self._faulty(step)

    def _faulty(self, step: int):
        for i, batch in enumerate(self.train_batches):
            if step + i == self.fault_at_step:
                os._exit(FAULT_EXIT_CODE)
            yield batch

    @staticmethod
    def check_finite(model: PrunableModel, phase: str, epoch: int) -> None:
        for name, p in model.named_parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteError(f"non-finite values in {name} after {phase} epoch {epoch + 1}")
