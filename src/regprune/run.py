"""Build every component from a composed config and run (or resume) one run."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import RunConfig
from .engine.runner import Runner, RunState
from .errors import UserError
from .logging.record import RunRecord, provenance
from .pruning.io import load_checkpoint, model_from_payload

HASH_EXCLUDE = ("run", "resume", "logger", "progress", "threads")


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


def start_model(source: str, record: RunRecord) -> tuple:
    """The penalty-trained model and its train-phase metrics from an earlier run folder."""
    src = Path(source)
    payload = load_checkpoint(src / "trained.pt" if src.is_dir() else src)
    src_dir = src if src.is_dir() else src.parent
    metrics_file = src_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    keep = {k: v for k, v in metrics.items() if k.startswith(("acc_trained", "params_unpruned",
                                                              "macs_unpruned", "flops_unpruned",
                                                              "latency_ms_unpruned"))}
    keep["started_from"] = str(src_dir.resolve())
    return model_from_payload(payload), keep


def run(cfg: DictConfig) -> dict:
    """Run (or resume, or skip if complete) the run ``cfg`` describes; return its metrics."""
    settings = typed(cfg)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    device = resolve_device(settings.device)

    dataset = component(cfg.dataset, "dataset")
    regularizer = component(cfg.regularizer, "regularizer")
    optimizer = component(cfg.optimizer, "optimizer")
    schedule = component(cfg.schedule, "schedule")
    logger = component(cfg.logger, "logger")
    data = dataset.load()
    model = component(cfg.model, "model", num_classes=data.num_classes, in_channels=data.in_channels)

    name = settings.run.name or f"{cfg.model.name}-{dataset.name}-{regularizer.name}-{schedule.name}"
    run_id = settings.run.id or f"{name}-s{settings.seed}-{config_hash(cfg)}"
    record = RunRecord.open(settings.run.root, settings.run.experiment, run_id, settings.resume)
    previous = record.read_json("metrics.json") or {}
    if previous.get("status") == "complete":
        print(f"run {record.path} is complete; nothing to do", file=sys.stderr)
        return previous

    if record.exists("ckpt.pt"):
        state = RunState.from_checkpoint(load_checkpoint(record.path / "ckpt.pt"))
    else:
        state = RunState(model=model)
        if schedule.start_from is not None:
            state.model, state.metrics = start_model(schedule.start_from, record)
    record.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    base = {"run_id": run_id, "run_dir": str(record.path), "experiment": settings.run.experiment,
            "name": name, "model": cfg.model.name, "dataset": dataset.name, "regularizer": regularizer.name,
            "lam": regularizer.lam, "schedule": schedule.name, "seed": settings.seed,
            "provenance": provenance(settings.seed, device)}
    record.write_json("metrics.json", {**base, **state.metrics, "status": "running"})
    logger.start(record.path, run_id, OmegaConf.to_container(cfg, resolve=True),
                 group=settings.run.experiment, job_type=schedule.name,
                 tags=[cfg.model.name, dataset.name, regularizer.name])
    runner = Runner(schedule=schedule, data=data, dataset=dataset, regularizer=regularizer, optimizer=optimizer,
                    record=record, logger=logger, device=device, seed=settings.seed,
                    checkpoint_every=settings.checkpoint_every, progress=settings.progress,
                    latency=settings.latency)
    t0 = time.perf_counter()
    try:
        runner.run(state)
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}"
        record.write_json("metrics.json", {**base, **state.metrics, "status": "failed", "reason": reason})
        logger.finish("failed")
        raise
    wall = previous.get("wall_time_s", 0.0) + time.perf_counter() - t0
    metrics = {**base, **state.metrics, "wall_time_s": wall, "status": "complete"}
    record.write_json("metrics.json", metrics)
    logger.summary(metrics)
    logger.finish("complete")
    return metrics
