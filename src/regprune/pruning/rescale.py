"""Function-preserving γ–W rescaling of channels (docs/methods.md, RSNLI): channel k of group g gets its gates'
γ and β multiplied by α_{g,k} > 0 and its consumers' input slices divided by it. The gate outputs scale by α and
reach the consumers only through positively homogeneous operations (``PrunableModel.rescalable``), so every
output is unchanged while |γ| — and any importance that is not scale-invariant — changes at will.
"""

from __future__ import annotations

import torch

from ..models.base import PrunableModel


def check_rescalable(model: PrunableModel) -> None:
    if not model.rescalable:
        raise ValueError(f"γ–W rescaling is not function-preserving on {type(model).__name__} (a clipping activation "
                         "between its gates and their consumers)")


@torch.no_grad()
def rescale_channels(model: PrunableModel, factors: dict[str, torch.Tensor | float]) -> None:
    """Scale every channel of each group ``g`` in ``factors`` by α = factors[g] (one value per channel, or one for
    the whole group): gates' γ, β × α, consumers' input slices ÷ α."""
    check_rescalable(model)
    for g in model.channel_groups():
        if g.name not in factors:
            continue
        width = model.widths[g.width]
        alpha = torch.as_tensor(factors[g.name], dtype=torch.float64).expand(width)
        if not (alpha > 0).all():
            raise ValueError(f"rescaling factors of {g.name} must be > 0")
        for b in g.gates:
            bn = model.get_submodule(b)
            idx = model.gate_index(g, b)
            a = alpha.to(bn.weight)
            bn.weight[idx] *= a
            bn.bias[idx] *= a
        for c in g.inp:
            w = model.get_submodule(c).weight
            start = g.offset(c)
            w[:, start:start + width] /= alpha.to(w).view(1, -1, *([1] * (w.dim() - 2)))
