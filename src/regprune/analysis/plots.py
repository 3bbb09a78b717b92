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


def _style(i: int) -> dict:
    """Colour, line style and marker of line ``i``: after the 10 colours, the styles change."""
    k = (i // len(COLORS)) % len(STYLES)
    return {"color": _color(i), "ls": STYLES[k], "marker": MARKERS[k]}


def _grid(n: int, ncols: int = 4, size: tuple[float, float] = (3.2, 2.4)) -> tuple[plt.Figure, list]:
    """``n`` small panels in rows of ``ncols`` (the unused ones hidden), for figures with many methods."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


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


STYLES, MARKERS = ["-", "--", "-.", ":"], ["o", "s", "^", "D"]
LABEL_OFFSETS = [(5, 5), (5, -12), (-30, 5), (-30, -12)]  # ratio labels of successive lines, in points
MANY = 6  # more methods than this in one figure: no ratio labels, small multiples where lines would pile up


def acc_vs_flops(summary: pd.DataFrame, model: str, dataset: str, vs_paper: pd.DataFrame | None = None,
                 front: bool = False) -> plt.Figure:
    """Test accuracy after fine-tuning against FLOPs, one line per regularizer (points: pruning ratios)."""
    rows = _panel(summary, model, dataset)
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    pruned = _pruned(rows)
    trained = _trained(rows)
    lines = _lines(pruned)
    for i, (label, line) in enumerate(lines):
        line = line.sort_values("flops_mean")
        ax.errorbar(line.flops_mean / 1e6, line.acc_final_mean, yerr=line.acc_final_std.fillna(0), **_style(i),
                    capsize=3, label=label)
        dx, dy = LABEL_OFFSETS[i % len(LABEL_OFFSETS)]
        for _, r in line.iterrows() if len(lines) <= MANY else ():
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
    labels = "labels: channels pruned" if len(lines) <= MANY else "points: pruning ratios"
    ax.set_title(f"Accuracy vs FLOPs — {title(model, dataset)}\n(mean ± std over seeds; {labels})")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def acc_vs_ratio(summary: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Accuracy right after pruning (left) and after fine-tuning (right) against the pruning ratio; 0% is
    the penalty-trained model before pruning (every pruned run records its accuracy)."""
    rows = _panel(summary, model, dataset)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, metric, what in ((axes[0], "acc_pruned", "right after pruning"), (axes[1], "acc_final", "fine-tuned")):
        for i, (label, line) in enumerate(_lines(_pruned(rows))):
            x = np.concatenate([[0.0], 100 * line.prune_ratio.to_numpy()])
            y = np.concatenate([[line.acc_trained_final_mean.iloc[0]], line[f"{metric}_mean"]])
            err = np.concatenate([[line.acc_trained_final_std.iloc[0]], line[f"{metric}_std"]])
            ax.errorbar(x, y, yerr=np.nan_to_num(err), **_style(i), capsize=3, label=label)
        for _, b in _baselines(rows).iterrows():
            ax.axhline(b.acc_final_mean, color="0.4", ls=":", lw=1.2, label=f"baseline ({b.acc_final_mean:.2f}%)")
        ax.set_xlabel("channels pruned (%)  [0% = penalty-trained model]")
        ax.set_title(f"test accuracy {what}")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(bottom=0)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Accuracy right after pruning and after fine-tuning — {title(model, dataset)}")
    fig.tight_layout()
    return fig


def gamma_histograms(gamma: pd.DataFrame, model: str, dataset: str, stage: str = "trained") -> plt.Figure:
    """|γ| of the gate BNs after training (``stage="final"``: of the pruned, fine-tuned model), one step
    histogram per regularizer (each model once; counts summed over seeds); dashed: the initial γ. With many
    regularizers, one small panel each, the unpenalised models in grey behind."""
    rows = _panel(gamma, model, dataset)
    chosen = rows[rows.stage == stage].drop_duplicates(["source", "left"])
    lines = _lines(chosen)
    what = "after training" if stage == "trained" else "final (pruned, fine-tuned) model"
    if len(lines) <= MANY:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        axes = [ax] * len(lines)
    else:
        fig, axes = _grid(len(lines))
        reference = [line for label, line in lines if line.regularizer.iloc[0] == "none"]
    for i, (ax, (label, line)) in enumerate(zip(axes, lines, strict=True)):
        n_models = line.source.nunique()
        label += f" ({n_models} models)" if n_models > 1 else ""
        if len(lines) > MANY:
            for ref in reference:
                ax.stairs(*_stairs(ref), color="0.75", lw=1.2, fill=True)
            ax.set_title(label, fontsize=9)
        ax.stairs(*_stairs(line), color=_color(i), lw=1.6, label=label)
        for value in sorted(rows.bn_init.dropna().unique()) if "bn_init" in rows else []:
            ax.axvline(value, color="0.3", ls="--", lw=1, label=f"initial γ = {value:g}" if i == 0 else None)
        ax.set_yscale("log")
    if len(lines) <= MANY:
        axes[0].set_xlabel("|γ| (BatchNorm scale factor of a prunable channel)")
        axes[0].set_ylabel("channels (log scale)")
        axes[0].set_title(f"Scaling factors {what} — {title(model, dataset)}")
        axes[0].legend(loc="best")
    else:
        fig.suptitle(f"Scaling factors {what} — {title(model, dataset)}: |γ| of prunable channels, channels on a "
                     "log scale (grey: no penalty; dashed: initial γ)")
    fig.tight_layout()
    return fig


def _stairs(line: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of a histogram stored as rows (left, right, count), summed over its models."""
    counts = line.groupby("left", sort=True)["count"].sum()
    right = line.groupby("left", sort=True)["right"].first()
    return counts.values, np.append(counts.index.values, right.values[-1])


def kept_channels(kept: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Channels kept per layer (mean over seeds): one panel per pruning ratio, one line per regularizer."""
    rows = _panel(kept, model, dataset)
    layers = rows.drop_duplicates("layer_index").sort_values("layer_index")
    ratios = sorted(rows.prune_ratio.unique())
    width = max(4.0, 0.3 * len(layers) + 1.5)
    fig, axes = plt.subplots(1, len(ratios), figsize=(width * len(ratios) + 2.5, 4.4), sharey=True, squeeze=False)
    lines = _lines(rows)
    for ax, ratio in zip(axes[0], ratios, strict=True):
        ax.bar(layers.layer_index, layers.total, color="0.88", label="channels before pruning")
        for i, (label, line) in enumerate(lines):
            mean = line[line.prune_ratio == ratio].groupby("layer_index", sort=True)["kept"].mean()
            ax.plot(mean.index, mean.values, ms=4, lw=1.3, **_style(i), label=label)
        ax.set_xticks(layers.layer_index, layers.layer, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("prunable layer (gate BatchNorm)")
        ax.set_title(f"{ratio:.0%} of channels pruned")
    axes[0][0].set_ylabel("channels kept")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Channels kept per layer (mean over seeds) — {title(model, dataset)}")
    fig.tight_layout()
    return fig


def magnitude_distributions(mags: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Distributions of weight magnitudes |w| and group (filter) magnitudes ‖w_g‖₂ after penalty training,
    one line per penalty (share of all weights / filters per 0.1 decade; exact zeros in the legend)."""
    rows = _panel(mags, model, dataset).drop_duplicates(["source", "kind", "log10_left"])
    many = len(_lines(rows[rows.kind == "weight"])) > MANY  # then one panel above the other, legends beside
    fig, axes = plt.subplots(2, 1, figsize=(9, 9)) if many else plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind, what in ((axes[0], "weight", "|w| (single weights)"), (axes[1], "group", "‖w_g‖₂ (filters)")):
        part = rows[rows.kind == kind]
        for i, (label, line) in enumerate(_lines(part)):
            counts = line.groupby("log10_left", sort=True)["count"].sum()
            per_model = line.drop_duplicates("source")
            total = counts.sum() + per_model.zeros.sum() + per_model.under.sum() + per_model.over.sum()
            width = float(line.log10_right.iloc[0] - line.log10_left.iloc[0])
            edges = np.append(counts.index.values, counts.index.values[-1] + width)
            zeros = 100 * per_model.zeros.sum() / total if total else 0.0
            ax.stairs(counts.values / max(total, 1), edges, color=_color(i), ls=_style(i)["ls"], lw=1.5,
                      label=f"{label}; exact zeros {zeros:.1f}%")
        nonzero = rows[(rows.kind == kind) & (rows["count"] > 0)]
        if len(nonzero):
            ax.set_xlim(nonzero.log10_left.min() - 0.5, nonzero.log10_right.max() + 0.5)
        ax.set_xlabel(f"log10 {what}")
        ax.set_ylabel("share per 0.1-decade bin")
        ax.set_title(f"{'Weight' if kind == 'weight' else 'Group'} magnitudes")
        ax.legend(**({"loc": "center left", "bbox_to_anchor": (1.02, 0.5)} if many else {"loc": "upper left"}))
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
