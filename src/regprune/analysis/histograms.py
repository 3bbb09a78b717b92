"""Distributions read off a saved model: BN scale factors |γ| of the gates, weight magnitudes |w| and
group (filter) magnitudes ‖w_g‖₂ — the quantities the TSMC 2024 framework compares across penalties.

Magnitude histograms use the convention of ``magnitudes.jsonl`` (written during training when
``magnitude_every`` > 0): log10 of the value over fixed edges, 0.1 decade from 1e-8 to 1e2, with exact
zeros and values outside the edges counted apart. Filters are dim-0 slices of every conv/linear weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.base import PrunableModel
from ..pruning.io import load_checkpoint, model_from_payload

LOG10_EDGES = (-8.0, 2.0, 100)  # min, max, bins of log10 magnitude
WEIGHT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


def load_model(path: str | Path) -> PrunableModel:
    """A model saved by a run (``model.pt``, ``trained.pt``) — spec + state dict, weights_only."""
    return model_from_payload(load_checkpoint(path))


@torch.no_grad()
def gate_gammas(model: PrunableModel) -> np.ndarray:
    """|γ| of every channel of every gate BN, concatenated in module order."""
    gates = [m.weight.detach().abs().flatten().double().cpu() for m in model.gate_modules().values()]
    return torch.cat(gates).numpy() if gates else np.zeros(0)


@torch.no_grad()
def weight_magnitudes(model: nn.Module) -> dict[str, np.ndarray]:
    """``weight``: |w| of every conv/linear weight; ``group``: ‖w_g‖₂ of every filter (output channel)."""
    weights = [m.weight.detach().double().cpu() for m in model.modules() if isinstance(m, WEIGHT_TYPES)]
    return {"weight": torch.cat([w.abs().flatten() for w in weights]).numpy(),
            "group": torch.cat([w.flatten(1).norm(dim=1) for w in weights]).numpy()}


def log10_edges(spec=LOG10_EDGES) -> np.ndarray:
    lo, hi, bins = spec
    return np.linspace(lo, hi, int(bins) + 1)


def log10_histogram(values: np.ndarray, spec=LOG10_EDGES) -> dict:
    """Counts of log10(values) over ``spec`` edges; exact zeros and out-of-range values apart."""
    v = np.asarray(values, dtype=np.float64).ravel()
    edges = log10_edges(spec)
    logs = np.log10(v[v > 0])
    counts, _ = np.histogram(logs, bins=edges)
    return {"counts": counts.tolist(), "zeros": int((v == 0).sum()), "under": int((logs < edges[0]).sum()),
            "over": int((logs > edges[-1]).sum())}


def read_magnitudes_jsonl(path: str | Path) -> list[dict]:
    """Lines of a run's ``magnitudes.jsonl`` that carry overall weight and group histograms, in file order.

    Each returned dict: phase, epoch, step, edges (log10 spec), and ``weight`` / ``group`` histograms
    ({counts, zeros, under, over}). Lines in another shape are skipped, so a newer format degrades to
    recomputing from the saved model instead of failing.
    """
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        try:
            row = json.loads(line)
            overall = row["overall"]
            spec = tuple(row.get("log10_edges", LOG10_EDGES))
            hists = {k: overall[f"{k}_hist"] for k in ("weight", "group")}
            if any(len(h["counts"]) != int(spec[2]) for h in hists.values()):
                continue
        except (ValueError, KeyError, TypeError, IndexError):
            continue
        out.append({"phase": row.get("phase"), "epoch": row.get("epoch"), "step": row.get("step"),
                    "edges": spec, **hists})
    return out


@torch.no_grad()
def sparsity(model: nn.Module, threshold: float = 0.009) -> dict[str, float]:
    """Percent of conv/linear weights with |w| < ``threshold`` and of filters whose every |w| is below it
    (Li, Hu et al. zero |w| < 0.009 before counting filter sparsity, papers.md §1), and exact zeros."""
    weights = [m.weight.detach().abs().flatten(1).cpu() for m in model.modules() if isinstance(m, WEIGHT_TYPES)]
    n_w = sum(w.numel() for w in weights)
    n_f = sum(w.shape[0] for w in weights)
    return {"weight_sparsity": 100.0 * sum(int((w == 0).sum()) for w in weights) / n_w,
            "weight_sparsity_thr": 100.0 * sum(int((w < threshold).sum()) for w in weights) / n_w,
            "filter_sparsity": 100.0 * sum(int((w.amax(1) == 0).sum()) for w in weights) / n_f,
            "filter_sparsity_thr": 100.0 * sum(int((w.amax(1) < threshold).sum()) for w in weights) / n_f}
