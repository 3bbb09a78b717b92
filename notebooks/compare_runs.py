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
# # Compare runs: accuracy vs FLOPs
#
# One row per model × dataset × regularizer × λ × pruning ratio: test accuracy after fine-tuning
# (mean ± std over seeds), the matching baseline and the drop from it, parameters, FLOPs (= 2 × MACs) and
# latency; then accuracy against FLOPs with the Pareto front. The tables come from run folders under
# `REGPRUNE_RUNS` when it holds any (collected fresh), else from the committed `results/tables/`.
# Open as a notebook with `jupytext --to notebook notebooks/compare_runs.py` (or Jupyter's jupytext plugin).

# %% tags=["parameters"]
import os
from pathlib import Path

from regprune.analysis.notebook import read_table, repo_root

ROOT = repo_root()
RUNS = Path(os.environ.get("REGPRUNE_RUNS", ROOT / "runs"))
TABLES = Path(os.environ.get("REGPRUNE_TABLES", ROOT / "results" / "tables"))
REFERENCE = ROOT / "results" / "reference"

# %%
import pandas as pd  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402

from regprune.analysis import plots  # noqa: E402
from regprune.analysis.collect import incomplete, runs_frame, summarize  # noqa: E402
from regprune.analysis.reference import compare, headline, load_references  # noqa: E402

runs = runs_frame(RUNS) if RUNS.is_dir() else pd.DataFrame()
if len(runs):
    summary = summarize(runs)
    vs_paper = compare(summary, load_references(REFERENCE))
    summary = headline(summary, vs_paper)
    source = f"{len(runs)} run folders under {RUNS}"
    skipped = incomplete(runs)
else:
    summary = read_table(TABLES, "summary.csv")
    vs_paper = read_table(TABLES, "vs_paper.csv")
    skipped = read_table(TABLES, "incomplete.csv") if (TABLES / "incomplete.csv").is_file() else pd.DataFrame()
    source = f"committed tables in {TABLES}"
display(Markdown(f"**Source:** {source}; {len(summary)} configurations, {len(skipped)} run(s) not complete."))
assert len(summary), "no complete runs to compare"

# %% [markdown]
# ## Accuracy-vs-FLOPs table


# %%
def pm(mean, std):
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


table = pd.DataFrame({
    "model": summary.model, "dataset": summary.dataset, "regularizer": summary.regularizer,
    "λ": [f"{v:g}" for v in summary.lam],
    "ratio": summary.prune_ratio, "seeds": summary.n_seeds,
    "acc % final": [pm(m, s) for m, s in zip(summary.acc_final_mean, summary.acc_final_std, strict=True)],
    "acc % just pruned": summary.get("acc_pruned_mean"),
    "baseline %": summary.baseline_acc, "drop": summary.acc_drop,
    "paper %": summary.get("paper_acc"), "Δ paper": summary.get("paper_acc_diff"),
    "params (M)": summary.params_mean / 1e6, "FLOPs (M)": summary.flops_mean / 1e6,
    "FLOPs ↓ %": 100 * summary.flops_reduction_mean,
    "latency ms": summary.get("latency_ms_mean"),
})
table.round(2)

# %% [markdown]
# ## Pareto plots (one per model × dataset)
# Points are pruning ratios; error bars are the std over seeds; the grey line joins the configurations no
# other configuration beats on both FLOPs and accuracy.

# %%
for model, dataset in plots.panels(summary):
    if summary[(summary.model == model) & (summary.dataset == dataset)].prune_ratio.notna().any():
        fig = plots.acc_vs_flops(summary, model, dataset, vs_paper, front=True)
        display(fig)
        plots.plt.close(fig)

# %% [markdown]
# ## Pareto-optimal configurations

# %%
pruned = summary[summary.prune_ratio.notna()]
front = []
for _, part in pruned.groupby(["model", "dataset"]):
    mask = plots.pareto_front(part.flops_mean, part.acc_final_mean)
    front.append(part[mask].sort_values("flops_mean"))
front = pd.concat(front) if front else pruned
front[["model", "dataset", "regularizer", "lam", "prune_ratio", "n_seeds", "acc_final_mean", "flops_mean",
       "params_mean"]]

# %% [markdown]
# ## Compared with the papers (where a reference row matches)

# %%
vs_paper if len(vs_paper) else Markdown("No collected configuration matches a reference row "
                                        "(references are CIFAR results; see results/reference/README.md).")

# %%
skipped if len(skipped) else Markdown("Every run is complete.")
