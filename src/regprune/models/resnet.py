"""CIFAR ResNet-20/56/110 (He et al. 2016, §4.2): 3×3 stem, three stages of ``n`` basic blocks
(post-activation: conv-BN-ReLU-conv-BN, add, ReLU) on 16/32/64 channels, option-A shortcuts (subsample
by 2 and zero-pad the new channels), global average pool, one linear layer. depth = 6n + 2.

Option A puts the stage-s stream in the middle of the stage-(s+1) stream: with p zero channels padded
on each side, channel k of stage s is channel p + k of stage s+1. The residual stream is therefore
made of *segments*, each born in one stage and carried unchanged by the identity into every later stage:

    stage 1: [a]                            a    = 16 (the stem's channels)
    stage 2: [b_lo, a, b_hi]                b_lo = b_hi = 8 (the padding of stage 2)
    stage 3: [c_lo, b_lo, a, b_hi, c_hi]    c_lo = c_hi = 16

``widths`` = [a, b_lo, b_hi, c_lo, c_hi, mid_1, …, mid_3n]: the five stream segments, then the first
conv's output width of every block in order. A pruned segment narrows the padding of the shortcut that
creates it, so a pruned network is still an option-A ResNet (with uneven padding).

``mid_i`` = 0 is a block without its branch (it computes ReLU(shortcut)): what pruning leaves of a block whose
branch (``branches()``, last BN bn2) was zeroed whole, which computes exactly that.

``prune_mode``:
  inside_blocks  (default) only ``mid_i`` is pruned (group gated by the block's first BN).
  coupled        also the stream: each segment is one group across all stages it lives in, gated by
                 every BN writing into it (stem BN, each block's second BN, at the segment's offset) —
                 a channel whose writers are all zeroed is zero everywhere, so removing it is exact.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import Branch, ChannelGroup, PrunableModel, init_weights, quiet_empty_layers

PRUNE_MODES = ("inside_blocks", "coupled")
SEGMENTS = ("a", "b_lo", "b_hi", "c_lo", "c_hi")


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN + shortcut, ReLU. ``pad`` = (before, after) zero channels of an
    option-A downsampling shortcut; None for the identity."""

    def __init__(self, c_in: int, mid: int, c_out: int, stride: int, pad: tuple[int, int] | None):
        super().__init__()
        with quiet_empty_layers():
            self.conv1 = nn.Conv2d(c_in, mid, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(mid)
            self.conv2 = nn.Conv2d(mid, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad = stride, pad

    def forward(self, x):
        shortcut = x if self.pad is None else F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, *self.pad))
        if self.conv1.out_channels == 0:  # the branch was pruned away
            return F.relu(shortcut)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + shortcut)


class ResNet(PrunableModel):
    """``depth`` = 6n + 2; ``widths`` as in the module docstring (None = 16/32/64 everywhere)."""

    def __init__(self, depth: int = 56, num_classes: int = 10, in_channels: int = 3,
                 widths: list[int] | None = None, bn_init: float = 1.0, prune_mode: str = "inside_blocks"):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth={depth} must be 6n + 2 with n ≥ 1 (20, 56, 110, ...)")
        if prune_mode not in PRUNE_MODES:
            raise ValueError(f"prune_mode={prune_mode!r}: choose from {list(PRUNE_MODES)}")
        n = (depth - 2) // 6
        default = [16, 8, 8, 16, 16] + [16] * n + [32] * n + [64] * n
        widths = list(default if widths is None else widths)
        if len(widths) != len(default) or any(int(w) < 1 for w in widths[:5]) or any(int(w) < 0 for w in widths):
            raise ValueError(f"resnet{depth} needs {len(default)} widths, positive (a block's may be 0), got {widths}")
        self.depth, self.num_classes, self.in_channels = depth, num_classes, in_channels
        self.bn_init, self.prune_mode, self.n = bn_init, prune_mode, n
        self.widths = [int(w) for w in widths]

        a, b_lo, b_hi, c_lo, c_hi = self.widths[:5]
        streams = [a, b_lo + a + b_hi, c_lo + b_lo + a + b_hi + c_hi]
        pads = [None, (b_lo, b_hi), (c_lo, c_hi)]
        self.conv = nn.Conv2d(in_channels, a, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(a)
        c_in = a
        for s in range(3):
            blocks = []
            for i in range(n):
                first = i == 0 and s > 0
                blocks.append(BasicBlock(c_in, self.widths[5 + s * n + i], streams[s], 2 if first else 1,
                                         pads[s] if first else None))
                c_in = streams[s]
            self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        init_weights(self, bn_init)

    def arch_kwargs(self) -> dict:
        return {"depth": self.depth, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "bn_init": self.bn_init, "prune_mode": self.prune_mode}

    def stream_offsets(self) -> list[dict[str, int]]:
        """Per stage, the first channel of each live segment in that stage's stream."""
        a, b_lo, b_hi, c_lo, _ = self.widths[:5]
        return [{"a": 0},
                {"b_lo": 0, "a": b_lo, "b_hi": b_lo + a},
                {"c_lo": 0, "b_lo": c_lo, "a": c_lo + b_lo, "b_hi": c_lo + b_lo + a, "c_hi": c_lo + b_lo + a + b_hi}]

    def channel_groups(self) -> list[ChannelGroup]:
        groups = []
        for s in range(3):
            for i in range(self.n):
                b = f"layer{s + 1}.{i}"
                groups.append(ChannelGroup(name=f"{b}.bn1", width=5 + s * self.n + i, gates=(f"{b}.bn1",),
                                           out=(f"{b}.conv1", f"{b}.bn1"), inp=(f"{b}.conv2",), branch=b))
        if self.prune_mode == "coupled":
            groups = [self.segment_group(seg) for seg in SEGMENTS] + groups
        return groups

    def branches(self) -> list[Branch]:
        return [Branch(f"layer{s + 1}.{i}", f"layer{s + 1}.{i}.bn2") for s in range(3) for i in range(self.n)]

    def segment_group(self, seg: str) -> ChannelGroup:
        """All writers (BN gates and their convs) and readers (next convs, fc) of one stream segment."""
        offsets = self.stream_offsets()
        bns, convs, readers = [], [], []  # (module, offset of the segment in it)
        if seg == "a":
            bns, convs, readers = [("bn", 0)], [("conv", 0)], [("layer1.0.conv1", 0)]
        for s in range(3):
            if seg not in offsets[s]:
                continue
            off = offsets[s][seg]
            for i in range(self.n):
                b = f"layer{s + 1}.{i}"
                bns.append((f"{b}.bn2", off))
                convs.append((f"{b}.conv2", off))
                if i > 0:  # block 0 reads the previous stage's stream
                    readers.append((f"{b}.conv1", off))
            readers.append((f"layer{s + 2}.0.conv1", off) if s < 2 else ("fc", off))
        return ChannelGroup(name=f"stream.{seg}", width=SEGMENTS.index(seg), gates=tuple(m for m, _ in bns),
                            out=tuple(m for m, _ in convs + bns), inp=tuple(m for m, _ in readers),
                            offsets=tuple(bns + convs + readers))

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))
