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
# # BatchNorm scaling factors γ before and after penalty training
#
# Network slimming prunes the channels whose |γ| falls below a global percentile, so a penalty on γ should
# push most |γ| towards zero while training leaves a few large. Before training every γ equals the
# configured initial value (`model.bn_init`, 0.5 in NS); the baseline run (`regularizer=none`) shows where
# plain training takes them. For each penalty-trained model under `REGPRUNE_RUNS` (its `trained.pt`) this
# notebook shows the |γ| histogram against the baseline, per layer, and the share of small |γ|.
# Without run folders it plots the committed `results/tables/gamma_hist.csv`.

# %% tags=["parameters"]
import os
from pathlib import Path

from regprune.analysis.notebook import read_table, repo_root

ROOT = repo_root()
RUNS = Path(os.environ.get("REGPRUNE_RUNS", ROOT / "runs"))
TABLES = Path(os.environ.get("REGPRUNE_TABLES", ROOT / "results" / "tables"))
SMALL = 1e-2  # |γ| below this counts as switched off

# %%
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402

from regprune.analysis import histograms, labels, plots  # noqa: E402
from regprune.analysis.collect import gamma_frame, trained_file  # noqa: E402
from regprune.analysis.runs import complete, runs_frame  # noqa: E402

runs = complete(runs_frame(RUNS)) if RUNS.is_dir() else pd.DataFrame()
gamma = gamma_frame(runs) if len(runs) else read_table(TABLES, "gamma_hist.csv")
display(Markdown(f"**Source:** {f'{len(runs)} complete runs under {RUNS}' if len(runs) else TABLES}."))
assert len(gamma), "no |γ| histograms"

# %% [markdown]
# ## |γ| after training, per penalty (dashed: the initial value)

# %%
for model, dataset in plots.panels(gamma):
    for stage in ("trained", "final"):
        fig = plots.gamma_histograms(gamma, model, dataset, stage=stage)
        display(fig)
        plots.plt.close(fig)

# %% [markdown]
# ## Per layer: |γ| of each trained model (one model per penalty and seed)

# %%
models = {}
for _, r in runs.iterrows():
    path = trained_file(r)
    if path is not None and path.resolve() not in {p for p, _ in models.values()}:
        models[(r.model, r.dataset, r.regularizer, r.lam, r.seed)] = (path.resolve(), r)
per_layer = []
for (model, dataset, reg, lam, seed), (path, _) in models.items():
    net = histograms.load_model(path)
    for layer, bn in net.gate_modules().items():
        g = bn.weight.detach().abs().numpy()
        per_layer.append({"model": model, "dataset": dataset, "penalty": labels.with_lam(reg, lam), "seed": seed,
                          "method": reg,
                          "layer": layer, "median |γ|": float(np.median(g)), "max |γ|": float(g.max()),
                          f"share |γ| < {SMALL:g} (%)": 100.0 * float((g < SMALL).mean()), "channels": g.size})
per_layer = pd.DataFrame(per_layer)
if len(per_layer):
    for (model, dataset), part in per_layer.groupby(["model", "dataset"]):
        fig, ax = plots.plt.subplots(figsize=(7, 3.8))
        for label, line in part.groupby("penalty", sort=True):
            mean = line.groupby("layer", sort=False)["median |γ|"].mean()
            ax.plot(range(len(mean)), mean.values, label=label, **labels.style(line.method.iloc[0]))
        ax.set_xticks(range(len(mean)), mean.index, rotation=60, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("median |γ| of the layer (mean over seeds)")
        ax.set_xlabel("prunable layer (gate BatchNorm)")
        ax.set_title(f"Scaling factors per layer after training — {labels.title(model, dataset)}")
        ax.legend()
        fig.tight_layout()
        display(fig)
        plots.plt.close(fig)
    display(per_layer.groupby(["model", "dataset", "penalty"])[[f"share |γ| < {SMALL:g} (%)"]].mean().round(1))
else:
    display(Markdown("No run folders: the per-layer view needs the trained models."))

# %% [markdown]
# ## Where the pruning threshold fell
# The global threshold the prune phase used (NS: the ratio-th percentile of all |γ|) for each pruned run.

# %%
if len(runs) and "prune_ratio" in runs:
    import json

    rows = []
    for _, r in runs[runs.prune_ratio.notna()].iterrows():
        m = json.loads((Path(r.path) / "metrics.json").read_text())
        rows.append({"run": r.run, "penalty": labels.with_lam(r.regularizer, r.lam), "ratio": r.prune_ratio,
                     "threshold |γ|": m.get("prune_threshold"), "channels pruned (%)":
                     100 * m.get("channels_pruned_ratio", float("nan")),
                     "acc just pruned": m.get("acc_pruned"), "acc final": m.get("acc_finetuned_final")})
    display(pd.DataFrame(rows).sort_values(["penalty", "ratio"]).round(4) if rows else Markdown("No pruned runs."))
