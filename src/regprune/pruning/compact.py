"""Generic physical compaction: one mechanism for every architecture that declares channel groups."""

from __future__ import annotations

import torch

from ..models.base import PrunableModel

DIM0_KEYS = ("weight", "bias", "running_mean", "running_var")


def compact(model: PrunableModel, masks: dict[str, torch.Tensor]) -> PrunableModel:
    """Return a new, smaller model with only the channels kept by ``masks`` (group name -> bool).

    Each group narrows: dim 0 of its producers' tensors, dim 1 of its consumers' weights, the index
    of its ChannelSelect layers; then the class is rebuilt with the new widths and the narrowed state
    dict is loaded strictly, so any mismatch between declared groups and the real graph fails loudly.
    """
    state = {k: v.clone() for k, v in model.state_dict().items()}
    widths = list(model.widths)
    for g in model.channel_groups():
        keep = masks[g.name].nonzero().flatten().cpu()
        widths[g.width] = len(keep)
        for mod in g.out:
            for key in DIM0_KEYS:
                name = f"{mod}.{key}"
                if name in state:
                    state[name] = state[name].index_select(0, keep.to(state[name].device))
        for mod in g.inp:
            name = f"{mod}.weight"
            state[name] = state[name].index_select(1, keep.to(state[name].device))
        for mod in g.select:
            name = f"{mod}.index"
            state[name] = state[name].index_select(0, keep.to(state[name].device))
    smaller = model.rebuild(widths)
    param = next(model.parameters())
    smaller.to(device=param.device, dtype=param.dtype)
    smaller.load_state_dict(state, strict=True)
    smaller.train(model.training)
    return smaller
