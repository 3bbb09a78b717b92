"""What every prunable model declares so that one generic compaction can shrink it.

A model is data: an architecture name, fixed hyper-parameters, and a list of ``widths`` (one per
prunable channel group). Pruning a group narrows every tensor the group's channels index and lowers
its width; rebuilding the class with the new widths and loading the narrowed state dict gives the
physically smaller network (see ``regprune.pruning.compact``).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .gates import GATED


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
    branch: the residual ``Branch`` (its block's name) the channels live inside, or "". Such a group may be
            pruned to width 0, together with every other group of its branch: the block then keeps only its
            shortcut.
    """

    name: str
    width: int
    gates: tuple[str, ...]
    out: tuple[str, ...] = ()
    inp: tuple[str, ...] = ()
    select: tuple[str, ...] = field(default=())
    offsets: tuple[tuple[str, int], ...] = ()
    branch: str = ""

    def offset(self, module: str) -> int:
        return dict(self.offsets).get(module, 0)


@dataclass(frozen=True)
class Branch:
    """The residual branch of block ``name``: its output is added to the shortcut, and ``bn`` is the branch's
    last BatchNorm, whose output the whole branch is proportional to (followed at most by a ReLU and a conv).
    Zeroing that BN silences the branch, so a block gate lives there and the groups inside the branch
    (``ChannelGroup.branch == name``) can then all go to width 0; a block with zero inner width skips the
    branch (docs/methods.md, Gates)."""

    name: str
    bn: str


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

    def branches(self) -> list[Branch]:
        """Residual branches that can be removed whole (none unless a family declares them)."""
        return []

    def spec(self) -> dict:
        """Everything needed to rebuild the (possibly pruned) network besides its weights: class, widths and,
        while gates are installed, each gated BN's gate (``regprune.pruning.gates.restore_gates``)."""
        spec = {"class": f"{type(self).__module__}.{type(self).__qualname__}",
                "kwargs": {**self.arch_kwargs(), "widths": list(self.widths)}}
        gates = {n: m.gate_config() for n, m in self.named_modules() if isinstance(m, GATED)}
        return {**spec, "gates": gates} if gates else spec

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


@contextmanager
def quiet_empty_layers():
    """Build layers of a pruned-away branch (width 0) without torch's zero-element init warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        yield


def init_weights(model: nn.Module, bn_gamma: float = 1.0) -> None:
    """He (fan-out) init for convs, γ = ``bn_gamma`` (NS uses 0.5), β = 0, default linear init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel():
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.constant_(m.weight, bn_gamma)
            nn.init.zeros_(m.bias)
