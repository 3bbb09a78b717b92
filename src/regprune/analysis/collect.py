"""Run folders → the tables a reproduction commits, and those its figures read.

``collect`` writes, next to each other: ``runs.csv`` (one row per complete run), ``summary.csv`` and
``summary.md`` (per setting: n seeds, mean and 95% interval of every figure, baseline, paired comparison with
the reference method; ``analysis.summary``), ``duplicates.csv``, ``incomplete.csv``, ``vs_paper.csv``, and the
inputs of the figures: ``kept_channels.csv``, ``gamma_hist.csv``, ``magnitude_hist.csv``. Machine-dependent
figures (latency, wall time, host, git commit) go to ``machine/`` (``timing.md``, ``timing.csv``,
``provenance.csv``), so the other files regenerate exactly when the runs are repeated on the same platform.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..tracking.record import atomic_write_bytes, storage_error
from . import histograms as hist
from .markdown import summary_markdown, timing_markdown
from .reference import compare, headline, load_references
from .runs import KEYS, MACHINE, METRICS, PROVENANCE, RESULT_PROVENANCE, complete, incomplete, runs_frame
from .summary import summarize, timing


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
    if isinstance(r.get("source"), str) and (Path(r.source) / "trained.pt").is_file():
        return Path(r.source) / "trained.pt"
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
    channel starts there), ``zeros`` the number of γ exactly 0 (counted in the first bin too). Edges are
    shared by all runs of one model × dataset × stage (0 to the largest |γ| seen), so a figure's histograms
    compare."""
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
    for r, stage, _, g in values:
        key = (r.model, r.dataset, stage)
        panels[key] = max(panels.get(key, 0.0), float(g.max()) if g.size else 0.0)
    rows = []
    for r, stage, source, g in values:
        top = panels[(r.model, r.dataset, stage)] or 1.0
        counts, edges = np.histogram(g, bins=bins, range=(0.0, top * (1 + 1e-9)))
        init, zeros = r.get("bn_init"), int((g == 0).sum())
        for i, c in enumerate(counts):
            rows.append({**{k: r[k] for k in KEYS}, "seed": r.seed, "run": r.run, "stage": stage, "source": source,
                         "bn_init": init, "zeros": zeros, "left": edges[i], "right": edges[i + 1], "count": int(c)})
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "run", "stage", "source", "bn_init", "zeros", "left", "right",
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
RUN_COLUMNS = ["run", "run_id", "experiment", "status", *KEYS, "seed", "train_seed", "train_epochs",
               "finetune_epochs", "prune_criterion", "topped_up_layers", "scratch_of", *METRICS, *RESULT_PROVENANCE]
PROVENANCE_COLUMNS = ["run", *PROVENANCE, "torch", *MACHINE]
IDENTITY = ["method", "setting_label", "experiments", "n"]


def collect(roots: list[str | Path], out: str | Path, reference: str | Path | None = None,
            histograms: bool = True, heading: str = "Accuracy vs FLOPs", preface: str = "") -> dict[str, pd.DataFrame]:
    """Read every run under ``roots`` and write the tables to ``out`` (see the module docstring; each file is
    replaced atomically: a write that fails leaves the earlier file and raises a one-line StorageError); return
    them. ``heading`` and ``preface`` open summary.md (e.g. to say that a table is a smoke run)."""
    out = Path(out)
    try:
        (out / "machine").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(out, e) from None
    runs = runs_frame(*roots)
    done = complete(runs)
    skipped = incomplete(runs)
    summary, duplicates, notes = summarize(runs)
    vs_paper = compare(summary, load_references(reference))
    summary = headline(summary, vs_paper)
    times = timing(runs)
    if len(times):  # in the summary's order
        times = summary[[*KEYS, *IDENTITY]].merge(times, on=KEYS, how="inner")
    tables = {"runs": done.reindex(columns=RUN_COLUMNS), "incomplete": skipped, "summary": summary,
              "duplicates": duplicates, "vs_paper": vs_paper, "kept_channels": kept_channels_frame(runs)}
    if histograms:
        tables["gamma_hist"] = gamma_frame(runs)
        tables["magnitude_hist"] = magnitude_frame(runs)
    names = dict(zip(summary.setting, summary.get("setting_label", pd.Series(dtype=str)), strict=True))
    for name in ("kept_channels", "gamma_hist", "magnitude_hist"):
        if name in tables:  # the figures label a method's settings as the tables do
            tables[name] = tables[name].assign(setting_label=tables[name].setting.map(names).fillna(""))
    machine = {"timing": times, "provenance": done.reindex(columns=PROVENANCE_COLUMNS)}
    for name, frame in tables.items():
        atomic_write_bytes(out / f"{name}.csv", frame.to_csv(index=False).encode())
    for name, frame in machine.items():
        atomic_write_bytes(out / "machine" / f"{name}.csv", frame.to_csv(index=False).encode())
    atomic_write_bytes(out / "summary.md",
                       summary_markdown(summary, vs_paper, skipped, duplicates, notes, heading, preface).encode())
    atomic_write_bytes(out / "machine" / "timing.md", timing_markdown(times, machine["provenance"]).encode())
    return {**tables, **machine}
