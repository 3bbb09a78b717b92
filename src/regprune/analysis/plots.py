"""Figures from collected tables (``scripts/collect.py`` output), shared by ``scripts/make_figures.py`` and the
notebooks. Every function takes DataFrames and returns a Figure. A method has one colour in every figure
(``analysis.labels``); bands and error bars are 95% Student-t intervals over seeds (``analysis.stats``);
figures with many methods become small multiples, one panel per method, each with its own axis labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import labels
from .summary import REFERENCE, unpruned

plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False, "legend.fontsize": 8,
                     "legend.frameon": False})
MANY = 6  # more lines than this in one axes: one panel per method
VARIANTS = [("o", "-"), ("^", ":"), ("v", "-."), ("D", (0, (5, 1)))]  # markers / styles of a method's 2nd, 3rd λ
REFERENCE_GREY, BASELINE_GREY = "0.6", "0.35"
ACC = "test accuracy (%)"
RATIO = "channels pruned (%)"


@dataclass
class Line:
    """One method × λ × setting: its summary rows, legend label and style."""

    method: str
    label: str
    style: dict
    rows: pd.DataFrame


def lines(frame: pd.DataFrame) -> list[Line]:
    """The lines of a figure in the tables' order; a method's further λ or settings keep its colour and change
    marker and line style."""
    out: list[Line] = []
    keys = ["regularizer", "lam", "setting"]
    groups = sorted(frame.groupby(keys, sort=False), key=lambda kv: (labels.order(kv[0][0]), kv[0][1], kv[0][2]))
    for (method, lam, _), rows in groups:
        variant = sum(line.method == method for line in out)
        style = labels.style(method)
        if variant:
            marker, ls = VARIANTS[variant % len(VARIANTS)]
            style = {**style, "marker": marker, "ls": ls}
        text = labels.with_lam(method, lam, rows.schedule.iloc[0])
        extra = rows.setting_label.iloc[0] if "setting_label" in rows and isinstance(
            rows.setting_label.iloc[0], str) else ""
        out.append(Line(method, text + (f" [{extra}]" if extra else ""), style, rows))
    return out


def panels(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """Every model × dataset in the tables."""
    return sorted({(m, d) for m, d in zip(summary.model, summary.dataset, strict=True)})


def _panel(frame: pd.DataFrame, model: str, dataset: str) -> pd.DataFrame:
    return frame[(frame.model == model) & (frame.dataset == dataset)]


def _baselines(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[(summary.regularizer == labels.BASELINE) & unpruned(summary)]


def _pruned(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary.prune_ratio.notna()].sort_values("prune_ratio")


def _grid(n: int, ncols: int = 4, size: tuple[float, float] = (3.4, 2.7)) -> tuple[plt.Figure, list]:
    """``n`` panels in rows of ``ncols`` (the unused ones hidden), shared axes."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.9), squeeze=False,
                             sharex=True, sharey=True)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax in flat[:n]:  # labels on every panel, ticks too
        ax.tick_params(labelbottom=True, labelleft=True)
    return fig, flat[:n]


def band(ax, x, mean, ci, n, style: dict, label: str | None = None, interval: bool = True) -> None:
    """A line of means with its 95% interval: a shaded band through three or more points, else error bars; no
    interval where n < 2. Drawn within 0–100% (an accuracy interval can reach past it; the tables hold it)."""
    x, mean, ci = (np.asarray(v, dtype=float) for v in (x, mean, ci))
    ci = np.where(np.asarray(n, dtype=float) >= 2, ci, np.nan)
    ax.plot(x, mean, ms=4.5, lw=1.5, label=label, **style)
    has = np.isfinite(ci)
    if not interval or not has.any():
        return
    lo, hi = np.clip(mean - ci, 0, 100), np.clip(mean + ci, 0, 100)
    if len(x) > 2:
        ax.fill_between(x, np.where(has, lo, mean), np.where(has, hi, mean), color=style["color"], alpha=0.15,
                        lw=0)
    else:
        ax.errorbar(x[has], mean[has], yerr=[(mean - lo)[has], (hi - mean)[has]], color=style["color"], ls="none",
                    capsize=3, lw=1)


def accuracy_axis(ax, means) -> None:
    """0–100% scale cut 10 points below the lowest mean shown."""
    low = np.nanmin(np.asarray(means, dtype=float)) if len(means) else 0.0
    ax.set_ylim(max(0.0, np.floor(low / 10) * 10 - 10) if np.isfinite(low) else 0.0, 101)


def baseline_band(ax, summary: pd.DataFrame, with_label: bool = True) -> None:
    """The unpenalised baseline's accuracy: a dashed line and its interval."""
    for _, b in _baselines(summary).iterrows():
        ax.axhline(b.acc_final_mean, color=BASELINE_GREY, ls="--", lw=1,
                   label=f"baseline {b.acc_final_mean:.2f}% (n={b.n})" if with_label else None)
        if b.n >= 2 and np.isfinite(b.acc_final_ci):
            ax.axhspan(b.acc_final_mean - b.acc_final_ci, b.acc_final_mean + b.acc_final_ci, color=BASELINE_GREY,
                       alpha=0.12, lw=0)


def _reference(rows: pd.DataFrame, pruned: list[Line]) -> list[Line]:
    """The reference method's line (the first, if it has several λ), drawn in grey in the other panels."""
    name = rows.reference.iloc[0] if "reference" in rows and len(rows) else REFERENCE
    return [line for line in pruned if line.method == name][:1]


def _metric(rows: pd.DataFrame, metric: str) -> tuple:
    return rows[f"{metric}_mean"], rows[f"{metric}_ci"], rows[f"{metric}_n"]


def _has(rows: pd.DataFrame, metric: str) -> bool:
    return f"{metric}_n" in rows and (rows[f"{metric}_n"].fillna(0) > 0).any()


def acc_vs_flops(summary: pd.DataFrame, model: str, dataset: str, vs_paper: pd.DataFrame | None = None,
                 front: bool = False) -> plt.Figure:
    """Final test accuracy (after fine-tuning) against FLOPs, one line per method through its pruning ratios,
    with 95% bands; hollow: the penalty-trained model before pruning; dashed: the baseline."""
    rows = _panel(summary, model, dataset)
    pruned = lines(_pruned(rows))
    trained = rows[unpruned(rows)]
    many = len(pruned) > MANY
    if many:
        fig, axes = _grid(len(pruned))
    else:
        fig, ax = plt.subplots(figsize=(7.4, 4.8))
        axes = [ax] * len(pruned) or [ax]
    reference = _reference(rows, pruned)
    for ax, line in zip(axes, pruned, strict=False):
        if many:
            for ref in reference if line not in reference else []:
                r = ref.rows.sort_values("flops_mean")
                ax.plot(r.flops_mean / 1e6, r.acc_final_mean, color=REFERENCE_GREY, lw=1.2, marker=".",
                        label=ref.label)
        r = line.rows.sort_values("flops_mean")
        band(ax, r.flops_mean / 1e6, *_metric(r, "acc_final"), line.style, line.label)
        if not many:
            for _, p in r.iterrows():
                ax.annotate(f"{p.prune_ratio:.0%}", (p.flops_mean / 1e6, p.acc_final_mean), fontsize=7,
                            textcoords="offset points", xytext=(4, 4), color=line.style["color"])
        own = trained[(trained.regularizer == line.method) & (trained.lam == line.rows.lam.iloc[0])]
        ax.plot(own.flops_mean / 1e6, own.acc_final_mean, marker="o", mfc="white", ls="none",
                color=line.style["color"])
    if vs_paper is not None and len(vs_paper):
        paper_points(axes[0], _panel(vs_paper, model, dataset))
    if front and len(pruned):
        p = _pruned(rows)
        best = p[pareto_front(p.flops_mean, p.acc_final_mean)].sort_values("flops_mean")
        axes[0].plot(best.flops_mean / 1e6, best.acc_final_mean, color="k", lw=2, alpha=0.25, label="Pareto front")
    flops = rows.flops_mean.dropna()
    shown = pd.concat([rows.acc_final_mean, _baselines(rows).acc_final_mean])
    for ax in dict.fromkeys(axes):
        baseline_band(ax, rows)
        accuracy_axis(ax, shown)
        if len(flops) and flops.max() > 20 * flops.min():
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("MFLOPs per image")
        ax.set_ylabel("final " + ACC)
    what = (f"Final accuracy vs FLOPs — {labels.title(model, dataset)}: mean over seeds, band / bars: 95% t "
            "interval (drawn within 0–100%)")
    if many:
        for ax, line in zip(axes, pruned, strict=False):
            ax.set_title(line.label, fontsize=9, color=line.style["color"])
        fig.suptitle(f"{what}\n(grey: {reference[0].label if reference else 'reference'}; dashed: baseline; "
                     "hollow: penalty-trained, not pruned; points: 30/50/70% of channels pruned)", fontsize=10)
    else:
        axes[0].set_title(f"{what}\n(labels: channels pruned; hollow: penalty-trained, not pruned)", fontsize=9)
        axes[0].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def paper_points(ax, paper: pd.DataFrame) -> None:
    acc = paper[paper.metric == "acc_final"]
    flops = paper[paper.metric == "flops"]
    both = acc.merge(flops, on=["source", "method", "prune_ratio"], suffixes=("_acc", "_flops"))
    for _, p in both.drop_duplicates(["source", "method", "prune_ratio"]).iterrows():
        label = "paper baseline" if p.method == "baseline" else f"paper {p.method} {p.prune_ratio:.0%}"
        ax.plot(p.paper_flops / 1e6, p.paper_acc, marker="D", mfc="none", color="k", ls="none", label=label)


# metric, legend, line style, marker, whether its interval is drawn (the fine-tuned one is in acc_vs_flops)
STAGES = [("acc_pruned", "right after pruning", "-", "o", True),
          ("acc_pruned_recal", "+ adaptive BN", "--", "s", True),
          ("acc_recalibrated", "BN recalibrated (phase)", "--", "s", True),
          ("acc_finetuned_final", "fine-tuned", ":", "^", False)]


def acc_vs_ratio(summary: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Per method: test accuracy right after pruning, with adaptive-BN recalibration, and fine-tuned, against the
    share of channels pruned (0% = the penalty-trained model), with 95% bands; grey: the reference method right
    after pruning; hollow markers: the masked model where it differs from the compacted one."""
    rows = _panel(summary, model, dataset)
    pruned = lines(_pruned(rows))
    fig, axes = _grid(max(len(pruned), 1), ncols=min(4, max(len(pruned), 1)))
    reference = _reference(rows, pruned)
    stages = [s for s in STAGES if _has(rows, s[0])]
    for ax, line in zip(axes, pruned, strict=False):
        r = line.rows.sort_values("prune_ratio")
        start = (r.acc_trained_final_mean.iloc[0], r.acc_trained_final_ci.iloc[0], r.acc_trained_final_n.iloc[0])
        x = np.concatenate([[0.0], 100 * r.prune_ratio.to_numpy()])
        for ref in reference if line is not reference[0] else []:
            q = ref.rows.sort_values("prune_ratio")
            ax.plot(np.concatenate([[0.0], 100 * q.prune_ratio]), [q.acc_trained_final_mean.iloc[0],
                    *q.acc_pruned_mean], color=REFERENCE_GREY, lw=1.2, marker=".", label=f"{ref.label}, pruned")
        for metric, what, ls, marker, interval in stages:
            mean, ci, n = _metric(r, metric)
            band(ax, x, [start[0], *mean], [start[1], *ci], [start[2], *n],
                 {"color": line.style["color"], "ls": ls, "marker": marker}, what, interval)
        if (r.get("pruned_masked_gap_max", pd.Series(dtype=float)).fillna(0) > 0).any():
            ax.plot(100 * r.prune_ratio, r.acc_pruned_masked_mean, ls="none", marker="o", mfc="white", ms=7,
                    color=line.style["color"], label="masked (differs)")
        baseline_band(ax, rows, with_label=False)
        ax.set_ylim(0, 101)
        ax.set_xlim(-3, 100 * max(rows.prune_ratio.max(), 0.1) + 5)
        ax.set_title(line.label, fontsize=9, color=line.style["color"])
        ax.set_xlabel(RATIO)
        ax.set_ylabel(ACC)
    handles = [plt.Line2D([], [], color="0.2", ls=ls, marker=m, label=w + ("" if band_ else " (no band)"))
               for _, w, ls, m, band_ in stages]
    handles += [plt.Line2D([], [], color=REFERENCE_GREY, marker=".", label=f"{reference[0].label}: right after "
                           "pruning")] if reference else []
    handles += [plt.Line2D([], [], color=BASELINE_GREY, ls="--", label="baseline (band: 95% interval)")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, 0.0), fontsize=8)
    fig.suptitle(f"Accuracy right after pruning, with adaptive BN, and fine-tuned — {labels.title(model, dataset)}"
                 "\n(0% = penalty-trained model; mean over seeds, bands: 95% t interval, drawn within 0–100%)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def gamma_histograms(gamma: pd.DataFrame, model: str, dataset: str, stage: str = "trained") -> plt.Figure:
    """|γ| of the gate BNs after training (``stage="final"``: of the pruned, fine-tuned model), one panel per
    method (counts summed over its models = seeds), the baseline's in grey behind, the initial γ dashed; the
    title counts the γ that are exactly 0."""
    rows = _panel(gamma, model, dataset)
    chosen = rows[rows.stage == stage].drop_duplicates(["source", "left"])
    every = lines(chosen)
    base = [line for line in every if line.method == labels.BASELINE]
    methods = [line for line in every if line.method != labels.BASELINE] or base
    fig, axes = _grid(len(methods), ncols=min(4, len(methods)))
    for ax, line in zip(axes, methods, strict=True):
        for b in base if line.method != labels.BASELINE else []:
            ax.stairs(*_stairs(b.rows), color="0.8", fill=True, label="no penalty")
        ax.stairs(*_stairs(line.rows), color=line.style["color"], lw=1.6, label=line.label)
        for value in sorted(rows.bn_init.dropna().unique()) if "bn_init" in rows else []:
            ax.axvline(value, color="0.3", ls="--", lw=1)
        models = line.rows.drop_duplicates("source")
        total = int(line.rows["count"].sum())
        zeros = int(models.zeros.sum()) if "zeros" in models else 0
        ax.set_title(f"{line.label}\n{len(models)} model(s); γ = 0 exactly: {zeros} of {total}", fontsize=8,
                     color=line.style["color"])
        ax.set_yscale("log")
        ax.set_xlim(0, 1.05 * chosen[chosen["count"] > 0].right.max())
        ax.set_xlabel("|γ|")
        ax.set_ylabel("channels")
    what = "after penalty training" if stage == "trained" else "of the pruned, fine-tuned models"
    fig.suptitle(f"BatchNorm scale factors |γ| of prunable channels {what} — {labels.title(model, dataset)}\n"
                 "(grey: no penalty; dashed: initial γ; channels on a log scale)", fontsize=10)
    fig.tight_layout()
    return fig


def _stairs(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of a histogram stored as rows (left, right, count), summed over its models."""
    counts = rows.groupby("left", sort=True)["count"].sum()
    right = rows.groupby("left", sort=True)["right"].first()
    return counts.values, np.append(counts.index.values, right.values[-1])


def kept_channels(kept: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Channels kept per layer (mean over seeds): one panel per pruning ratio, one line per method."""
    rows = _panel(kept, model, dataset)
    layers = rows.drop_duplicates("layer_index").sort_values("layer_index")
    ratios = sorted(rows.prune_ratio.unique())
    width = max(4.0, 0.3 * len(layers) + 1.5)
    fig, axes = plt.subplots(1, len(ratios), figsize=(width * len(ratios) + 2.5, 4.4), sharey=True, squeeze=False)
    for ax, ratio in zip(axes[0], ratios, strict=True):
        ax.bar(layers.layer_index, layers.total, color="0.88", label="channels before pruning")
        for line in lines(rows):
            mean = line.rows[line.rows.prune_ratio == ratio].groupby("layer_index", sort=True)["kept"].mean()
            ax.plot(mean.index, mean.values, ms=4, lw=1.3, label=line.label, **line.style)
        ax.set_xticks(layers.layer_index, layers.layer, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("prunable layer (gate BatchNorm)")
        ax.set_ylabel("channels kept")
        ax.yaxis.set_tick_params(labelleft=True)
        ax.set_title(f"{ratio:.0%} of channels pruned")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Channels kept per layer (mean over seeds) — {labels.title(model, dataset)}")
    fig.tight_layout()
    return fig


def magnitude_distributions(mags: pd.DataFrame, model: str, dataset: str) -> plt.Figure:
    """Distributions of weight magnitudes |w| and group (filter) magnitudes ‖w_g‖₂ after penalty training,
    one line per method (share of all weights / filters per 0.1 decade; exact zeros in the legend)."""
    rows = _panel(mags, model, dataset).drop_duplicates(["source", "kind", "log10_left"])
    many = len(lines(rows[rows.kind == "weight"])) > MANY  # then one panel above the other, legends beside
    fig, axes = plt.subplots(2, 1, figsize=(9, 9)) if many else plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind, what in ((axes[0], "weight", "|w| (single weights)"), (axes[1], "group", "‖w_g‖₂ (filters)")):
        for line in lines(rows[rows.kind == kind]):
            counts = line.rows.groupby("log10_left", sort=True)["count"].sum()
            per_model = line.rows.drop_duplicates("source")
            total = counts.sum() + per_model.zeros.sum() + per_model.under.sum() + per_model.over.sum()
            width = float(line.rows.log10_right.iloc[0] - line.rows.log10_left.iloc[0])
            edges = np.append(counts.index.values, counts.index.values[-1] + width)
            zeros = 100 * per_model.zeros.sum() / total if total else 0.0
            ax.stairs(counts.values / max(total, 1), edges, color=line.style["color"], ls=line.style["ls"], lw=1.5,
                      label=f"{line.label}; exact zeros {zeros:.1f}%")
        nonzero = rows[(rows.kind == kind) & (rows["count"] > 0)]
        if len(nonzero):
            ax.set_xlim(nonzero.log10_left.min() - 0.5, nonzero.log10_right.max() + 0.5)
        ax.set_xlabel(f"log10 {what}")
        ax.set_ylabel("share per 0.1-decade bin")
        ax.set_title(f"{'Weight' if kind == 'weight' else 'Group'} magnitudes")
        ax.legend(**({"loc": "center left", "bbox_to_anchor": (1.02, 0.5)} if many else {"loc": "upper left"}))
    fig.suptitle(f"Magnitude distributions after penalty training — {labels.title(model, dataset)}")
    fig.tight_layout()
    return fig


def pareto_front(flops: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats on both (fewer or equal FLOPs and higher or equal accuracy)."""
    flops, acc = np.asarray(flops, float), np.asarray(acc, float)
    keep = np.ones(len(flops), dtype=bool)
    for i in range(len(flops)):
        better = (flops <= flops[i]) & (acc >= acc[i]) & ((flops < flops[i]) | (acc > acc[i]))
        keep[i] = not better.any()
    return keep


def save(fig: plt.Figure, out: str | Path, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.pdf to ``out``; close the figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths
