"""Pre-activation bottleneck ResNet for CIFAR as in Network Slimming (PreResNet-164; NS repo
``preresnet.py``): 3×3 stem conv (16), three stages of ``n`` bottlenecks (depth = 9n + 2), each

    BN → select → ReLU → conv1×1 → BN → ReLU → conv3×3 (stride) → BN → ReLU → conv1×1 (+ shortcut)

with a 1×1 conv shortcut in the first block of every stage (stride 2 in stages 2, 3), and a final
BN → select → ReLU → global average pool → linear. Stage streams are 64/128/256 channels wide, the
bottleneck convs 16/32/64.

``widths`` = [stem, s1, s2, s3] (stream widths) followed by, per ``prune_mode``:
  inside_blocks (NS, default): per block [sel, mid1, mid2], then the final sel — NS's ``cfg`` list.
      ``sel`` is how many of the block's input channels its ChannelSelect keeps after the full-width
      input BN; only sel/mid1/mid2/final sel are pruned, the residual stream stays full width.
  coupled: per block [mid1, mid2]. No ChannelSelect; each stream (stem output and each stage) is one
      group gated by every BN *reading* it (the blocks' input BNs, the final BN). So that zeroing those
      gates silences the channel for every reader, the stage's first block applies its 1×1 shortcut to
      the pre-activated input (BN → ReLU), as He et al.'s pre-activation code does, instead of to the
      raw stream as NS does. Same parameters and MACs as the NS network.

A block whose inner widths include a 0 has no branch (it computes its shortcut only): what pruning leaves of a
block whose branch (``branches()``: BN3 → ReLU → conv3) was zeroed whole, which computes exactly that.

ChannelSelect indices are buffers, not parameters, so parameter counts exclude them (PreResNet-164 on
CIFAR-10: 1,703,258, the paper's 1.70M; NS's README counts them too: 1,711,338).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import Branch, ChannelGroup, ChannelSelect, PrunableModel, init_weights, quiet_empty_layers

PRUNE_MODES = ("inside_blocks", "coupled")


class Bottleneck(nn.Module):
    """Pre-activation bottleneck; ``sel`` None = no ChannelSelect; ``shortcut`` None = identity,
    "raw" = 1×1 conv on the block input (NS), "preact" = 1×1 conv on ReLU(BN(input))."""

    def __init__(self, c_in: int, sel: int | None, mid1: int, mid2: int, c_out: int, stride: int,
                 shortcut: str | None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.select = ChannelSelect(c_in, sel) if sel is not None else None
        with quiet_empty_layers():
            self.conv1 = nn.Conv2d(c_in if sel is None else sel, mid1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(mid1)
            self.conv2 = nn.Conv2d(mid1, mid2, 3, stride=stride, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(mid2)
            self.conv3 = nn.Conv2d(mid2, c_out, 1, bias=False)
        self.shortcut = shortcut
        self.downsample = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if shortcut else None
        self.has_branch = min(mid1, mid2, c_in if sel is None else sel) > 0  # else pruned away

    def forward(self, x):
        pre = self.bn1(x)
        if self.select is not None:
            pre = self.select(pre)
        pre = F.relu(pre)
        shortcut = x if self.downsample is None else self.downsample(pre if self.shortcut == "preact" else x)
        if not self.has_branch:
            return shortcut
        return self.conv3(F.relu(self.bn3(self.conv2(F.relu(self.bn2(self.conv1(pre))))))) + shortcut


class PreResNet(PrunableModel):
    """``depth`` = 9n + 2 (164: n = 18); ``widths`` as in the module docstring (None = standard)."""

    def __init__(self, depth: int = 164, num_classes: int = 10, in_channels: int = 3,
                 widths: list[int] | None = None, bn_init: float = 1.0, prune_mode: str = "inside_blocks"):
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"depth={depth} must be 9n + 2 with n ≥ 1 (20, 164, ...)")
        if prune_mode not in PRUNE_MODES:
            raise ValueError(f"prune_mode={prune_mode!r}: choose from {list(PRUNE_MODES)}")
        self.depth, self.num_classes, self.in_channels = depth, num_classes, in_channels
        self.bn_init, self.prune_mode, self.n = bn_init, prune_mode, (depth - 2) // 9
        self.inside = prune_mode == "inside_blocks"
        self.per_block = 3 if self.inside else 2
        widths = list(self.default_widths() if widths is None else widths)
        fixed = [*range(4), *([len(widths) - 1] if self.inside else [])]  # streams and the final select
        if len(widths) != len(self.default_widths()) or any(int(w) < 0 for w in widths) or \
                any(int(widths[i]) < 1 for i in fixed):
            raise ValueError(f"preresnet{depth} ({prune_mode}) needs {len(self.default_widths())} widths, positive "
                             f"(a block's may be 0), got {widths}")
        self.widths = [int(w) for w in widths]

        stem, *streams = self.widths[:4]
        self.conv = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        c_in = stem
        for s in range(3):
            blocks = []
            for i in range(self.n):
                w = self.block_widths(s, i)
                sel = self.widths[w[0]] if self.inside else None
                if sel is not None and sel > c_in:
                    raise ValueError(f"widths: block {s + 1}.{i} selects {sel} of {c_in} input channels")
                blocks.append(Bottleneck(c_in, sel, self.widths[w[-2]], self.widths[w[-1]], streams[s],
                                         2 if i == 0 and s > 0 else 1,
                                         None if i else ("raw" if self.inside else "preact")))
                c_in = streams[s]
            self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(c_in)
        self.select = ChannelSelect(c_in, self.widths[-1]) if self.inside else None
        if self.inside and self.widths[-1] > c_in:
            raise ValueError(f"widths: the final select keeps {self.widths[-1]} of {c_in} channels")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.widths[-1] if self.inside else c_in, num_classes)
        init_weights(self, bn_init)

    def default_widths(self) -> list[int]:
        blocks = []
        for s in range(3):
            mid, c_out = 16 * 2 ** s, 64 * 2 ** s
            for i in range(self.n):
                c_in = c_out if i else (16 if s == 0 else c_out // 2)
                blocks += [c_in, mid, mid] if self.inside else [mid, mid]
        return [16, 64, 128, 256] + blocks + ([256] if self.inside else [])

    def block_widths(self, s: int, i: int) -> list[int]:
        """Indices into ``widths`` of block i of stage s: [sel, mid1, mid2] or [mid1, mid2]."""
        start = 4 + (s * self.n + i) * self.per_block
        return list(range(start, start + self.per_block))

    def arch_kwargs(self) -> dict:
        return {"depth": self.depth, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "bn_init": self.bn_init, "prune_mode": self.prune_mode}

    def channel_groups(self) -> list[ChannelGroup]:
        groups = [] if self.inside else [self.stream_group(s) for s in range(4)]
        for s in range(3):
            for i in range(self.n):
                b, w = f"layer{s + 1}.{i}", self.block_widths(s, i)
                if self.inside:
                    groups.append(ChannelGroup(name=f"{b}.bn1", width=w[0], gates=(f"{b}.bn1",),
                                               select=(f"{b}.select",), inp=(f"{b}.conv1",), branch=b))
                groups += [ChannelGroup(name=f"{b}.bn2", width=w[-2], gates=(f"{b}.bn2",),
                                        out=(f"{b}.conv1", f"{b}.bn2"), inp=(f"{b}.conv2",), branch=b),
                           ChannelGroup(name=f"{b}.bn3", width=w[-1], gates=(f"{b}.bn3",),
                                        out=(f"{b}.conv2", f"{b}.bn3"), inp=(f"{b}.conv3",), branch=b)]
        if self.inside:
            groups.append(ChannelGroup(name="bn", width=len(self.widths) - 1, gates=("bn",), select=("select",),
                                       inp=("fc",)))
        return groups

    def branches(self) -> list[Branch]:
        """Each block's branch ends BN3 → ReLU → conv3 (no bias): zeroing bn3 zeroes the branch."""
        return [Branch(f"layer{s + 1}.{i}", f"layer{s + 1}.{i}.bn3") for s in range(3) for i in range(self.n)]

    def stream_group(self, s: int) -> ChannelGroup:
        """Stream s (0 = the stem's output, 1-3 = the stages): its writers and its BN-gated readers."""
        if s == 0:
            writers = ["conv"]
        else:
            writers = [f"layer{s}.0.downsample"] + [f"layer{s}.{i}.conv3" for i in range(self.n)]
        readers = [f"layer{s}.{i}" for i in range(1, self.n)] if s else []
        readers += [f"layer{s + 1}.0"] if s < 3 else []
        gates = tuple(f"{b}.bn1" for b in readers) + (("bn",) if s == 3 else ())
        convs = tuple(f"{b}.conv1" for b in readers) + (f"layer{s + 1}.0.downsample",) * (s < 3)
        return ChannelGroup(name=f"stream.{s}", width=s, gates=gates, out=(*writers, *gates),
                            inp=convs + (("fc",) if s == 3 else ()))

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv(x))))
        x = self.bn(x)
        if self.select is not None:
            x = self.select(x)
        return self.fc(self.pool(F.relu(x)).flatten(1))
