"""Runs built on another run: ``schedule.start_from`` (continue from the source's trained model) and a phase
with a ``source`` (scratch retraining of the source's pruned widths).

A run that starts after the source's ``train`` phase continues the source's training, so its model, dataset,
regularizer and training settings (``schedule.train``) are the source's, read from the source's ``config.yaml``
and recorded as this run's: tables then attribute it to the settings that produced the model, not to this
command's defaults. With ``schedule.start_at`` at or before ``train`` (a penalty phase starting from a trained
baseline) the run trains with its own regularizer: only the model and dataset are the source's. A scratch run
retrains the source's architecture on its data and is labelled with its regularizer. A command-line override
of an inherited setting that contradicts the source is refused. A bare checkpoint file (no ``config.yaml``
beside it) keeps the command's settings and must hold the configured architecture.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import UserError
from .models.base import PrunableModel
from .pruning.io import load_checkpoint, model_from_payload
from .run_id import command_line

START_KEY = "schedule.start_from"
INHERITED = ("model", "dataset", "regularizer", "schedule.train")
TRAIN_METRICS = ("acc_trained", "val_acc_trained", "epochs_train", "epochs_total", "params_unpruned", "macs_unpruned",
                 "flops_unpruned", "latency_ms_unpruned")


def source_of(cfg: DictConfig) -> tuple[str | None, tuple[str, ...]]:
    """(the run this one is built on, the config sections it inherits from it), or (None, ())."""
    start = OmegaConf.select(cfg, START_KEY, default=None)
    if start is not None:
        return start, INHERITED if OmegaConf.select(cfg, "schedule.start_at", default=None) is None else \
            ("model", "dataset")
    for phase in (cfg.get("schedule") or {}).values():
        if isinstance(phase, DictConfig) and phase.get("source") not in (None, "???"):
            return phase.source, ("model", "dataset", "regularizer")
    return None, ()


def source_folder(start: str | Path) -> Path:
    start = Path(start)
    return start if start.is_dir() else start.parent


def leaves(value, prefix: str) -> dict[str, object]:
    """A nested config value as {dotted key: leaf value}."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(leaves(v, f"{prefix}.{k}"))
        return out or {prefix: {}}
    return {prefix: value}


def plain(node, key: str) -> dict[str, object]:
    value = OmegaConf.select(node, key, default=None)
    return leaves(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value, key)


def check_agrees(cfg: DictConfig, source: DictConfig, overrides: Sequence[str], origin: Path,
                 inherited: Sequence[str]) -> None:
    """Refuse a command-line override of an inherited setting whose value differs from the source's."""
    for key, given in command_line(overrides):
        if not any(key == s or key.startswith(f"{s}.") for s in inherited):
            continue
        ours, theirs = plain(cfg, key), plain(source, key)
        for leaf in sorted(set(ours) | set(theirs)):
            if ours.get(leaf) != theirs.get(leaf):
                raise UserError(f"{key}={given} contradicts the run it starts from ({leaf} is {ours.get(leaf)!r} here, "
                                f"{theirs.get(leaf)!r} in {origin}); this run takes its "
                                f"{', '.join(inherited)} from that run: drop the override")


def inherit_source(cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """``cfg`` with the inherited sections replaced by the source run's (unchanged without a source)."""
    start, inherited = source_of(cfg)
    origin = source_folder(start) / "config.yaml" if start is not None else None
    if origin is None or not origin.is_file():
        return cfg
    try:
        source = OmegaConf.load(origin)
    except Exception as e:
        raise UserError(f"cannot read {origin}: {str(e).splitlines()[0]}") from None
    check_agrees(cfg, source, overrides, origin, inherited)
    out = copy.deepcopy(cfg)
    for key in inherited:
        theirs = OmegaConf.select(source, key, default=None)
        if theirs is not None:
            OmegaConf.update(out, key, theirs, merge=False)
    return out


def start_model(source: str, configured: PrunableModel) -> tuple[PrunableModel, dict]:
    """The penalty-trained model and its train-phase metrics from an earlier run folder (or checkpoint file)."""
    src = Path(source)
    payload = load_checkpoint(src / "trained.pt" if src.is_dir() else src)
    check_same_architecture(payload, configured, src)
    folder = source_folder(src)
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    keep = {k: v for k, v in metrics.items() if k.startswith(TRAIN_METRICS)}
    keep["started_from"] = str(folder.resolve())
    keep["started_from_id"] = metrics.get("run_id", folder.name)
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
