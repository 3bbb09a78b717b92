# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Weight and group magnitudes per penalty (the TSMC 2024 framework)
#
# Li, Hu et al. (TSMC 2024) judge a sparsity penalty by the distributions it produces: of single weight
# magnitudes |w| and of group (filter) magnitudes ‖w_g‖₂. A penalty that prunes well leaves a gap between a
# mass of (near-)zero groups and the groups that matter. For each penalty-trained run under `REGPRUNE_RUNS`
# this notebook shows
# 1. the distributions at the end of penalty training, one line per penalty;
# 2. how they evolved during training, where the run recorded `magnitudes.jsonl` (`magnitude_every` > 0);
# 3. weight and filter sparsity (|w| < 0.009, as Li, Hu et al. count it).
#
# Without run folders it plots the committed `results/tables/magnitude_hist.csv`.

# %% tags=["parameters"]
import os
from pathlib import Path

from regprune.analysis.notebook import read_table, repo_root

ROOT = repo_root()
RUNS = Path(os.environ.get("REGPRUNE_RUNS", ROOT / "runs"))
TABLES = Path(os.environ.get("REGPRUNE_TABLES", ROOT / "results" / "tables"))
THRESHOLD = 0.009  # Li, Hu et al. set |w| below this to zero before counting filter sparsity

# %%
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402

from regprune.analysis import histograms, labels, plots  # noqa: E402
from regprune.analysis.collect import magnitude_frame, trained_file  # noqa: E402
from regprune.analysis.magnitudes import magnitude_stats  # noqa: E402
from regprune.analysis.runs import complete, runs_frame  # noqa: E402

SPARSITY = ["weight_sparsity", "weight_sparsity_thr", "filter_sparsity", "filter_sparsity_thr"]

runs = complete(runs_frame(RUNS)) if RUNS.is_dir() else pd.DataFrame()
mags = magnitude_frame(runs) if len(runs) else read_table(TABLES, "magnitude_hist.csv")
display(Markdown(f"**Source:** {f'{len(runs)} complete runs under {RUNS}' if len(runs) else TABLES}; "
                 f"{mags.source.nunique()} trained models."))
assert len(mags), "no magnitude histograms"

# %% [markdown]
# ## Distributions at the end of penalty training

# %%
for model, dataset in plots.panels(mags):
    fig = plots.magnitude_distributions(mags, model, dataset)
    display(fig)
    plots.plt.close(fig)

# %% [markdown]
# ## Sparsity of the trained models
# Percent of weights with |w| < 0.009 and of filters whose weights are all below it; exact zeros apart
# (penalties with a proximal step produce exact zeros, subgradient ones only small values).

# %%
rows = []
seen = set()
for _, r in runs.iterrows():
    path = trained_file(r)
    if path is None or path.resolve() in seen:
        continue
    seen.add(path.resolve())
    overall = magnitude_stats(histograms.load_model(path), THRESHOLD)["overall"]
    rows.append({"model": r.model, "dataset": r.dataset, "regularizer": r.regularizer, "λ": r.lam, "seed": r.seed,
                 **{k: round(overall[k], 2) for k in SPARSITY}})
sparsity = pd.DataFrame(rows)
if len(sparsity):
    display(sparsity.groupby(["model", "dataset", "regularizer", "λ"]).mean(numeric_only=True).drop(columns="seed"))
else:
    display(Markdown("No run folders: sparsity needs the trained models."))

# %% [markdown]
# ## Evolution during training (runs with `magnitudes.jsonl`)

# %%
recorded = [(r, histograms.read_magnitudes_jsonl(Path(r.path) / "magnitudes.jsonl")) for _, r in runs.iterrows()]
recorded = [(r, lines) for r, lines in recorded if lines]
if not recorded:
    display(Markdown("No run recorded `magnitudes.jsonl` (train with `magnitude_every=N` to record the "
                     "distributions every N epochs); the distributions above come from the trained models."))
for r, lines in recorded[:6]:
    fig, axes = plots.plt.subplots(1, 2, figsize=(11, 3.6))
    picks = sorted({0, len(lines) // 2, len(lines) - 1})
    shades = plots.plt.cm.viridis(np.linspace(0, 0.85, len(picks)))  # early -> late epochs
    for ax, kind in zip(axes, ("weight", "group"), strict=True):
        for j, i in enumerate(picks):
            line = lines[i]
            edges = histograms.log10_edges(line["edges"])
            h = line[kind]
            total = sum(h["counts"]) + h["zeros"] + h["under"] + h["over"]
            ax.stairs(np.asarray(h["counts"]) / max(total, 1), edges, color=shades[j],
                      label=f"{line['phase']} epoch {line['epoch']} (zeros {100 * h['zeros'] / max(total, 1):.1f}%)")
        ax.set_xlabel(f"log10 {'|w|' if kind == 'weight' else '‖w_g‖₂'}")
        ax.set_ylabel("share per bin")
        ax.legend(loc="upper left")
    fig.suptitle(f"{r.run}: {labels.with_lam(r.regularizer, r.lam)}")
    fig.tight_layout()
    display(fig)
    plots.plt.close(fig)
