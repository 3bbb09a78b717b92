"""The scale-invariance critique (docs/methods.md, Scale invariance): rescale trained models at random without
changing their function, prune the same share of channels by each importance, and measure how much each
importance's choice and the accuracy right after pruning change.

A trial draws log α uniformly in [−log s, log s] (``spread`` s ≥ 1) per channel group (``scope=layer``) or per
channel (``scope=channel``), rescales a copy of the model (``pruning.rescale``), scores it, prunes the global
``ratio`` percentile (a layer that would be emptied keeps its best channel), compacts it and evaluates it. The
changed share is the part of the channels the importance prunes on the original model that it keeps on the
rescaled one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from ..engine.loop import evaluate  # noqa: E402
from ..models.base import PrunableModel  # noqa: E402
from ..pruning import Percentile, build_importance, compact, scores_of, select  # noqa: E402
from ..pruning.rescale import rescale_channels  # noqa: E402

SCOPES = ("layer", "channel")
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def random_factors(model: PrunableModel, spread: float, scope: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """α per channel group (``layer``) or per channel, log α ~ U[−log s, log s]."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r}: choose from {list(SCOPES)}")
    if not spread >= 1:
        raise ValueError(f"spread={spread} must be ≥ 1")
    out = {}
    for g in model.channel_groups():
        n = model.widths[g.width] if scope == "channel" else 1
        u = 2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1
        out[g.name] = torch.exp(u * math.log(spread)).expand(model.widths[g.width])
    return out


def pruned_channels(model: PrunableModel, importance: str, ratio: float, batches: Batches) -> dict[str, torch.Tensor]:
    """The channels (True) the global ``ratio`` percentile of ``importance`` removes."""
    result = select(scores_of(build_importance(importance), model, batches), Percentile(ratio), on_empty="keep_min")
    return {k: ~m for k, m in result.masks.items()}


def changed_share(base: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> float:
    """Share of the channels pruned in ``base`` that ``other`` keeps."""
    pruned = sum(int(m.sum()) for m in base.values())
    kept_now = sum(int((m & ~other[k]).sum()) for k, m in base.items())
    return kept_now / pruned if pruned else 0.0


def accuracy_pruned(model: PrunableModel, pruned: dict[str, torch.Tensor], test: Batches) -> float:
    return evaluate(compact(model, {k: ~m for k, m in pruned.items()}), test)["acc"]


def critique(model: PrunableModel, train: Batches, test: Batches, importances: list[str], ratio: float,
             spreads: list[float], trials: int, scope: str = "layer", seed: int = 0) -> list[dict]:
    """One row per (importance, spread, trial); spread 1 is the unrescaled model (trial 0 only)."""
    model = model.eval()
    base = {imp: pruned_channels(model, imp, ratio, train) for imp in importances}
    rows = [{"importance": imp, "spread": 1.0, "trial": 0, "changed": 0.0,
             "acc_pruned": accuracy_pruned(model, base[imp], test)} for imp in importances]
    gen = torch.Generator().manual_seed(seed)
    for spread in spreads:
        for trial in range(trials):
            scaled = copy.deepcopy(model)
            rescale_channels(scaled, random_factors(scaled, spread, scope, gen))
            for imp in importances:
                pruned = pruned_channels(scaled, imp, ratio, train)
                rows.append({"importance": imp, "spread": spread, "trial": trial,
                             "changed": changed_share(base[imp], pruned),
                             "acc_pruned": accuracy_pruned(scaled, pruned, test)})
    return rows


def mean_interval(values: pd.Series) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (0 for a single value)."""
    n = len(values)
    if n < 2:
        return float(values.mean()), 0.0
    return float(values.mean()), float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per importance and spread: mean ± 95% interval over trained models (``run``) of each model's mean over
    its trials."""
    per_model = rows.groupby(["importance", "spread", "run"], as_index=False)[["changed", "acc_pruned"]].mean()
    out = []
    for (imp, spread), group in per_model.groupby(["importance", "spread"]):
        changed, changed_ci = mean_interval(group["changed"])
        acc, acc_ci = mean_interval(group["acc_pruned"])
        out.append({"importance": imp, "spread": spread, "models": len(group), "changed": changed,
                    "changed_ci": changed_ci, "acc_pruned": acc, "acc_pruned_ci": acc_ci,
                    "acc_pruned_min": float(rows[(rows.importance == imp) & (rows.spread == spread)].acc_pruned.min())})
    return pd.DataFrame(out)


def markdown(summary: pd.DataFrame) -> str:
    lines = ["| importance | spread s | models | pruned choice changed (%) | acc right after pruning (%) "
             "| worst trial (%) |", "|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.importance} | {r.spread:g} | {r.models} | {100 * r.changed:.1f} ± {100 * r.changed_ci:.1f} "
                     f"| {r.acc_pruned:.2f} ± {r.acc_pruned_ci:.2f} | {r.acc_pruned_min:.2f} |")
    return "\n".join(lines) + "\n"


def figure(summary: pd.DataFrame, ratio: float, scope: str) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (imp, line) in enumerate(summary.groupby("importance")):
        line = line.sort_values("spread")
        color = f"C{i}"
        for ax, key, scale in ((axes[0], "changed", 100.0), (axes[1], "acc_pruned", 1.0)):
            mid, ci = scale * line[key], scale * line[f"{key}_ci"]
            ax.plot(line.spread, mid, marker="o", color=color, label=imp)
            ax.fill_between(line.spread, mid - ci, mid + ci, color=color, alpha=0.2)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("rescaling spread s (log α uniform in [−log s, log s])")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pruned channels that change (%)")
    axes[1].set_ylabel("test accuracy right after pruning (%)")
    axes[0].legend()
    fig.suptitle(f"Function-preserving rescalings ({scope}-wise), {100 * ratio:.0f}% of channels pruned; "
                 "mean and 95% interval over trained models")
    fig.tight_layout()
    return fig
