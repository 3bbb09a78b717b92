"""The typed top-level schema of a run. Components (model, dataset, regularizer, optimizer, schedule,
logger) are ``_target_`` nodes validated by their own constructors; everything else is typed here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .errors import UserError

RESUME_MODES = ("never", "auto")


@dataclass
class RunSection:
    name: str | None = None  # default: <model>-<dataset>-<regularizer>-<schedule>
    id: str | None = None  # default: <name>-s<seed>-<config hash>
    root: str = "runs"
    experiment: str = "default"  # runs/<experiment>/<id>

    def __post_init__(self):
        for key in ("name", "id", "experiment"):
            value = getattr(self, key)
            if value is not None and (not value or "/" in value or value.startswith(".")):
                raise UserError(f"run.{key}={value!r} must be a non-empty name without '/' or a leading '.'")


@dataclass
class PerfSection:
    """Speed switches (resolved per device by ``regprune.engine.loop.Accel``)."""

    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16 (with a GradScaler)
    channels_last: str = "auto"  # auto (on: faster on CUDA and on CPU) | true | false
    compile: bool = False  # torch.compile the model
    cudnn_benchmark: bool = True  # let cuDNN pick the fastest convolution algorithms (CUDA)

    def __post_init__(self):
        from .engine.loop import perf_modes

        self.amp, self.channels_last = perf_modes(self.amp, self.channels_last)


@dataclass
class DistSection:
    """A run across processes (torchrun, Slurm tasks); unused in a single process (regprune.distributed)."""

    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    timeout_s: int = 600  # a collective waiting longer (a rank died or hangs) fails the run instead of hanging
    sync_bn: bool = False  # SyncBatchNorm: BN statistics of the global batch, not of each rank's share (CUDA only)

    def __post_init__(self):
        from .distributed import BACKENDS

        if self.backend not in BACKENDS:
            raise UserError(f"dist.backend={self.backend!r}: choose from {list(BACKENDS)}")
        if self.timeout_s < 1:
            raise UserError(f"dist.timeout_s={self.timeout_s} must be ≥ 1")


@dataclass
class RunConfig:
    model: Any = MISSING
    dataset: Any = MISSING
    regularizer: Any = MISSING
    schedule: Any = MISSING
    optimizer: Any = MISSING
    logger: Any = MISSING
    run: RunSection = field(default_factory=RunSection)
    seed: int = 0
    resume: str = "never"  # never: refuse an existing run folder; auto: continue it
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    checkpoint_every: int = 1  # epochs between checkpoints inside a phase
    checkpoint_keep: int = 1  # checkpoints kept (ckpt.pt, ckpt-1.pt, ...): resume=auto falls back past corrupt ones
    progress: bool = True  # tqdm bars
    latency: bool = True  # measure CPU/GPU latency of the unpruned and final models
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> _target_ node (e.g. regprune.testing.Crash)
    magnitude_every: int = 0  # epochs between weight/group magnitude histograms (magnitudes.jsonl); 0 = off
    perf: PerfSection = field(default_factory=PerfSection)
    dist: DistSection = field(default_factory=DistSection)

    def __post_init__(self):
        if self.resume not in RESUME_MODES:
            raise UserError(f"resume={self.resume!r}: choose from {list(RESUME_MODES)}")
        if self.seed < 0:
            raise UserError(f"seed={self.seed} must be ≥ 0")
        if self.threads < 0:
            raise UserError(f"threads={self.threads} must be ≥ 0")
        if self.magnitude_every < 0:
            raise UserError(f"magnitude_every={self.magnitude_every} must be ≥ 0")
        if self.checkpoint_every < 1:
            raise UserError(f"checkpoint_every={self.checkpoint_every} must be ≥ 1")
        if self.checkpoint_keep < 1:
            raise UserError(f"checkpoint_keep={self.checkpoint_keep} must be ≥ 1")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise UserError(f"device={self.device!r}: choose auto, cpu, cuda or cuda:N")


def register_schema() -> None:
    ConfigStore.instance().store(name="regprune_schema", node=RunConfig)
