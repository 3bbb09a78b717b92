"""Run folders → tables: one row per run, then accuracy-vs-FLOPs per model × dataset × regularizer × λ ×
pruning ratio (mean ± std over seeds), joined with the matching baseline and the papers' numbers.

Runs whose configurations differ only in the seed (and in where their files live) share a ``setting``
hash, so runs of different length or optimiser are never averaged together. Only ``status: complete``
runs enter the tables; the others are listed by ``incomplete()``. The histogram tables (|γ|, weight and
group magnitudes) and per-layer kept channels are what figures need, so figures never read run folders.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ..tracking.record import atomic_write_bytes, run_status, storage_error
from . import histograms as hist
from .reference import compare, headline, load_references

KEYS = ["model", "dataset", "regularizer", "lam", "schedule", "prune_ratio", "setting"]
METRICS = ["acc_final", "acc_best", "acc_trained_final", "acc_trained_best", "acc_pruned", "acc_recalibrated",
           "acc_finetuned_final", "acc_finetuned_best", "channels_pruned_ratio", "params", "macs", "flops",
           "params_unpruned", "macs_unpruned", "flops_unpruned", "params_reduction", "flops_reduction",
           "latency_ms", "latency_ms_unpruned", "wall_time_s"]
COUNTS = ["params", "macs", "flops", "params_unpruned", "macs_unpruned", "flops_unpruned"]
# config keys that do not change what a run computes: they are left out of the ``setting`` hash
NOT_SETTING = {"run", "seed", "resume", "logger", "progress", "threads", "latency", "device", "fault",
               "checkpoint_every", "checkpoint_keep", "magnitude_every"}
NOT_SETTING_NESTED = {("schedule", "start_from"), ("dataset", "root"), ("dataset", "download"),
                      ("dataset", "verify_checksums"), ("regularizer", "lam")}  # λ and the ratio are keys of their own


# -- one run -----------------------------------------------------------------------------------------
def find_run_dirs(root: str | Path) -> list[Path]:
    """Every folder under ``root`` holding a metrics.json (W&B and Hydra sweep folders skipped)."""
    root = Path(root)
    found = [p.parent for p in root.rglob("metrics.json")
             if not any(part in ("wandb", ".sweeps") for part in p.relative_to(root).parts)]
    return sorted(found)


def setting_hash(config: dict) -> str:
    """Hash of a run's config without seed, λ, pruning ratio, paths and bookkeeping (see NOT_SETTING): runs
    with equal hashes differ only in those, so they average over seeds and line up along λ and ratio."""
    plain = {k: v for k, v in config.items() if k not in NOT_SETTING}
    for section, key in NOT_SETTING_NESTED:
        if isinstance(plain.get(section), dict):
            plain[section] = {k: v for k, v in plain[section].items() if k != key}
    prune = (plain.get("schedule") or {}).get("prune")
    if isinstance(prune, dict):
        plain["schedule"] = {**plain["schedule"], "prune": {k: v for k, v in prune.items() if k != "ratio"}}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:8]


def read_run(run_dir: str | Path, root: str | Path | None = None) -> dict:
    """One flat row from a run folder's metrics.json and config.yaml."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config_file = run_dir / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False) if config_file.exists() else {}
    schedule = config.get("schedule") or {}
    prov = metrics.get("provenance") or {}
    row = {k: metrics.get(k) for k in ("run_id", "experiment", "name", "model", "dataset", "regularizer", "lam",
                                       "schedule", "seed", "status", "reason", "prune_criterion", "started_from")}
    if (config.get("regularizer") or {}).get("update") == "prox" and not str(row["regularizer"]).endswith("prox"):
        row["regularizer"] = f"{row['regularizer']}-prox"  # a proximal update is a method of its own in the tables
    row["status"] = run_status(run_dir, row["status"])  # running without a live job: interrupted
    row["run"] = str(run_dir.relative_to(root)) if root is not None else str(run_dir)
    row["path"] = str(run_dir.resolve())
    row["prune_ratio"] = metrics.get("prune_ratio", (schedule.get("prune") or {}).get("ratio"))
    if row["prune_ratio"] is None:
        row["prune_ratio"] = float("nan")
    row["train_epochs"] = (schedule.get("train") or {}).get("epochs")
    row["finetune_epochs"] = (schedule.get("finetune") or {}).get("epochs")
    row["setting"] = setting_hash(config)
    row.update({k: metrics.get(k) for k in METRICS if k in metrics})
    row["acc_final"] = metrics.get("acc_finetuned_final", metrics.get("acc_trained_final"))
    row["acc_best"] = metrics.get("acc_finetuned_best", metrics.get("acc_trained_best"))
    row["topped_up_layers"] = len(metrics.get("channels_topped_up") or {})
    row.update({k: prov.get(k) for k in ("git_commit", "git_dirty", "device_name")})
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
        return pd.DataFrame(columns=["run", "path", "status", "seed", "experiment", *KEYS, *METRICS])
    for col in ("seed", "train_epochs", "finetune_epochs", *COUNTS):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    return frame


def complete(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs.status == "complete"].reset_index(drop=True)


def incomplete(runs: pd.DataFrame) -> pd.DataFrame:
    cols = ["run", "status", "reason", "model", "dataset", "regularizer", "lam", "prune_ratio", "seed"]
    bad = runs[runs.status != "complete"]
    return bad.reindex(columns=cols).reset_index(drop=True)


# -- aggregation -------------------------------------------------------------------------------------
def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Complete runs aggregated over seeds: ``<metric>_mean``, ``<metric>_std`` (ddof 1), n_seeds, seeds,
    then the baseline's accuracy and the drop from it (see ``attach_baselines``)."""
    done = complete(runs)
    if done.empty:
        return pd.DataFrame(columns=[*KEYS, "n_seeds"])
    present = [m for m in METRICS if m in done]
    done[present] = done[present].apply(pd.to_numeric, errors="coerce").astype(float)
    grouped = done.groupby(KEYS, dropna=False, sort=True)
    stats = grouped[present].agg(["mean", "std"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    extra = grouped.agg(n_seeds=("seed", "nunique"), seeds=("seed", lambda s: " ".join(map(str, sorted(set(s))))),
                        experiments=("experiment", lambda s: " ".join(sorted(set(map(str, s))))),
                        train_epochs=("train_epochs", "first"), finetune_epochs=("finetune_epochs", "first"),
                        topped_up_layers=("topped_up_layers", "max"))
    summary = extra.join(stats).reset_index()
    return attach_baselines(summary)


def attach_baselines(summary: pd.DataFrame) -> pd.DataFrame:
    """Baseline = regularizer none, schedule train, same model and dataset; preferring the same training
    length, then the one with most seeds. Adds baseline_acc(_std), baseline_setting, acc_drop = baseline − final."""
    base = summary[(summary.regularizer == "none") & (summary.schedule == "train")]
    out = summary.copy()
    for col in ("baseline_acc", "baseline_acc_std", "acc_drop"):
        out[col] = float("nan")
    out["baseline_setting"] = None
    for i, row in summary.iterrows():
        cand = base[(base.model == row.model) & (base.dataset == row.dataset)]
        if cand.empty:
            continue
        cand = cand.assign(same_len=(cand.train_epochs == row.train_epochs).astype(int))
        best = cand.sort_values(["same_len", "n_seeds"], ascending=False).iloc[0]
        out.loc[i, "baseline_acc"] = best.acc_final_mean
        out.loc[i, "baseline_acc_std"] = best.acc_final_std
        out.loc[i, "baseline_setting"] = best.setting
        out.loc[i, "acc_drop"] = best.acc_final_mean - row.acc_final_mean
    return out


# -- per-layer and distribution tables ---------------------------------------------------------------
def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def kept_channels_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (pruned run, layer): kept and total channels, layers in network order."""
    rows = []
    for _, r in complete(runs).iterrows():
        kept, total = r.get("kept_channels"), r.get("total_channels")
        if not isinstance(kept, dict) or not isinstance(total, dict):
            continue
        for index, layer in enumerate(sorted(kept, key=natural_key)):
            rows.append({**{k: r[k] for k in KEYS}, "seed": r.seed, "run": r.run, "layer": layer,
                         "layer_index": index, "kept": kept[layer], "total": total.get(layer)})
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "run", "layer", "layer_index", "kept", "total"])


def trained_elsewhere(r: pd.Series, collected: set[str]) -> bool:
    """The run's trained model belongs to another collected run (``start_from``): that run reports it."""
    path = trained_file(r)
    return path is not None and path.parent != Path(r.path) and str(path.parent.resolve()) in collected


def trained_file(r: pd.Series) -> Path | None:
    """The penalty-trained model of a run: its own trained.pt, or the one of the run it started from."""
    own = Path(r.path) / "trained.pt"
    if own.is_file():
        return own
    if isinstance(r.get("started_from"), str):
        src = Path(r.started_from)
        for cand in (src / "trained.pt", Path(r.path).parent / src.name / "trained.pt"):
            if cand.is_file():
                return cand
    return None


def _label(path: Path, r: pd.Series) -> str:
    """A machine-independent name for a model file: <run folder relative to the collected root>/<file>."""
    if path.parent == Path(r.path):
        return f"{r.run}/{path.name}"
    return f"{Path(r.run).parent / path.parent.name}/{path.name}"


def _warn(what: str, path: Path, e: Exception) -> None:
    print(f"note: no {what} from {path}: {type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)


def gamma_frame(runs: pd.DataFrame, bins: int = 60) -> pd.DataFrame:
    """|γ| histograms per run and stage: trained (after penalty training; the baseline's after plain
    training) and final (the pruned, fine-tuned model); ``bn_init`` is the configured initial γ (every
    channel starts there). Edges are shared by all runs of one model × dataset (0 to the largest |γ| seen),
    so the histograms of one panel are comparable."""
    values = []
    done = complete(runs)
    collected = set(done.path)
    for _, r in done.iterrows():
        files = {"trained": None if trained_elsewhere(r, collected) else trained_file(r),
                 "final": Path(r.path) / "model.pt"}
        for stage, path in files.items():
            if path is None or not path.is_file():
                continue
            try:
                values.append((r, stage, _label(path, r), hist.gate_gammas(hist.load_model(path))))
            except Exception as e:  # a model class this checkout lacks, a corrupt file
                _warn("|γ|", path, e)
    panels: dict[tuple, float] = {}
    for r, _, _, g in values:
        key = (r.model, r.dataset)
        panels[key] = max(panels.get(key, 0.0), float(g.max()) if g.size else 0.0)
    rows = []
    for r, stage, source, g in values:
        top = panels[(r.model, r.dataset)] or 1.0
        counts, edges = np.histogram(g, bins=bins, range=(0.0, top * (1 + 1e-9)))
        init = r.get("bn_init")
        for i, c in enumerate(counts):
            rows.append({**{k: r[k] for k in KEYS}, "seed": r.seed, "run": r.run, "stage": stage, "source": source,
                         "bn_init": init, "left": edges[i], "right": edges[i + 1], "count": int(c)})
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "run", "stage", "source", "bn_init", "left", "right",
                                       "count"])


def magnitude_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """log10 histograms of weight |w| and group ‖w_g‖₂ magnitudes per run at the end of penalty training:
    the last train-phase line of the run's magnitudes.jsonl when it has one, else computed from the
    penalty-trained model (same edges). ``zeros`` is the count of exact zeros of that histogram."""
    rows = []
    done = complete(runs)
    collected = set(done.path)
    for _, r in done.iterrows():
        if trained_elsewhere(r, collected):
            continue
        lines = [ln for ln in hist.read_magnitudes_jsonl(Path(r.path) / "magnitudes.jsonl") if ln["phase"] == "train"]
        if lines:
            last = lines[-1]
            spec, source, hists = last["edges"], f"{r.run}/magnitudes.jsonl@epoch{last['epoch']}", last
        else:
            path = trained_file(r)
            if path is None:
                continue
            try:
                hists = hist.model_magnitudes(hist.load_model(path))
            except Exception as e:
                _warn("magnitudes", path, e)
                continue
            spec, source = hists["edges"], _label(path, r)
        edges = hist.log10_edges(spec)
        for kind in ("weight", "group"):
            h = hists[kind]
            for i, c in enumerate(h["counts"]):
                rows.append({**{k: r[k] for k in KEYS}, "seed": r.seed, "run": r.run, "source": source,
                             "kind": kind, "log10_left": edges[i], "log10_right": edges[i + 1], "count": int(c),
                             "zeros": h["zeros"], "under": h["under"], "over": h["over"]})
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "run", "source", "kind", "log10_left", "log10_right",
                                       "count", "zeros", "under", "over"])


# -- writing -----------------------------------------------------------------------------------------
RUN_COLUMNS = ["run", "run_id", "experiment", "status", *KEYS, "seed", "train_epochs", "finetune_epochs",
               "prune_criterion", "topped_up_layers", *METRICS, "git_commit", "git_dirty", "device_name"]


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _count(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = float(value)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def _share(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def _pm(mean, std) -> str:
    return _fmt(mean) if std is None or pd.isna(std) else f"{_fmt(mean)} ± {_fmt(std)}"


def markdown(summary: pd.DataFrame, vs_paper: pd.DataFrame, skipped: pd.DataFrame) -> str:
    """The tables as Markdown: accuracy vs FLOPs, comparison with the papers, runs left out."""
    head = ["model", "dataset", "regularizer", "λ", "ratio", "seeds", "acc % trained", "acc % pruned",
            "acc % (final)", "baseline %", "drop", "paper %", "Δ paper", "channels ↓", "params", "MACs", "FLOPs",
            "FLOPs ↓", "latency ms"]
    lines = ["# Accuracy vs FLOPs", "", "Test accuracy (%) after penalty training, right after pruning and final "
             "(after fine-tuning; after training for runs without pruning), mean ± std over seeds; drop = baseline "
             "− final; Δ paper = ours − paper; channels ↓ = share of prunable channels removed; FLOPs = 2 × MACs.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        ratio = "–" if pd.isna(r.prune_ratio) else f"{r.prune_ratio:g}"
        cells = [r.model, r.dataset, r.regularizer, f"{r.lam:g}", ratio, str(r.n_seeds),
                 _pm(r.get("acc_trained_final_mean"), r.get("acc_trained_final_std")),
                 _pm(r.get("acc_pruned_mean"), r.get("acc_pruned_std")), _pm(r.acc_final_mean, r.acc_final_std),
                 _fmt(r.baseline_acc), _fmt(r.acc_drop), _fmt(r.get("paper_acc")), _fmt(r.get("paper_acc_diff")),
                 _share(r.get("channels_pruned_ratio_mean")), _count(r.get("params_mean")),
                 _count(r.get("macs_mean")), _count(r.get("flops_mean")), _share(r.get("flops_reduction_mean")),
                 _fmt(r.get("latency_ms_mean"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    if not vs_paper.empty:
        lines += ["", "## Compared with the papers", "", "| source | dataset | model | method | ratio | metric | "
                  "paper | ours | ours − paper |", "|---|---|---|---|---|---|---|---|---|"]
        for _, r in vs_paper.iterrows():
            ratio = "–" if pd.isna(r.prune_ratio) else f"{r.prune_ratio:g}"
            if r.metric.startswith(("params", "macs", "flops")) and not r.metric.endswith("reduction"):
                cells = [_count(r.paper), _count(r.ours), f"{100 * r['diff'] / r.paper:+.1f}%"]
            elif r.metric.endswith("reduction"):
                cells = [f"{100 * r.paper:.1f}%", f"{100 * r.ours:.1f}%", f"{100 * r['diff']:+.1f} pt"]
            else:
                cells = [_fmt(r.paper), _pm(r.ours, r.ours_std), f"{r['diff']:+.2f}"]
            lines.append(f"| {r.source} | {r.dataset} | {r.model} | {r.method} | {ratio} | {r.metric} | "
                         + " | ".join(cells) + " |")
    if not skipped.empty:
        lines += ["", f"## Not included ({len(skipped)} runs not complete)", ""]
        lines += [f"- `{r.run}`: {r.status}" + (f" ({r.reason})" if isinstance(r.reason, str) else "")
                  for _, r in skipped.iterrows()]
    return "\n".join(lines) + "\n"


def collect(roots: list[str | Path], out: str | Path, reference: str | Path | None = None,
            histograms: bool = True) -> dict[str, pd.DataFrame]:
    """Read every run under ``roots`` and write the tables to ``out`` (CSV + summary.md, each replaced atomically:
    a write that fails leaves the earlier file and raises a one-line StorageError); return them."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(out, e) from None
    runs = runs_frame(*roots)
    done = complete(runs)
    skipped = incomplete(runs)
    summary = summarize(runs)
    vs_paper = compare(summary, load_references(reference))
    summary = headline(summary, vs_paper)
    tables = {"runs": done.reindex(columns=RUN_COLUMNS), "incomplete": skipped, "summary": summary,
              "vs_paper": vs_paper, "kept_channels": kept_channels_frame(runs)}
    if histograms:
        tables["gamma_hist"] = gamma_frame(runs)
        tables["magnitude_hist"] = magnitude_frame(runs)
    for name, frame in tables.items():
        atomic_write_bytes(out / f"{name}.csv", frame.to_csv(index=False).encode())
    atomic_write_bytes(out / "summary.md", (markdown(summary, vs_paper, skipped) if not summary.empty else
                                            "# Accuracy vs FLOPs\n\nNo complete runs.\n").encode())
    return tables
