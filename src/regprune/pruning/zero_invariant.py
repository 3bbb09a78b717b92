"""Zero-invariant groups (OTO; docs/methods.md, OTO): per prunable channel, every parameter that can keep the
channel's activation non-zero, built from the model's channel groups.

Channel k of a ChannelGroup owns row k (at the group's offset) of the dim-0 parameters of every module in ``out``:
its producers' filters and biases and the γ, β of every BN narrowed with it — for a coupled group, of every
producer and every gate of the residual stream or concatenated features. A group whose gate BN stays full width
(a channel selection after a pre-activation BN) owns that BN's γ, β at the selected positions. When all of a
channel's rows are zero its activation is zero everywhere (ReLU(0) = 0, BN(·) = β = 0), so its consumers' input
slices multiply zeros and compaction removes it without changing any output. All rows are on dim 0, so a group
is a set of (parameter, row indices) pairs and x_{g,k} is the concatenation of those rows.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.base import PrunableModel
from .importance import Importance, Scores

Rows = list[tuple[nn.Parameter, torch.Tensor]]  # (parameter, index of each channel's row on dim 0)


class ZeroInvariantGroups:
    """The zero-invariant groups of ``model``: ``rows[name]`` lists the (parameter, row index) pairs of the channel
    group ``name``; channel k of the group owns row ``index[k]`` of each parameter."""

    def __init__(self, model: PrunableModel):
        modules = dict(model.named_modules())
        self.rows: dict[str, Rows] = {}
        for g in model.channel_groups():
            width = model.widths[g.width]
            rows = []
            for name in g.out:
                start = g.offset(name)
                index = torch.arange(start, start + width)
                rows += [(p, index) for p in modules[name].parameters(recurse=False)]
            for gate in g.gates:
                if gate not in g.out:  # a full-width BN before a channel selection
                    index = model.gate_index(g, gate).cpu()
                    rows += [(modules[gate].weight, index), (modules[gate].bias, index)]
            if not rows:
                raise ValueError(f"channel group {g.name} owns no parameter that can silence it")
            device = rows[0][0].device
            self.rows[g.name] = [(p, i.to(device)) for p, i in rows]
        self.params = list({id(p): p for rows in self.rows.values() for p, _ in rows}.values())

    @staticmethod
    def flat(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return tensor.index_select(0, index).reshape(len(index), -1)

    def sq_norms(self, tensors: dict[int, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """‖x_{g,k}‖² per channel; ``tensors`` maps id(parameter) to another tensor of its shape to measure
        instead (a gradient, a snapshot)."""
        def of(p):
            return p.detach() if tensors is None else tensors[id(p)]
        return {g: sum(self.flat(of(p), i).pow(2).sum(1) for p, i in rows) for g, rows in self.rows.items()}

    def dots(self, other: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        """⟨x_{g,k}, y_{g,k}⟩ per channel, x the parameters, y = ``other`` (id(parameter) -> tensor)."""
        return {g: sum((self.flat(p.detach(), i) * self.flat(other[id(p)], i)).sum(1) for p, i in rows)
                for g, rows in self.rows.items()}

    @torch.no_grad()
    def add_rows(self, targets: dict[int, torch.Tensor], coef: dict[str, torch.Tensor]) -> None:
        """targets[id(p)][row k] += coef[g][k]·p[row k] for every group g (a gradient of Σ φ(‖x_{g,k}‖))."""
        for g, rows in self.rows.items():
            for p, i in rows:
                c = coef[g].to(p.dtype).view(-1, *([1] * (p.dim() - 1)))
                targets[id(p)].index_add_(0, i, c * p.detach().index_select(0, i))

    @torch.no_grad()
    def zero_(self, masks: dict[str, torch.Tensor]) -> None:
        """Set to 0 every row of the channels where ``masks[g]`` is True (the whole group of each)."""
        for g, rows in self.rows.items():
            drop = masks[g].to(rows[0][1].device)
            if drop.any():
                for p, i in rows:
                    p.index_fill_(0, i[drop], 0.0)


class ZeroInvariantNorm(Importance):
    """‖x_{g,k}‖₂ of each channel's zero-invariant group: exactly 0 iff removing the channel changes nothing."""

    name = "zig_l2"

    @torch.no_grad()
    def __call__(self, model: PrunableModel) -> Scores:
        return {g: n.sqrt().float().cpu() for g, n in ZeroInvariantGroups(model).sq_norms().items()}
