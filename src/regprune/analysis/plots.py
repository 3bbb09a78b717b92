"""The papers' figures from collected tables (``scripts/collect.py`` output), shared by
``scripts/make_figures.py`` and the notebooks. Every function takes DataFrames and returns a Figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False, "legend.fontsize": 8,
                     "legend.frameon": False})
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits", "synthetic": "synthetic"}


def title(model: str, dataset: str) -> str:
    return f"{model} on {DATASETS.get(dataset, dataset)}"


def method_label(regularizer: str, lam: float) -> str:
    if regularizer == "none":
        return "no penalty"
    return f"{regularizer} (λ={lam:g})"


def _lines(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per regularizer × λ (× setting when one penalty has several), in a stable order."""
    out = []
    for (reg, lam), rows in frame.groupby(["regularizer", "lam"], sort=True):
        settings = sorted(rows.setting.unique())
        for s in settings:
            label = method_label(reg, lam) + (f" [{s}]" if len(settings) > 1 else "")
            out.append((label, rows[rows.setting == s]))
    return out


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def pareto_front(flops: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats on both (fewer or equal FLOPs and higher or equal accuracy)."""
    flops, acc = np.asarray(flops, float), np.asarray(acc, float)
    keep = np.ones(len(flops), dtype=bool)
    for i in range(len(flops)):
        better = (flops <= flops[i]) & (acc >= acc[i]) & ((flops < flops[i]) | (acc > acc[i]))
        keep[i] = not better.any()
    return keep


def panels(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """Every model × dataset in the tables."""
    return sorted({(m, d) for m, d in zip(summary.model, summary.dataset, strict=True)})


def _panel(frame: pd.DataFrame, model: str, dataset: str) -> pd.DataFrame:
    return frame[(frame.model == model) & (frame.dataset == dataset)]


def _baselines(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[(summary.regularizer == "none") & (summary.schedule == "train")]


def _pruned(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary.prune_ratio.notna()].sort_values("prune_ratio")


def _trained(summary: pd.DataFrame) -> pd.DataFrame:
    """Runs without a prune phase (baselines and penalty-trained models)."""
    return summary[summary.prune_ratio.isna()]


STYLES, MARKERS = ["-", "--", ":", "-."], ["o", "s", "^", "D"]  # per regularizer × λ where colour means ratio
LABEL_OFFSETS = [(5, 5), (5, -12), (-30, 5), (-30, -12)]  # ratio labels of successive lines, in points


def acc_vs_flops(summary: pd.DataFrame, model: str, dataset: str, vs_paper: pd.DataFrame | None = None,
                 front: bool = False) -> plt.Figure:
    """Test accuracy after fine-tuning against FLOPs, one line per regularizer (points: pruning ratios)."""
    rows = _panel(summary, model, dataset)
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    pruned = _pruned(rows)
    trained = _trained(rows)
    for i, (label, line) in enumerate(_lines(pruned)):
        line = line.sort_values("flops_mean")
        ax.errorbar(line.flops_mean / 1e6, line.acc_final_mean, yerr=line.acc_final_std.fillna(0), marker="o",
                    color=_color(i), capsize=3, label=label)
        dx, dy = LABEL_OFFSETS[i % len(LABEL_OFFSETS)]
        for _, r in line.iterrows():
            ax.annotate(f"{r.prune_ratio:.0%}", (r.flops_mean / 1e6, r.acc_final_mean), textcoords="offset points",
                        xytext=(dx, dy), fontsize=7, color=_color(i))
        unpruned = trained[(trained.regularizer == line.regularizer.iloc[0]) & (trained.lam == line.lam.iloc[0])]
        ax.plot(unpruned.flops_mean / 1e6, unpruned.acc_final_mean, marker="o", mfc="white", color=_color(i),
                ls="none")
    if len(trained[trained.regularizer != "none"]):
        ax.plot([], [], marker="o", mfc="white", color="0.3", ls="none", label="penalty-trained, not pruned")
    for _, b in _baselines(rows).iterrows():
        ax.axhline(b.acc_final_mean, color="0.4", ls="--", lw=1)
        ax.plot(b.flops_mean / 1e6, b.acc_final_mean, marker="*", ms=12, color="0.3", ls="none",
                label=f"baseline ({b.acc_final_mean:.2f}%)")
    if front and len(pruned):
        mask = pareto_front(pruned.flops_mean, pruned.acc_final_mean)
        best = pruned[mask].sort_values("flops_mean")
        ax.plot(best.flops_mean / 1e6, best.acc_final_mean, color="k", lw=2, alpha=0.25, label="Pareto front")
    if vs_paper is not None and len(vs_paper):
        paper = _panel(vs_paper, model, dataset)
        acc = paper[paper.metric == "acc_final"]
        flops = paper[paper.metric == "flops"]
        both = acc.merge(flops, on=["source", "method", "prune_ratio"], suffixes=("_acc", "_flops"))
        both = both.drop_duplicates(["source", "method", "prune_ratio"])
        for _, p in both.iterrows():
            label = "paper baseline" if p.method == "baseline" else f"paper {p.method} {p.prune_ratio:.0%}"
            ax.plot(p.paper_flops / 1e6, p.paper_acc, marker="D", mfc="none", color="k", ls="none", label=label)
    flops = rows.flops_mean.dropna()
    if len(flops) and flops.max() > 20 * flops.min():
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.margins(y=0.08)
    ax.set_xlabel("FLOPs per image (millions, = 2 × MACs)")
    ax.set_ylabel("test accuracy after fine-tuning (%)")
    ax.set_title(f"Accuracy vs FLOPs — {title(model, dataset)}\n(mean ± std over seeds; labels: channels pruned)")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def acc_vs_ratio(summary: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Accuracy right after pruning (dashed) and after fine-tuning (solid) against the pruning ratio."""
    rows = _panel(summary, model, dataset)
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    for i, (label, line) in enumerate(_lines(_pruned(rows))):
        # 0% = the penalty-trained model before pruning (every pruned run records its accuracy)
        x = np.concatenate([[0.0], 100 * line.prune_ratio.to_numpy()])
        trained = line.acc_trained_final_mean.iloc[0]
        std0 = line.acc_trained_final_std.fillna(0).iloc[0]
        ax.errorbar(x, np.concatenate([[trained], line.acc_final_mean]), marker="o", color=_color(i), capsize=3,
                    yerr=np.concatenate([[std0], line.acc_final_std.fillna(0)]), label=f"{label}: fine-tuned")
        ax.errorbar(x, np.concatenate([[trained], line.acc_pruned_mean]), marker="s", mfc="none", ls="--",
                    yerr=np.concatenate([[std0], line.acc_pruned_std.fillna(0)]), color=_color(i), capsize=3,
                    label=f"{label}: just pruned")
    for _, b in _baselines(rows).iterrows():
        ax.axhline(b.acc_final_mean, color="0.4", ls=":", lw=1.2, label=f"baseline ({b.acc_final_mean:.2f}%)")
    ax.set_xlabel("channels pruned (%)  [0% = penalty-trained model]")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Accuracy right after pruning and after fine-tuning — {title(model, dataset)}")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def gamma_histograms(gamma: pd.DataFrame, model: str, dataset: str, stage: str = "trained") -> plt.Figure:
    """|γ| of the gate BNs after training (``stage="final"``: of the pruned, fine-tuned model), one step
    histogram per regularizer (each model once; counts summed over seeds); dashed: the initial γ."""
    rows = _panel(gamma, model, dataset)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    trained = rows[rows.stage == stage].drop_duplicates(["source", "left"])
    for i, (label, line) in enumerate(_lines(trained)):
        counts = line.groupby("left", sort=True)["count"].sum()
        right = line.groupby("left", sort=True)["right"].first()
        edges = np.append(counts.index.values, right.values[-1])
        n_models = line.source.nunique()
        ax.stairs(counts.values, edges, color=_color(i), lw=1.6,
                  label=f"{label}" + (f" ({n_models} models)" if n_models > 1 else ""))
    for value in sorted(rows.bn_init.dropna().unique()) if "bn_init" in rows else []:
        ax.axvline(value, color="0.3", ls="--", lw=1, label=f"initial γ = {value:g}")
    ax.set_yscale("log")
    ax.set_xlabel("|γ| (BatchNorm scale factor of a prunable channel)")
    ax.set_ylabel("channels (log scale)")
    what = "after training" if stage == "trained" else "final (pruned, fine-tuned) model"
    ax.set_title(f"Scaling factors {what} — {title(model, dataset)}")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def kept_channels(kept: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Channels kept per layer (mean over seeds), one line per regularizer × pruning ratio."""
    rows = _panel(kept, model, dataset)
    layers = rows.drop_duplicates("layer_index").sort_values("layer_index")
    fig, ax = plt.subplots(figsize=(max(6.4, 0.32 * len(layers) + 2) + 2.5, 4.4))
    ax.bar(layers.layer_index, layers.total, color="0.88", label="channels before pruning")
    ratios = sorted(rows.prune_ratio.unique())
    cmap = plt.get_cmap("viridis")
    for i, (label, line) in enumerate(_lines(rows)):
        for ratio, part in line.groupby("prune_ratio", sort=True):
            mean = part.groupby("layer_index", sort=True)["kept"].mean()
            shade = cmap(0.85 * ratios.index(ratio) / max(len(ratios) - 1, 1))
            ax.plot(mean.index, mean.values, marker=MARKERS[i % len(MARKERS)], ms=4, color=shade,
                    ls=STYLES[i % len(STYLES)], label=f"{label}, {ratio:.0%} pruned")
    ax.set_xticks(layers.layer_index, layers.layer, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("prunable layer (gate BatchNorm)")
    ax.set_ylabel("channels kept")
    ax.set_title(f"Channels kept per layer (mean over seeds) — {title(model, dataset)}")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def magnitude_distributions(mags: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Distributions of weight magnitudes |w| and group (filter) magnitudes ‖w_g‖₂ after penalty training,
    one line per penalty (share of all weights / filters per 0.1 decade; exact zeros in the legend)."""
    rows = _panel(mags, model, dataset).drop_duplicates(["source", "kind", "log10_left"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind, what in ((axes[0], "weight", "|w| (single weights)"), (axes[1], "group", "‖w_g‖₂ (filters)")):
        part = rows[rows.kind == kind]
        for i, (label, line) in enumerate(_lines(part)):
            counts = line.groupby("log10_left", sort=True)["count"].sum()
            per_model = line.drop_duplicates("source")
            total = counts.sum() + per_model.zeros.sum() + per_model.under.sum() + per_model.over.sum()
            width = float(line.log10_right.iloc[0] - line.log10_left.iloc[0])
            edges = np.append(counts.index.values, counts.index.values[-1] + width)
            zeros = 100 * per_model.zeros.sum() / total if total else 0.0
            ax.stairs(counts.values / max(total, 1), edges, color=_color(i), lw=1.5,
                      label=f"{label}; exact zeros {zeros:.1f}%")
        nonzero = rows[(rows.kind == kind) & (rows["count"] > 0)]
        if len(nonzero):
            ax.set_xlim(nonzero.log10_left.min() - 0.5, nonzero.log10_right.max() + 0.5)
        ax.set_xlabel(f"log10 {what}")
        ax.set_ylabel("share per 0.1-decade bin")
        ax.set_title(f"{'Weight' if kind == 'weight' else 'Group'} magnitudes")
        ax.legend(loc="upper left")
    fig.suptitle(f"Magnitude distributions after penalty training — {title(model, dataset)}")
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, out: str | Path, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.pdf to ``out``; close the figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths
