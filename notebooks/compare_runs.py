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
# One row per model × dataset × method × λ × pruning ratio × setting: test accuracy right after pruning and
# after fine-tuning (mean ± half-width of the 95% t interval over n seeds), the matching baseline and the
# paired drop from it, parameters and FLOPs (= 2 × MACs); then accuracy against FLOPs with the Pareto front.
# The tables come from run folders under `REGPRUNE_RUNS` when it holds any (collected fresh), else from the
# committed `results/tables/`.
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
from regprune.analysis.reference import compare, headline, load_references  # noqa: E402
from regprune.analysis.runs import incomplete, runs_frame  # noqa: E402
from regprune.analysis.summary import summarize  # noqa: E402

runs = runs_frame(RUNS) if RUNS.is_dir() else pd.DataFrame()
if len(runs):
    summary = summarize(runs)[0]
    vs_paper = compare(summary, load_references(REFERENCE))
    summary = headline(summary, vs_paper)
    source = f"{len(runs)} run folders under {RUNS}"
    skipped = incomplete(runs)
else:
    summary = read_table(TABLES, "summary.csv")
    summary["setting_label"] = summary.setting_label.astype(object).fillna("")
    vs_paper = read_table(TABLES, "vs_paper.csv")
    skipped = read_table(TABLES, "incomplete.csv") if (TABLES / "incomplete.csv").is_file() else pd.DataFrame()
    source = f"committed tables in {TABLES}"
display(Markdown(f"**Source:** {source}; {len(summary)} configurations, {len(skipped)} run(s) not complete."))
assert len(summary), "no complete runs to compare"

# %% [markdown]
# ## Accuracy-vs-FLOPs table


# %%
def pm(metric):
    """mean ± half-width of the 95% t interval (no interval with one seed)."""
    mean, ci = summary[f"{metric}_mean"], summary[f"{metric}_ci"]
    return [f"{m:.2f}" if pd.isna(c) else f"{m:.2f} ± {c:.2f}" for m, c in zip(mean, ci, strict=True)]


table = pd.DataFrame({
    "model": summary.model, "dataset": summary.dataset, "method": summary.method,
    "λ": [f"{v:g}" for v in summary.lam], "setting": summary.setting_label,
    "ratio": summary.prune_ratio, "n": summary.n,
    "acc % right after pruning": pm("acc_pruned"), "acc % final": pm("acc_final"),
    "baseline %": summary.baseline_acc, "baseline − final": summary.drop_diff,
    "paper %": summary.get("paper_acc"), "Δ paper": summary.get("paper_acc_diff"),
    "params (M)": summary.params_mean / 1e6, "FLOPs (M)": summary.flops_mean / 1e6,
    "FLOPs ↓ %": 100 * summary.flops_reduction_mean,
})
table.round(2)

# %% [markdown]
# ## Pareto plots (one per model × dataset)
# Points are pruning ratios; bands are 95% t intervals over seeds; the grey line joins the configurations no
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
front[["model", "dataset", "method", "lam", "setting_label", "prune_ratio", "n", "acc_final_mean", "acc_final_ci",
       "flops_mean", "params_mean"]]

# %% [markdown]
# ## Compared with the papers (where a reference row matches)

# %%
vs_paper if len(vs_paper) else Markdown("No collected configuration matches a reference row "
                                        "(references are CIFAR results; see results/reference/README.md).")

# %%
skipped if len(skipped) else Markdown("Every run is complete.")
