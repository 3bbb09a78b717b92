"""Run folders → one row per run (``runs_frame``).

A row describes a run as far as it determines its results: its effective config (``analysis.settings``)
gives the ``setting`` hash, and a run that started from another run's trained model takes that run's
training seed and the epochs it actually trained (from its history.csv). Only ``status: complete`` runs
enter the tables; the others are listed by ``incomplete()``. Machine-dependent figures (latency, wall time,
host, git commit) are kept apart from the rest (``MACHINE``), so tables regenerate exactly on another run.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from ..tracking.record import run_status
from .settings import effective_config, setting_hash

KEYS = ["model", "dataset", "regularizer", "lam", "schedule", "prune_ratio", "setting"]
ACCURACY = ["acc_trained_final", "acc_trained_best", "acc_trained_at_best_val", "acc_pruned", "acc_pruned_masked",
            "acc_pruned_recal", "acc_search_median_recal", "acc_recalibrated", "acc_finetuned_final",
            "acc_finetuned_best", "acc_finetuned_at_best_val", "acc_final", "acc_best"]
VALIDATION = [f"val_{m}" for m in ACCURACY if m not in ("acc_final", "acc_best") and "at_best_val" not in m]
COST = ["channels_pruned_ratio", "params", "macs", "flops", "params_unpruned", "macs_unpruned", "flops_unpruned",
        "params_reduction", "flops_reduction"]
METRICS = [*ACCURACY, "acc_scratch", "pruned_masked_gap", *VALIDATION, *COST]
MACHINE = ["latency_ms", "latency_ms_iqr", "latency_outlier_share", "latency_ms_unpruned", "wall_time_s"]
COUNTS = ["params", "macs", "flops", "params_unpruned", "macs_unpruned", "flops_unpruned"]
FINAL = ["acc_finetuned_final", "acc_scratch_final", "acc_pruned", "acc_trained_final"]  # first present = final
PROVENANCE = ["git_commit", "git_dirty", "device", "device_name", "host", "threads", "python"]
RESULT_PROVENANCE = ["git_dirty", "device", "threads"]  # provenance that can change results bit for bit


# -- one run -----------------------------------------------------------------------------------------
def find_run_dirs(root: str | Path) -> list[Path]:
    """Every folder under ``root`` holding a metrics.json (W&B and Hydra sweep folders skipped)."""
    root = Path(root)
    found = [p.parent for p in root.rglob("metrics.json")
             if not any(part in ("wandb", ".sweeps") for part in p.relative_to(root).parts)]
    return sorted(found)


def read_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else {}


def source_dir(run_dir: Path, metrics: dict) -> Path | None:
    """The folder of the run whose trained model this run started from: the recorded path, or a folder of that
    name next to this run (run folders copied or moved together)."""
    started = metrics.get("started_from")
    if not isinstance(started, str):
        return None
    for cand in (Path(started), run_dir.parent / Path(started).name):
        if (cand / "metrics.json").is_file() or (cand / "trained.pt").is_file():
            return cand
    return None


def epochs_run(run_dir: Path, phase: str) -> int | None:
    """Epochs of ``phase`` a run actually ran (rows of its history.csv); None without a history."""
    path = run_dir / "history.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return sum(row.get("phase") == phase for row in csv.DictReader(f))


def read_run(run_dir: str | Path, root: str | Path | None = None) -> dict:
    """One flat row from a run folder (and from the folder of the run it started from, if any)."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = read_config(run_dir)
    source = source_dir(run_dir, metrics)
    trainer = source or run_dir  # the run that trained the model
    trainer_metrics = json.loads((source / "metrics.json").read_text()) if source and (
        source / "metrics.json").is_file() else metrics
    effective = effective_config(config, read_config(source) if source else None)
    schedule = effective.get("schedule") or {}
    row = {k: metrics.get(k) for k in ("run_id", "experiment", "name", "model", "dataset", "regularizer", "lam",
                                       "schedule", "seed", "status", "reason", "prune_criterion", "started_from",
                                       "scratch_of")}
    if (config.get("regularizer") or {}).get("update") == "prox" and not str(row["regularizer"]).endswith("prox"):
        row["regularizer"] = f"{row['regularizer']}-prox"  # a proximal update is a method of its own in the tables
    row["status"] = run_status(run_dir, row["status"])  # running without a live job: interrupted
    row["run"] = str(run_dir.relative_to(root)) if root is not None else str(run_dir)
    row["path"] = str(run_dir.resolve())
    row["source"] = str(source.resolve()) if source else None
    row["train_seed"] = trainer_metrics.get("seed", metrics.get("seed"))
    ratio = metrics.get("prune_ratio")  # recorded by the prune phase; a run that stopped before has none
    if ratio is not None and metrics.get("passes"):  # multi-pass: the total asked, 1 - (1 - r)^passes
        ratio = round(1 - (1 - ratio) ** len(metrics["passes"]), 3)
    row["prune_ratio"] = float("nan") if ratio is None else ratio
    trained = epochs_run(trainer, "train")
    row["train_epochs"] = trained if trained is not None else (schedule.get("train") or {}).get("epochs")
    row["finetune_epochs"] = epochs_run(run_dir, "finetune") if schedule.get("finetune") else None
    row["setting"] = setting_hash(effective)
    row["config"] = effective
    row.update({k: metrics.get(k) for k in [*ACCURACY, *VALIDATION, *COST, *MACHINE] if k in metrics})
    row["acc_final"] = next((metrics[k] for k in FINAL if metrics.get(k) is not None), None)
    row["acc_best"] = metrics.get("acc_finetuned_best", metrics.get("acc_trained_best"))
    if metrics.get("acc_pruned_masked") is not None and metrics.get("acc_pruned") is not None:
        row["pruned_masked_gap"] = metrics["acc_pruned_masked"] - metrics["acc_pruned"]
    row["topped_up_layers"] = len(metrics.get("channels_topped_up") or {})
    prov = metrics.get("provenance") or {}
    row.update({k: prov.get(k) for k in PROVENANCE})
    row["torch"] = (prov.get("packages") or {}).get("torch")
    row["kept_channels"] = metrics.get("kept_channels")
    row["total_channels"] = metrics.get("total_channels")
    row["bn_init"] = (config.get("model") or {}).get("bn_init")
    return row


def runs_frame(*roots: str | Path) -> pd.DataFrame:
    """Every run folder under ``roots`` (any status), one row each; unreadable folders are reported and skipped."""
    rows = []
    for root in roots:
        for run_dir in find_run_dirs(root):
            try:
                rows.append(read_run(run_dir, root))
            except (OSError, ValueError, KeyError) as e:
                print(f"note: skipping {run_dir}: {type(e).__name__}: {e}", file=sys.stderr)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["run", "path", "status", "seed", "train_seed", "experiment", "config", *KEYS,
                                     *METRICS])
    for col in ("seed", "train_seed", "train_epochs", "finetune_epochs", *COUNTS):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    return frame


def complete(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs.status == "complete"].reset_index(drop=True)


def incomplete(runs: pd.DataFrame) -> pd.DataFrame:
    cols = ["run", "status", "reason", "model", "dataset", "regularizer", "lam", "prune_ratio", "seed"]
    bad = runs[runs.status != "complete"]
    return bad.reindex(columns=cols).reset_index(drop=True)
