"""Build every component from a composed config and run (or resume) one run."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
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
from .pruning.io import load_checkpoint, model_from_payload
from .regularizers.base import Regularizer
from .tracking.record import RunRecord, provenance

# keys that do not change a run's results, so changing them keeps its run id (and its folder)
HASH_EXCLUDE = ("run", "resume", "logger", "progress", "threads", "checkpoint_every", "fault", "latency",
                "magnitude_every")


def component(node: DictConfig, key: str, **kwargs):
    """Instantiate a ``_target_`` node; a constructor's complaint becomes a one-line error naming ``key``."""
    try:
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


def typed(cfg: DictConfig) -> RunConfig:
    """Check the typed top-level keys (types by OmegaConf, ranges by RunConfig.__post_init__)."""
    try:
        top = OmegaConf.masked_copy(cfg, [k for k in cfg if k in RunConfig.__dataclass_fields__])
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), top))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        raise UserError(f"{key}: {str(e).splitlines()[0]}" if key else str(e).splitlines()[0]) from None


def config_hash(cfg: DictConfig) -> str:
    plain = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in HASH_EXCLUDE}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:8]


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


def start_model(source: str, configured: PrunableModel) -> tuple:
    """The penalty-trained model and its train-phase metrics from an earlier run folder."""
    src = Path(source)
    payload = load_checkpoint(src / "trained.pt" if src.is_dir() else src)
    check_same_architecture(payload, configured, src)
    src_dir = src if src.is_dir() else src.parent
    metrics_file = src_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    keep = {k: v for k, v in metrics.items() if k.startswith(("acc_trained", "val_acc_trained", "params_unpruned",
                                                              "macs_unpruned", "flops_unpruned",
                                                              "latency_ms_unpruned"))}
    keep["started_from"] = str(src_dir.resolve())
    return model_from_payload(payload), keep


def check_same_architecture(payload: dict, configured: PrunableModel, path: Path) -> None:
    """A checkpoint must hold the configured architecture (any widths)."""
    try:
        spec = payload["spec"]
        theirs = {k: v for k, v in spec["kwargs"].items() if k != "widths"}
    except (KeyError, TypeError):
        raise UserError(f"{path} is not a regprune checkpoint (no model spec)") from None
    ours = configured.spec()
    mine = {k: v for k, v in ours["kwargs"].items() if k != "widths"}
    if spec["class"] != ours["class"] or theirs != mine:
        raise UserError(f"{path} holds {spec['class'].rpartition('.')[2]}({theirs}), but the config asks for "
                        f"{ours['class'].rpartition('.')[2]}({mine})")


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
    logger: object
    start: tuple[PrunableModel, dict] | None  # (trained model, its metrics) with schedule.start_from


def build_parts(cfg: DictConfig) -> Parts:
    dataset = component(cfg.dataset, "dataset")
    regularizer = component(cfg.regularizer, "regularizer")
    optimizer = component(cfg.optimizer, "optimizer")
    schedule = component(cfg.schedule, "schedule")
    logger = component(cfg.logger, "logger")
    data = dataset.load()
    model = component(cfg.model, "model", num_classes=data.num_classes, in_channels=data.in_channels)
    check_compatible(regularizer, model)
    start = start_model(schedule.start_from, model) if schedule.start_from is not None else None
    return Parts(dataset, data, model, regularizer, optimizer, schedule, logger, start)


def run_name(cfg: DictConfig, dataset: DatasetSpec, regularizer: Regularizer, schedule: Schedule) -> str:
    return typed(cfg).run.name or f"{cfg.model.name}-{dataset.name}-{regularizer.name}-{schedule.name}"


def run_folder(cfg: DictConfig, name: str | None = None) -> Path:
    """Where the run ``cfg`` describes keeps its records (without building its model or data)."""
    settings = typed(cfg)
    name = name or run_name(cfg, *(component(cfg[k], k) for k in ("dataset", "regularizer", "schedule")))
    run_id = settings.run.id or f"{name}-s{settings.seed}-{config_hash(cfg)}"
    return Path(settings.run.root) / settings.run.experiment / run_id


def run(cfg: DictConfig) -> dict:
    """Run (or resume, or skip if complete) the run ``cfg`` describes; return its metrics."""
    settings = typed(cfg)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    device = resolve_device(settings.device)
    parts = build_parts(cfg)
    name = run_name(cfg, parts.dataset, parts.regularizer, parts.schedule)
    folder = run_folder(cfg, name)
    record = RunRecord.open(folder.parent.parent, folder.parent.name, folder.name, settings.resume)
    with record.lock(), record.discard_if_left_empty():
        previous = record.read_json("metrics.json") or {}
        if previous.get("status") == "complete":
            print(f"run {record.path} is complete; nothing to do", file=sys.stderr)
            return previous
        base = {"run_id": folder.name, "run_dir": str(record.path), "experiment": settings.run.experiment, "name": name,
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
