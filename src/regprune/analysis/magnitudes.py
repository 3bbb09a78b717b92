"""Magnitude framework (Li, Hu et al., TSMC 2024; docs/methods.md, Group sparsity on filters): how a penalty
shapes the distribution of weight magnitudes |w| and of group (filter) magnitudes during training.

Every ``magnitude_every`` epochs the runner appends one JSON line to ``magnitudes.jsonl`` in the run folder
(rewritten atomically; a resumed run replaces lines of epochs it repeats): per conv/linear layer and
overall, histograms of log10|w|, log10‖filter‖₂ (``group_hist``) and log10‖filter‖₁ (``group_hist_l1``, the
magnitude Li/Hu's penalties act on) over fixed edges (``LOG10_EDGES``, 0.1 decade from 1e-8 to 1e2, with the
counts of exact zeros and of values outside the edges kept separately), weight sparsity (exact zeros, and
|w| < 0.009 as Li/Hu zero them) and filter sparsity (filters entirely zero, and entirely below 0.009) over
every filter of every conv/linear layer. Filters are dim-0 slices (output channels) of each weight.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from ..tracking.record import RunRecord

LOG10_EDGES = (-8.0, 2.0, 100)  # min, max, bins
ZERO_THRESHOLD = 0.009  # Li, Hu et al. set every |w| below this to 0 before counting filter sparsity
WEIGHT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


def histogram(values: torch.Tensor) -> dict:
    """Counts of log10(values) over LOG10_EDGES; exact zeros and out-of-range values counted apart."""
    lo, hi, bins = LOG10_EDGES
    v = values.flatten().double()
    pos = v[v > 0].log10()
    return {"counts": torch.histc(pos, bins=bins, min=lo, max=hi).long().tolist(), "zeros": int((v == 0).sum()),
            "under": int((pos < lo).sum()), "over": int((pos > hi).sum())}


@torch.no_grad()
def layer_stats(w: torch.Tensor, threshold: float = ZERO_THRESHOLD) -> dict:
    a = w.detach().abs()
    per_filter = a.flatten(1) if a.dim() > 1 else a[:, None]
    peak = per_filter.amax(1)
    return {"weights": a.numel(), "zero": int((a == 0).sum()), "small": int((a < threshold).sum()),
            "filters": len(peak), "filters_zero": int((peak == 0).sum()),
            "filters_small": int((peak < threshold).sum()),
            "weight_hist": histogram(a), "group_hist": histogram(per_filter.pow(2).sum(1).sqrt()),
            "group_hist_l1": histogram(per_filter.sum(1))}


def summary(stats: dict) -> dict[str, float]:
    """Percentages of zero / small weights and of zero / small filters."""
    return {"weight_sparsity": 100.0 * stats["zero"] / stats["weights"],
            "weight_sparsity_thr": 100.0 * stats["small"] / stats["weights"],
            "filter_sparsity": 100.0 * stats["filters_zero"] / stats["filters"],
            "filter_sparsity_thr": 100.0 * stats["filters_small"] / stats["filters"]}


def _merge(hists: list[dict]) -> dict:
    return {"counts": [sum(c) for c in zip(*(h["counts"] for h in hists), strict=True)],
            **{k: sum(h[k] for h in hists) for k in ("zeros", "under", "over")}}


def magnitude_stats(model: nn.Module, threshold: float = ZERO_THRESHOLD) -> dict:
    """Per-layer and overall statistics of every conv/linear weight."""
    layers = {n: layer_stats(m.weight, threshold) for n, m in model.named_modules() if isinstance(m, WEIGHT_TYPES)}
    for s in layers.values():
        s.update(summary(s))
    total = {k: sum(s[k] for s in layers.values()) for k in ("weights", "zero", "small", "filters",
                                                               "filters_zero", "filters_small")}
    for key in ("weight_hist", "group_hist", "group_hist_l1"):
        total[key] = _merge([s[key] for s in layers.values()])
    total.update(summary(total))
    return {"log10_edges": list(LOG10_EDGES), "threshold": threshold, "overall": total, "layers": layers}


def append_jsonl(record: RunRecord, name: str, row: dict, key: tuple[str, ...]) -> None:
    """Append ``row`` to a JSON-lines file of the run, replacing any earlier line with the same ``key``."""
    path = record.path / name
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [ln for ln in lines if ln and tuple(json.loads(ln).get(k) for k in key) != tuple(row[k] for k in key)]
    record.write_text(name, "".join(f"{ln}\n" for ln in [*kept, json.dumps(row)]))


def record_magnitudes(record: RunRecord, logger, model: nn.Module, phase: str, epoch: int, step: int) -> dict:
    """Write one ``magnitudes.jsonl`` line and the histograms to the logger; return the overall summary."""
    stats = magnitude_stats(model)
    append_jsonl(record, "magnitudes.jsonl", {"phase": phase, "epoch": epoch, "step": step, **stats},
                 key=("phase", "epoch"))
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, WEIGHT_TYPES)]
    filters = [w.abs().flatten(1) if w.dim() > 1 else w.abs()[:, None] for w in weights]
    for tag, values in (("weight", torch.cat([w.flatten() for w in weights]).abs()),
                        ("group", torch.cat([f.pow(2).sum(1).sqrt() for f in filters])),
                        ("group_l1", torch.cat([f.sum(1) for f in filters]))):
        nonzero = values[values > 0]
        logger.histogram(f"{phase}/log10_{tag}_magnitude", nonzero.log10().float().cpu().numpy(), step=step)
    return {k: stats["overall"][k] for k in ("weight_sparsity", "weight_sparsity_thr", "filter_sparsity",
                                             "filter_sparsity_thr")}
