"""Build every component from a composed config and run (or resume) one run."""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import RunConfig
from .data.base import DatasetSpec, ImageData
from .engine.loop import Accel
from .engine.optim import OptimizerSpec
from .engine.runner import Runner, RunState
from .engine.schedule import Schedule
from .errors import UserError
from .models.base import PrunableModel
from .pruning.io import load_checkpoint
from .regularizers.base import Regularizer
from .run_id import label, named_overrides, run_id
from .start_from import check_same_architecture, inherit_source, start_model
from .tracking import ConsoleLogger, Loggers
from .tracking.record import RunRecord, provenance
from .typecheck import check_arguments


def component(node: DictConfig, key: str, **kwargs):
    """Instantiate a ``_target_`` node; a wrong type or a constructor's complaint is a one-line error naming ``key``."""
    try:
        check_node(OmegaConf.to_container(node, resolve=True), kwargs)
        return instantiate(node, **kwargs)
    except Exception as e:
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        msg = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        sep = "." if re.match(r"^[\w.]+=", msg) else ": "  # "lam=-1 must be ≥ 0" -> "regularizer.lam=-1 ..."
        raise UserError(f"{key}{sep}{msg}") from None


def check_node(values: dict, given: dict) -> None:
    """Check a ``_target_`` node's values (and its nested ``_target_`` nodes') against the constructor's type hints."""
    arguments = {k: v for k, v in values.items() if not k.startswith("_")}
    for name, value in arguments.items():
        if isinstance(value, dict) and "_target_" in value:
            try:
                check_node(value, {})
            except ValueError as e:
                raise ValueError(f"{name}.{e}" if re.match(r"^[\w.]+=", str(e)) else f"{name}: {e}") from None
    nested = {k for k, v in arguments.items() if isinstance(v, dict) and "_target_" in v}
    check_arguments(get_object(values["_target_"]), {**{k: v for k, v in arguments.items() if k not in nested},
                                                      **given})


def typed(cfg: DictConfig) -> RunConfig:
    """Check the typed top-level keys (types by OmegaConf, ranges by RunConfig.__post_init__)."""
    unknown = sorted(k for k in cfg if k not in RunConfig.__dataclass_fields__)
    if unknown:
        raise UserError(f"unknown top-level key(s) {', '.join(unknown)} (a typo after '+'?); known: "
                        f"{', '.join(sorted(RunConfig.__dataclass_fields__))}")
    try:
        top = OmegaConf.masked_copy(cfg, list(cfg))
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), top))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        raise UserError(f"{key}: {str(e).splitlines()[0]}" if key else str(e).splitlines()[0]) from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name}: CUDA is not available on this machine")
    return torch.device(name)


def check_compatible(regularizer, model: PrunableModel) -> None:
    """Fail before any work if the regularizer cannot act on this model (e.g. γ penalties need BN)."""
    try:
        regularizer.attach(model)
    except ValueError as e:
        raise UserError(f"regularizer={regularizer.name} cannot be used with model={type(model).__name__}: {e}") \
            from None


@dataclass
class Parts:
    """The instantiated components of one run."""

    dataset: DatasetSpec
    data: ImageData
    model: PrunableModel
    regularizer: Regularizer
    optimizer: OptimizerSpec
    schedule: Schedule
    logger: Loggers
    start: tuple[PrunableModel, dict] | None  # (trained model, its metrics) with schedule.start_from


def build_parts(cfg: DictConfig) -> Parts:
    dataset = component(cfg.dataset, "dataset")
    regularizer = component(cfg.regularizer, "regularizer")
    optimizer = component(cfg.optimizer, "optimizer")
    schedule = component(cfg.schedule, "schedule")
    logger = Loggers([ConsoleLogger(), *(component(node, f"logger.{name}") for name, node in cfg.logger.items())])
    data = dataset.load()
    model = component(cfg.model, "model", num_classes=data.num_classes, in_channels=data.in_channels)
    check_compatible(regularizer, model)
    start = start_model(schedule.start_from, model) if schedule.start_from is not None else None
    return Parts(dataset, data, model, regularizer, optimizer, schedule, logger, start)


def run_name(cfg: DictConfig, dataset: DatasetSpec, regularizer: Regularizer, schedule: Schedule) -> str:
    return typed(cfg).run.name or f"{cfg.model.name}-{dataset.name}-{regularizer.name}-{schedule.name}"


def run_folder(cfg: DictConfig, name: str | None = None, overrides: Sequence[str] = ()) -> Path:
    """Where the run ``cfg`` (composed with the command-line ``overrides``) keeps its records, without building
    its model or data. ``cfg`` is taken as given: pass it through ``inherit_source`` first, as ``run`` does."""
    settings = typed(cfg)
    name = name or run_name(cfg, *(component(cfg[k], k) for k in ("dataset", "regularizer", "schedule")))
    return Path(settings.run.root) / settings.run.experiment / (settings.run.id or
                                                                  run_id(cfg, name, settings.seed, overrides))


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict:
    """Run (or resume, or skip if complete) the run ``cfg`` describes; return its metrics.

    ``overrides`` are the command line's (Hydra's task overrides): they name the run folder and are checked
    against the source run of ``schedule.start_from``."""
    cfg = inherit_source(cfg, overrides)
    settings = typed(cfg)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    device = resolve_device(settings.device)
    parts = build_parts(cfg)
    name = run_name(cfg, parts.dataset, parts.regularizer, parts.schedule)
    folder = run_folder(cfg, name, overrides)
    record = RunRecord.open(folder.parent.parent, folder.parent.name, folder.name, settings.resume)
    with record.lock(), record.discard_if_left_empty():
        previous = record.read_json("metrics.json") or {}
        if previous.get("status") == "complete":
            print(f"run {record.path} is complete; nothing to do", file=sys.stderr)
            return previous
        named, _ = named_overrides(cfg, overrides)
        base = {"run_id": folder.name, "run_dir": str(record.path), "experiment": settings.run.experiment, "name": name,
                "label": label(name, named), "overrides": named,
                "model": cfg.model.name, "dataset": parts.dataset.name, "regularizer": parts.regularizer.name,
                "lam": parts.regularizer.lam, "schedule": parts.schedule.name, "seed": settings.seed,
                "provenance": provenance(settings.seed, device)}
        return execute(cfg, settings, record, parts, device, base, previous.get("wall_time_s", 0.0))


def initial_state(record: RunRecord, parts: Parts) -> RunState:
    """The latest checkpoint of this run, or a fresh start (from ``schedule.start_from`` if given)."""
    if record.exists("ckpt.pt"):
        ckpt = load_checkpoint(record.path / "ckpt.pt")
        check_same_architecture(ckpt.get("model", {}), parts.model, record.path / "ckpt.pt")
        return RunState.from_checkpoint(ckpt)
    if parts.start is not None:
        return RunState(model=parts.start[0], metrics=dict(parts.start[1]))
    return RunState(model=parts.model)


def accel(settings: RunConfig, device: torch.device) -> Accel:
    """The perf section resolved for ``device``; also sets cuDNN's autotuner."""
    perf = settings.perf
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = perf.cudnn_benchmark
    return Accel.resolve(device, perf.amp, perf.channels_last, perf.compile)


def execute(cfg: DictConfig, settings: RunConfig, record: RunRecord, parts: Parts, device: torch.device,
            base: dict, wall_before: float) -> dict:
    state = initial_state(record, parts)
    record.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    record.write_json("metrics.json", {**base, **state.metrics, "status": "running"})
    parts.logger.start(record.path, base["run_id"], OmegaConf.to_container(cfg, resolve=True),
                       group=settings.run.experiment, job_type=parts.schedule.name,
                       tags=[base["model"], base["dataset"], base["regularizer"]])
    runner = Runner(schedule=parts.schedule, data=parts.data, dataset=parts.dataset, regularizer=parts.regularizer,
                    optimizer=parts.optimizer, record=record, logger=parts.logger, device=device, seed=settings.seed,
                    checkpoint_every=settings.checkpoint_every, progress=settings.progress,
                    latency=settings.latency, fault_at_step=settings.fault.at_step,
                    fault_after_phase=settings.fault.after_phase, magnitude_every=settings.magnitude_every,
                    accel=accel(settings, device))
    t0 = time.perf_counter()
    try:
        runner.run(state)
    except BaseException as e:
        record.write_json("metrics.json", {**base, **state.metrics, "status": "failed",
                                           "reason": f"{type(e).__name__}: {e}",
                                           "wall_time_s": wall_before + time.perf_counter() - t0})
        parts.logger.finish("failed")
        raise
    metrics = {**base, **state.metrics, "wall_time_s": wall_before + time.perf_counter() - t0, "status": "complete"}
    record.write_json("metrics.json", metrics)
    parts.logger.summary(metrics)
    parts.logger.finish("complete")
    return metrics
