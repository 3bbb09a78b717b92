"""Build every component from a composed config and run (or resume) one run."""

from __future__ import annotations

import copy
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

from . import distributed
from .config import RunConfig
from .data.base import DatasetSpec, Loaders
from .engine.callbacks import Callbacks
from .engine.loop import Accel
from .engine.optim import OptimizerSpec
from .engine.runner import Runner, RunState
from .engine.schedule import Schedule
from .errors import StorageError, UserError
from .models.base import PrunableModel
from .pruning.io import load_newest
from .regularizers.base import Regularizer
from .run_id import label, named_overrides, run_id
from .start_from import check_same_architecture, inherit_source, start_model
from .tracking import ConsoleLogger, Loggers
from .tracking.record import CHECKPOINT, ReadOnlyRecord, RunRecord, provenance
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
        nested = re.search(r"full_key: (\S+)", str(e))  # a nested _target_ node (a schedule's phase)
        where = nested.group(1) if nested else key
        msg = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        sep = "." if re.match(r"^[\w.]+=", msg) else ": "  # "lam=-1 must be ≥ 0" -> "regularizer.lam=-1 ..."
        raise UserError(f"{where}{sep}{msg}") from None


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


def resolve_device(name: str, world: distributed.World = distributed.SINGLE) -> torch.device:
    """``device`` as a torch device; across processes ``auto`` and ``cuda`` mean each rank's own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name}: CUDA is not available on this machine")
    if name == "cuda" and world.size > 1:
        name = f"cuda:{world.local_rank}"
    return torch.device(name)


def check_compatible(regularizer: Regularizer, model: PrunableModel, schedule: Schedule) -> None:
    """Fail before any work if the regularizer cannot act on this model (e.g. γ penalties need BN) or in this
    schedule. Copies attach, so the model keeps nothing of the check (the runner attaches fresh regularizers)."""
    plan = schedule.plan()
    first = plan[0][1] if plan else None
    try:
        attached = copy.deepcopy(regularizer)
        attached.attach(copy.deepcopy(model))
    except ValueError as e:
        raise UserError(f"regularizer={regularizer.name} cannot be used with model={type(model).__name__}: {e}") \
            from None
    if getattr(first, "penalty", False):  # a pruning run's model may be one the penalty has flattened: no check
        attached.check_acts()
    if getattr(regularizer, "needs_trained_model", False) and schedule.start_from is None and \
            getattr(first, "penalty", False):
        raise UserError(f"regularizer={regularizer.name} selects what to prune from a trained model, but its penalty "
                        f"phase '{plan[0][0]}' starts from initial weights: add a plain training phase before it "
                        "(schedule=greg has one), or start from a trained run (schedule.start_from=<run> "
                        "schedule.start_at=train)")


@dataclass
class Parts:
    """The instantiated components of one run."""

    dataset: DatasetSpec
    data: Loaders
    accel: Accel
    model: PrunableModel
    regularizer: Regularizer
    optimizer: OptimizerSpec
    schedule: Schedule
    logger: Loggers
    callbacks: Callbacks
    start: tuple[PrunableModel, dict] | None  # (trained model, its metrics) with schedule.start_from


def build_parts(cfg: DictConfig, settings: RunConfig, device: torch.device,
                world: distributed.World = distributed.SINGLE) -> Parts:
    dataset = component(cfg.dataset, "dataset")
    check_world(dataset, settings, device, world)
    regularizer = component(cfg.regularizer, "regularizer")
    optimizer = component(cfg.optimizer, "optimizer")
    schedule = component(cfg.schedule, "schedule")
    sinks = [ConsoleLogger(), *(component(node, f"logger.{name}") for name, node in cfg.logger.items())]
    logger = Loggers(sinks if world.main else [])  # one console, one W&B run: rank 0's
    callbacks = Callbacks(component(node, f"callbacks.{name}") for name, node in cfg.get("callbacks", {}).items())
    perf = accel(settings, device)
    data = dataset.loaders(device, settings.seed, perf.memory_format, shard=(world.rank, world.size))
    model = component(cfg.model, "model", num_classes=data.num_classes, in_channels=data.in_channels)
    check_compatible(regularizer, model, schedule)
    start = start_model(schedule.start_from, model) if schedule.start_from is not None else None
    return Parts(dataset, data, perf, model, regularizer, optimizer, schedule, logger, callbacks, start)


def check_world(dataset: DatasetSpec, settings: RunConfig, device: torch.device, world: distributed.World) -> None:
    """Refuse what a run across ``world.size`` processes cannot do."""
    if world.size == 1:
        return
    if dataset.batch_size % world.size:
        raise UserError(f"dataset.batch_size={dataset.batch_size} is not divisible by the {world.size} processes of "
                        "this run: the global batch is split evenly across them; choose a multiple of "
                        f"{world.size}")
    if settings.dist.sync_bn and device.type != "cuda":
        raise UserError(f"dist.sync_bn=true needs CUDA devices (torch's SyncBatchNorm), this run is on {device}; "
                        "without it each rank normalises with the statistics of its share of the batch")


def run_name(cfg: DictConfig, dataset: DatasetSpec, regularizer: Regularizer, schedule: Schedule) -> str:
    return typed(cfg).run.name or f"{cfg.model.name}-{dataset.name}-{regularizer.name}-{schedule.name}"


def run_folder(cfg: DictConfig, name: str | None = None, overrides: Sequence[str] = ()) -> Path:
    """Where the run ``cfg`` (composed with the command-line ``overrides``) keeps its records, without building
    its model or data. ``cfg`` is taken as given: pass it through ``inherit_source`` first, as ``run`` does."""
    settings = typed(cfg)
    dataset, regularizer, schedule = (component(cfg[k], k) for k in ("dataset", "regularizer", "schedule"))
    name = name or run_name(cfg, dataset, regularizer, schedule)
    return Path(settings.run.root) / settings.run.experiment / (
        settings.run.id or run_id(cfg, name, settings.seed, overrides, schedule.skipped()))


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict:
    """Run (or resume, or skip if complete) the run ``cfg`` describes; return its metrics.

    ``overrides`` are the command line's (Hydra's task overrides): they name the run folder and are checked
    against the source run of ``schedule.start_from``."""
    cfg = inherit_source(cfg, overrides)
    settings = typed(cfg)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    world = distributed.world_from_env()
    device = resolve_device(settings.device, world)
    distributed.start(settings.dist.backend, settings.dist.timeout_s, device)
    try:
        return run_in_world(cfg, overrides, settings, device, world)
    except Exception as e:
        if not distributed.peer_failed(e):
            raise
        raise UserError(f"a process of this run stopped or stalled ({str(e).strip().splitlines()[0]}); "
                        "resume=auto continues from the last checkpoint") from None
    finally:
        distributed.stop()


def run_in_world(cfg: DictConfig, overrides: Sequence[str], settings: RunConfig, device: torch.device,
                 world: distributed.World) -> dict:
    """``run`` in this process, rank ``world.rank`` of ``world.size``: rank 0 opens, locks and writes the
    folder, the other ranks read what it decides."""
    parts = build_parts(cfg, settings, device, world)
    name = run_name(cfg, parts.dataset, parts.regularizer, parts.schedule)
    folder = run_folder(cfg, name, overrides)
    record = distributed.on_main(lambda: RunRecord.open(folder.parent.parent, folder.parent.name, folder.name,
                                                        settings.resume, keep={CHECKPOINT: settings.checkpoint_keep}))
    if not world.main:
        record = ReadOnlyRecord(record.path, record.keep)
    with record.lock(), record.discard_if_left_empty():
        previous = distributed.on_main(lambda: record.read_json("metrics.json") or {})
        if previous.get("status") == "complete":
            if world.main:
                print(f"run {record.path} is complete; nothing to do", file=sys.stderr)
            return previous
        named, _ = named_overrides(cfg, overrides)
        base = {"run_id": folder.name, "run_dir": str(record.path), "experiment": settings.run.experiment, "name": name,
                "label": label(name, named), "overrides": named,
                "model": cfg.model.name, "dataset": parts.dataset.name, "regularizer": parts.regularizer.name,
                "lam": parts.regularizer.lam, "schedule": parts.schedule.name, "seed": settings.seed,
                "world_size": world.size, "provenance": provenance(settings.seed, device)}
        return execute(cfg, settings, record, parts, device, base, previous.get("wall_time_s", 0.0))


def newest_checkpoint(record: RunRecord) -> tuple[Path, dict] | None:
    """The latest intact checkpoint and its path; a corrupt newer one is set aside (renamed ``*.corrupt``)."""
    found = load_newest(record.versions(CHECKPOINT))
    if found is None:
        return None
    path, ckpt, skipped = found
    for bad, error in skipped.items():
        aside = record.set_aside(bad.name)
        print(f"note: {error}; renamed it {aside.name}, resuming from {path.name}", file=sys.stderr)
    return path, ckpt


def initial_state(record: RunRecord, parts: Parts, world_size: int = 1) -> RunState:
    """The latest intact checkpoint of this run (read by rank 0, given to every rank), or a fresh start (from
    ``schedule.start_from`` if given). Exact resume needs the world size the checkpoint was written with."""
    found = distributed.on_main(lambda: newest_checkpoint(record))
    if found is not None:
        path, ckpt = found
        check_same_architecture(ckpt.get("model", {}), parts.model, path)
        written = ckpt["metrics"].get("world_size", 1)
        if written != world_size:
            raise UserError(f"{path} was written by a run across {written} process(es), this one has {world_size}: "
                            "exact resume needs the same number (the global batch is split the same way, but "
                            "BN statistics are per process)")
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


def last_good_checkpoint(record: RunRecord) -> str:
    found = record.versions(CHECKPOINT)
    return f"the last good checkpoint is {found[0]}" if found else "no checkpoint yet (resume=auto starts over)"


def execute(cfg: DictConfig, settings: RunConfig, record: RunRecord, parts: Parts, device: torch.device,
            base: dict, wall_before: float) -> dict:
    state = initial_state(record, parts, base["world_size"])
    state.metrics["world_size"] = base["world_size"]
    t0 = time.perf_counter()
    try:
        record.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        record.write_json("metrics.json", {**base, **state.metrics, "status": "running"})
        parts.logger.start(record.path, base["run_id"], OmegaConf.to_container(cfg, resolve=True),
                           group=settings.run.experiment, job_type=parts.schedule.name,
                           tags=[base["model"], base["dataset"], base["regularizer"]])
        runner = Runner(schedule=parts.schedule, data=parts.data,
                        make_regularizer=lambda: component(cfg.regularizer, "regularizer"), optimizer=parts.optimizer,
                        record=record, logger=parts.logger, device=device, seed=settings.seed,
                        callbacks=parts.callbacks, checkpoint_every=settings.checkpoint_every,
                        progress=settings.progress and distributed.is_main(), latency=settings.latency,
                        magnitude_every=settings.magnitude_every, accel=parts.accel, sync_bn=settings.dist.sync_bn,
                        check_architecture=lambda payload, path: check_same_architecture(payload, parts.model, path))
        runner.run(state)
        metrics = {**base, **state.metrics, "wall_time_s": wall_before + time.perf_counter() - t0,
                   "status": "complete"}
        record.write_json("metrics.json", metrics)
    except BaseException as e:
        error = StorageError(e.path, f"{e}; {last_good_checkpoint(record)}") if isinstance(e, StorageError) else e
        try:
            record.write_json("metrics.json", {**base, **state.metrics, "status": "failed",
                                               "reason": f"{type(error).__name__}: {error}",
                                               "wall_time_s": wall_before + time.perf_counter() - t0})
        except StorageError:
            pass  # the disk refuses even this: the status stays running, which listings report as interrupted
        parts.logger.finish("failed")
        if error is e:
            raise
        raise error from None
    parts.logger.summary(metrics)
    parts.logger.finish("complete")
    return metrics
