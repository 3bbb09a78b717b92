"""DenseNet for CIFAR as in Network Slimming (DenseNet-40, growth 12; NS repo ``densenet.py``):
3×3 stem conv, three dense blocks of L = (depth − 4)/3 layers (BN → select → ReLU → conv3×3 → growth
channels, concatenated to the input), no bottleneck, transitions BN → select → ReLU → conv1×1 (same
width, compression 1) → 2×2 average pool, final BN → select → ReLU → global average pool → linear.

``init_channels`` is the stem's width: 16 as in the DenseNet paper (its parameter count, 1.02M on
CIFAR-10, is what NS's Table 1 reports), 24 (= 2 × growth) in the public NS PyTorch port (1.06M;
its 1.07M counts the ChannelSelect indices too).

``widths`` = the stream part [stem, g_1, …, g_3L, t_1, t_2] (the output width of the stem, of every
dense layer, of both transitions) followed, in ``inside_blocks`` mode, by NS's ``cfg``: the select
width of every BN reading the concatenated features in network order (the L layers of block 1,
transition 1, block 2, transition 2, block 3, the final BN), 3L + 3 entries.

``prune_mode``:
  inside_blocks (NS, default): only the ChannelSelects after the full-width BNs are narrowed, so each
      layer reads a subset of the features; the concatenated features themselves stay full width.
  coupled: no ChannelSelect; every conv's output channels are one group, gated by the slices of all
      BNs that read them later (the features are concatenated, so a channel has one slice per reader).

ChannelSelect indices are buffers, not parameters (not in parameter counts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ChannelGroup, ChannelSelect, PrunableModel, init_weights

PRUNE_MODES = ("inside_blocks", "coupled")


class DenseUnit(nn.Module):
    """BN → (select) → ReLU → conv; a dense layer concatenates its output to its input, a transition
    average-pools it."""

    def __init__(self, c_in: int, sel: int | None, c_out: int, kernel: int, dense: bool):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.select = ChannelSelect(c_in, sel) if sel is not None else None
        self.conv = nn.Conv2d(c_in if sel is None else sel, c_out, kernel, padding=kernel // 2, bias=False)
        self.dense = dense

    def forward(self, x):
        out = self.bn(x)
        if self.select is not None:
            out = self.select(out)
        out = self.conv(F.relu(out))
        return torch.cat([x, out], 1) if self.dense else F.avg_pool2d(out, 2)


class DenseNet(PrunableModel):
    """``depth`` = 3L + 4 (40: L = 12); ``widths`` as in the module docstring (None = standard)."""

    def __init__(self, depth: int = 40, growth: int = 12, init_channels: int = 16, num_classes: int = 10,
                 in_channels: int = 3, widths: list[int] | None = None, bn_init: float = 1.0,
                 prune_mode: str = "inside_blocks"):
        super().__init__()
        if depth < 7 or (depth - 4) % 3:
            raise ValueError(f"depth={depth} must be 3L + 4 with L ≥ 1 (40, 100, ...)")
        if growth < 1 or init_channels < 1:
            raise ValueError(f"growth={growth} and init_channels={init_channels} must be ≥ 1")
        if prune_mode not in PRUNE_MODES:
            raise ValueError(f"prune_mode={prune_mode!r}: choose from {list(PRUNE_MODES)}")
        self.depth, self.growth, self.init_channels = depth, growth, init_channels
        self.num_classes, self.in_channels = num_classes, in_channels
        self.bn_init, self.prune_mode = bn_init, prune_mode
        self.L, self.inside = (depth - 4) // 3, prune_mode == "inside_blocks"
        default = self.default_widths()
        widths = list(default if widths is None else widths)
        if len(widths) != len(default) or any(int(w) < 1 for w in widths):
            raise ValueError(f"densenet{depth} ({prune_mode}) needs {len(default)} positive widths, got {widths}")
        self.widths = [int(w) for w in widths]

        self.conv = nn.Conv2d(in_channels, self.widths[0], 3, padding=1, bias=False)
        self.block1, self.block2, self.block3 = nn.Sequential(), nn.Sequential(), nn.Sequential()
        c = self.widths[0]
        for name, reads, out, kernel, dense in self.units():
            sel = self.widths[reads] if self.inside else None
            if sel is not None and sel > c:
                raise ValueError(f"widths: {name} selects {sel} of {c} input channels")
            unit = DenseUnit(c, sel, self.widths[out], kernel, dense)
            if dense:
                self.get_submodule(name.split(".")[0]).append(unit)
            else:
                self.add_module(name, unit)
            c = c + self.widths[out] if dense else self.widths[out]
        self.bn = nn.BatchNorm2d(c)
        self.select = ChannelSelect(c, self.widths[-1]) if self.inside else None
        if self.inside and self.widths[-1] > c:
            raise ValueError(f"widths: the final select keeps {self.widths[-1]} of {c} channels")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.widths[-1] if self.inside else c, num_classes)
        init_weights(self, bn_init)

    def default_widths(self) -> list[int]:
        stream = [self.init_channels] + [self.growth] * (3 * self.L)
        c, sels, trans = self.init_channels, [], []
        for block in range(3):
            sels += [c + i * self.growth for i in range(self.L)]
            c += self.L * self.growth
            sels.append(c)  # the transition (after block 3: the final BN) reads all features
            trans += [c] if block < 2 else []
        return stream + trans + (sels if self.inside else [])

    def units(self) -> list[tuple[str, int, int, int, bool]]:
        """(module name, index of its select width, index of its output width, kernel, dense), in order."""
        out, sel = [], 3 * self.L + 3
        for block in range(3):
            for i in range(self.L):
                out.append((f"block{block + 1}.{i}", sel, 1 + block * self.L + i, 3, True))
                sel += 1
            if block < 2:
                out.append((f"trans{block + 1}", sel, 3 * self.L + 1 + block, 1, False))
                sel += 1
        return out

    def arch_kwargs(self) -> dict:
        return {"depth": self.depth, "growth": self.growth, "init_channels": self.init_channels,
                "num_classes": self.num_classes, "in_channels": self.in_channels, "bn_init": self.bn_init,
                "prune_mode": self.prune_mode}

    def channel_groups(self) -> list[ChannelGroup]:
        if not self.inside:
            return self.coupled_groups()
        readers = [(f"{name}.", sel) for name, sel, _, _, _ in self.units()] + [("", len(self.widths) - 1)]
        return [ChannelGroup(name=f"{p}bn", width=sel, gates=(f"{p}bn",), select=(f"{p}select",),
                             inp=(f"{p}conv" if p else "fc",)) for p, sel in readers]

    def coupled_groups(self) -> list[ChannelGroup]:
        """One group per producer (stem, dense layer, transition), read by later BNs at its offset."""
        producers = [("conv", 0)] + [(f"{name}.conv", out) for name, _, out, _, _ in self.units()]
        reads: dict[str, list[tuple[str, str, int]]] = {p: [] for p, _ in producers}  # (bn, conv, offset)
        live = [("conv", self.widths[0])]  # the features the next reader sees: (producer, width) in order
        for name, _, out, _, dense in [*self.units(), ("", 0, 0, 0, False)]:  # "": the final BN and fc
            bn, conv = (f"{name}.bn", f"{name}.conv") if name else ("bn", "fc")
            off = 0
            for producer, w in live:
                reads[producer].append((bn, conv, off))
                off += w
            if name:
                new = (f"{name}.conv", self.widths[out])
                live = [*live, new] if dense else [new]
        return [ChannelGroup(name=p, width=w, gates=tuple(bn for bn, _, _ in reads[p]),
                             out=(p, *(bn for bn, _, _ in reads[p])), inp=tuple(c for _, c, _ in reads[p]),
                             offsets=tuple((m, off) for bn, c, off in reads[p] for m in (bn, c)))
                for p, w in producers]

    def forward(self, x):
        x = self.block3(self.trans2(self.block2(self.trans1(self.block1(self.conv(x))))))
        x = self.bn(x)
        if self.select is not None:
            x = self.select(x)
        return self.fc(self.pool(F.relu(x)).flatten(1))
