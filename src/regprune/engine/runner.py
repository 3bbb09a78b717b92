"""Walks a schedule's plan of phases on one model, checkpointing after every phase (and inside training
phases), and offers the phases what they share: batches, evaluation, the regularizer, costs, the record."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cost import model_cost
from ..data.base import Loaders
from ..distributed import active, data_parallel, sync_buffers
from ..errors import UserError
from ..models.base import PrunableModel
from ..pruning.io import model_from_payload, model_from_spec, model_payload
from ..regularizers.base import Regularizer
from ..tracking.record import RunRecord
from .callbacks import Callbacks
from .loop import Accel, evaluate
from .optim import OptimizerSpec
from .phases.base import role
from .schedule import TRAINED, Schedule


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
    """Everything a checkpoint holds: where the plan is, the model, and what has been recorded."""

    model: PrunableModel
    phase: int = 0  # index into schedule.plan()
    epoch: int = 0  # epochs finished in the current phase
    step: int = 0  # optimizer steps so far (all phases)
    optimizer: dict | None = None
    regularizer: dict = field(default_factory=dict)  # the state of the last penalty phase's regularizer
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


class FirstImages:
    """The first ``n`` images of ``batches`` (all of them for n = 0), re-iterable."""

    def __init__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], n: int = 0):
        self.batches, self.n = batches, n

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        left = self.n or float("inf")
        for x, y in self.batches:
            if left <= 0:
                return
            if left < len(y):
                x, y = x[:left], y[:left]
            yield x, y
            left -= len(y)


class Runner:
    def __init__(self, *, schedule: Schedule, data: Loaders, make_regularizer: Callable[[], Regularizer],
                 optimizer: OptimizerSpec, record: RunRecord, logger, device: torch.device, seed: int,
                 callbacks: Callbacks | None = None, checkpoint_every: int = 1, progress: bool = True,
                 latency: bool = True, magnitude_every: int = 0, accel: Accel | None = None,
                 check_architecture: Callable[[dict, Path], None] | None = None, sync_bn: bool = False):
        self.schedule, self.data, self.optimizer_spec = schedule, data, optimizer
        self.make_regularizer = make_regularizer
        self.record, self.logger, self.device, self.seed = record, logger, device, seed
        self.callbacks = callbacks or Callbacks()
        self.checkpoint_every, self.progress, self.latency = checkpoint_every, progress, latency
        self.magnitude_every = magnitude_every  # epochs between magnitude histograms (0: off)
        self.accel = accel or Accel(device_type=torch.device(device).type)
        self._check_architecture = check_architecture
        self.sync_bn = sync_bn  # across processes: SyncBatchNorm in training forward passes
        self._prepared: tuple[torch.nn.Module, torch.nn.Module] | None = None
        self._parallel: tuple[torch.nn.Module, torch.nn.Module] | None = None
        self.train_batches = data.train
        self.eval_batches = {split: batches for split, batches in (("val", data.val), ("test", data.test))
                             if batches is not None}

    # -- services for the phases -------------------------------------------------------------------
    def forward_module(self, model: PrunableModel) -> torch.nn.Module:
        """What runs ``model``'s forward passes under the perf settings (compiled once per model)."""
        if self._prepared is None or self._prepared[0] is not model:
            self._prepared = (model, self.accel.prepare(model))
        return self._prepared[1]

    def train_module(self, model: PrunableModel) -> torch.nn.Module:
        """What runs ``model``'s training forward passes: ``forward_module``, inside DistributedDataParallel in a
        run across processes (wrapped again for each new, e.g. compacted, model; every rank wraps together)."""
        forward = self.forward_module(model)
        if not active():
            return forward
        if self._parallel is None or self._parallel[0] is not model:
            self._parallel = (model, data_parallel(forward, self.device, self.sync_bn))
        return self._parallel[1]

    def evaluate(self, model: PrunableModel) -> dict[str, float]:
        """Loss and accuracy on the held-out splits; across processes every rank evaluates the whole splits
        with rank 0's BN statistics (identical results on every rank)."""
        sync_buffers(model)
        out = {}
        for split, batches in self.eval_batches.items():
            r = evaluate(self.forward_module(model), batches, self.accel.precision())
            out[f"{split}_acc"], out[f"{split}_loss"] = r["acc"], r["loss"]
        return out

    def held_out(self, images: int = 0) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the validation split, only its first ``images`` when given (0: all)."""
        return FirstImages(self.eval_batches["val"], images)

    def regularizer(self, model: PrunableModel, state: dict | None = None) -> Regularizer:
        """A fresh regularizer attached to ``model`` (with ``state`` loaded, to continue a penalty phase)."""
        reg = self.make_regularizer()
        reg.attach(model)
        if state:
            reg.load_state_dict(state)
        return reg

    def fresh_model(self, spec: dict) -> PrunableModel:
        """The architecture ``spec`` describes, randomly initialised, on the run's device."""
        return model_from_spec(spec).to(self.device)

    def check_architecture(self, payload: dict, path: Path) -> None:
        if self._check_architecture is not None:
            self._check_architecture(payload, path)

    def cost(self, model: PrunableModel, suffix: str = "") -> dict:
        return {f"{k}{suffix}": v for k, v in model_cost(model, self.data.input_shape, self.latency).items()}

    def checkpoint(self, state: RunState) -> None:
        self.record.save("ckpt.pt", state.to_checkpoint())
        self.record.write_history(state.history)

    def log_gamma_histogram(self, model: PrunableModel, name: str, step: int) -> None:
        gates = [m.weight.detach().abs().flatten().cpu() for m in model.gate_modules().values()]
        if gates:
            self.logger.histogram(f"{name}/gamma_abs", torch.cat(gates), step=step)

    # -- the plan ----------------------------------------------------------------------------------
    def run(self, state: RunState) -> RunState:
        state.model.to(self.device)
        if not state.metrics.get("params_unpruned"):
            state.metrics.update(self.cost(state.model, "_unpruned"))
        plan = self.schedule.plan()
        if state.phase > len(plan):
            raise UserError(f"the checkpoint is at phase {state.phase}, but the schedule has {len(plan)} phases")
        for index in range(state.phase, len(plan)):
            name, phase = plan[index]
            phase.run(self, state, name)
            self.callbacks.on_phase_end(name)
            state.phase, state.epoch, state.optimizer = index + 1, 0, None
            if role(name) == TRAINED:
                self.record.save("trained.pt", model_payload(state.model))
            self.checkpoint(state)
        state.metrics.update(self.cost(state.model))
        if state.metrics.get("flops_unpruned"):
            state.metrics["flops_reduction"] = 1.0 - state.metrics["flops"] / state.metrics["flops_unpruned"]
            state.metrics["params_reduction"] = 1.0 - state.metrics["params"] / state.metrics["params_unpruned"]
        self.record.save("model.pt", model_payload(state.model))
        return state
