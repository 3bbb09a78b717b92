"""Distributions read off saved models and run records: BN scale factors |γ| of the gates, and the weight /
group magnitude histograms of ``magnitudes.jsonl`` (written during training when ``magnitude_every`` > 0;
computed the same way by ``analysis.magnitudes.magnitude_stats`` from a saved model when absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..models.base import PrunableModel
from ..pruning.io import load_checkpoint, model_from_payload
from .magnitudes import LOG10_EDGES, magnitude_stats


def load_model(path: str | Path) -> PrunableModel:
    """A model saved by a run (``model.pt``, ``trained.pt``) — spec + state dict, weights_only."""
    return model_from_payload(load_checkpoint(path))


@torch.no_grad()
def gate_gammas(model: PrunableModel) -> np.ndarray:
    """|γ| of every channel of every gate BN, concatenated in module order."""
    gates = [m.weight.detach().abs().flatten().double().cpu() for m in model.gate_modules().values()]
    return torch.cat(gates).numpy() if gates else np.zeros(0)


def log10_edges(spec=LOG10_EDGES) -> np.ndarray:
    """Bin edges of a (min, max, bins) log10 histogram spec."""
    lo, hi, bins = spec
    return np.linspace(lo, hi, int(bins) + 1)


def model_magnitudes(model: torch.nn.Module) -> dict:
    """Overall weight and group histograms of a model in the shape ``read_magnitudes_jsonl`` returns."""
    stats = magnitude_stats(model)
    return {"phase": None, "epoch": None, "step": None, "edges": tuple(stats["log10_edges"]),
            "weight": stats["overall"]["weight_hist"], "group": stats["overall"]["group_hist"]}


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
            if any(len(h["counts"]) != int(spec[2]) or not {"zeros", "under", "over"} <= set(h)
                   for h in hists.values()):
                continue
        except (ValueError, KeyError, TypeError, IndexError):
            continue
        out.append({"phase": row.get("phase"), "epoch": row.get("epoch"), "step": row.get("step"),
                    "edges": spec, **hists})
    return out
