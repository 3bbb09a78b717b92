"""What every prunable model declares so that one generic compaction can shrink it.

A model is data: an architecture name, fixed hyper-parameters, and a list of ``widths`` (one per
prunable channel group). Pruning a group narrows every tensor the group's channels index and lowers
its width; rebuilding the class with the new widths and loading the narrowed state dict gives the
physically smaller network (see ``regprune.pruning.compact``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ChannelGroup:
    """A set of channels that live or die together.

    gates:  BatchNorm modules whose scale factors (γ) score these channels; masking zeroes their γ, β.
    width:  index into ``model.widths`` holding the group's size.
    out:    modules whose dim-0 tensors (conv/linear weight and bias, BN parameters and buffers) are
            indexed by the channels.
    inp:    modules whose weight's dim 1 is indexed by the channels (the consumers).
    select: ``ChannelSelect`` modules narrowed instead of the gate itself (NS pre-activation blocks).
    offsets: (module, first channel) for modules whose channel dim holds several groups side by side
            (a concatenated or zero-padded stream); the group is the slice [offset, offset + width).
            Modules not listed start at channel 0.
    """

    name: str
    width: int
    gates: tuple[str, ...]
    out: tuple[str, ...] = ()
    inp: tuple[str, ...] = ()
    select: tuple[str, ...] = field(default=())
    offsets: tuple[tuple[str, int], ...] = ()

    def offset(self, module: str) -> int:
        return dict(self.offsets).get(module, 0)


class ChannelSelect(nn.Module):
    """Keeps a subset of channels after a full-width BatchNorm (NS's channel-selection layer).

    The kept indices are a buffer, not parameters: parameter counts do not include them.
    """

    def __init__(self, channels: int, kept: int | None = None):
        super().__init__()
        kept = channels if kept is None else kept
        self.register_buffer("index", torch.arange(kept))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.index.numel() == x.shape[1]:
            return x
        return x.index_select(1, self.index)


class PrunableModel(nn.Module):
    """Base class: subclasses set ``widths`` and ``arch_kwargs`` and implement ``channel_groups``.

    ``rescalable``: scaling a channel's gate outputs by α > 0 (its gates' γ and β) and its consumers' input slices
    by 1/α changes no output, because the gates reach the consumers only through positively homogeneous operations
    (ReLU, pooling, addition, zero padding, concatenation). A model with a clipping activation (ReLU6) sets False.
    """

    widths: list[int]
    rescalable = True

    def arch_kwargs(self) -> dict:
        """Constructor arguments other than ``widths`` that rebuild the same architecture."""
        raise NotImplementedError

    def channel_groups(self) -> list[ChannelGroup]:
        raise NotImplementedError

    def spec(self) -> dict:
        """Everything needed to rebuild the (possibly pruned) network besides its weights."""
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}",
                "kwargs": {**self.arch_kwargs(), "widths": list(self.widths)}}

    def rebuild(self, widths: list[int]) -> PrunableModel:
        return type(self)(**{**self.arch_kwargs(), "widths": list(widths)})

    def gate_index(self, group: ChannelGroup, gate: str) -> torch.Tensor:
        """Positions of ``group``'s channels in the γ of its gate BN ``gate``.

        A select group's gate stays full width, so its channels are the ChannelSelect's kept indices;
        otherwise they are the contiguous slice at the group's offset in that BN.
        """
        if group.select:
            return self.get_submodule(group.select[0]).index
        start = group.offset(gate)
        return torch.arange(start, start + self.widths[group.width], device=self.get_submodule(gate).weight.device)

    def gate_modules(self) -> dict[str, nn.BatchNorm2d]:
        """Every BN that gates a prunable group, by name."""
        names = {g for group in self.channel_groups() for g in group.gates}
        return {n: m for n, m in self.named_modules() if n in names}


def init_weights(model: nn.Module, bn_gamma: float = 1.0) -> None:
    """He (fan-out) init for convs, γ = ``bn_gamma`` (NS uses 0.5), β = 0, default linear init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.constant_(m.weight, bn_gamma)
            nn.init.zeros_(m.bias)
