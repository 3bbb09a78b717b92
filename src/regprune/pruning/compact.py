"""Generic physical compaction: one mechanism for every architecture that declares channel groups."""

from __future__ import annotations

import torch

from ..errors import UserError
from ..models.base import PrunableModel
from ..models.gates import GATED

DIM0_KEYS = ("weight", "bias", "running_mean", "running_var")


def compact(model: PrunableModel, masks: dict[str, torch.Tensor]) -> PrunableModel:
    """Return a new, smaller model with only the channels kept by ``masks`` (group name -> bool).

    Each group narrows: dim 0 of its producers' tensors, dim 1 of its consumers' weights, the index
    of its ChannelSelect layers — at the group's offset where a tensor holds several groups side by side;
    then the class is rebuilt with the new widths and the narrowed state dict is loaded strictly, so any
    mismatch between declared groups and the real graph fails loudly. Gates must be folded first
    (``regprune.pruning.gates.fold_gates``); a group may go to width 0 only inside a residual branch (the block then
    skips it), which ``apply_masks`` zeroes.
    """
    if any(isinstance(m, GATED) for m in model.modules()):
        raise UserError("compaction needs the gates folded first (regprune.pruning.gates.fold_gates)")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    widths = list(model.widths)
    keep: dict[tuple[str, int], torch.Tensor] = {}  # (state key, dim) -> kept entries, original positions

    def narrow(key: str, dim: int, start: int, mask: torch.Tensor) -> None:
        k = keep.setdefault((key, dim), torch.ones(state[key].shape[dim], dtype=torch.bool))
        k[start:start + len(mask)] &= mask

    for g in model.channel_groups():
        mask = masks[g.name].bool().cpu()
        widths[g.width] = int(mask.sum())
        for mod in g.out:
            for key in DIM0_KEYS:
                if f"{mod}.{key}" in state:
                    narrow(f"{mod}.{key}", 0, g.offset(mod), mask)
        for mod in g.inp:
            narrow(f"{mod}.weight", 1, g.offset(mod), mask)
        for mod in g.select:
            narrow(f"{mod}.index", 0, g.offset(mod), mask)
    # all groups first, then one index_select per tensor: groups sharing a tensor (at different
    # offsets) do not shift each other's positions
    for (key, dim), k in keep.items():
        state[key] = state[key].index_select(dim, k.nonzero().flatten().to(state[key].device))
    smaller = model.rebuild(widths)
    param = next(model.parameters())
    smaller.to(device=param.device, dtype=param.dtype)
    smaller.load_state_dict(state, strict=True)
    smaller.train(model.training)
    return smaller
