"""ImageNet ResNet with bottleneck blocks (He et al. 2016; ResNet-50 = layers [3, 4, 6, 3]), in
torchvision's layout and module names, so a torchvision ``resnet50()`` state dict loads into it unchanged:
7×7/2 stem conv (64) → BN → ReLU → 3×3/2 max-pool, four stages of bottlenecks

    conv1×1 → BN → ReLU → conv3×3 (stride, torchvision's "v1.5") → BN → ReLU → conv1×1 → BN, + shortcut, ReLU

with a projection shortcut (conv1×1 with the stage's stride → BN, ``downsample``) in each stage's first
block; stage streams 256/512/1024/2048 wide, inner widths 64/128/256/512; global average pool, linear.

``widths`` = [stem, s1, s2, s3, s4] (the stem's output and the four stage streams), then per block in
order [mid1, mid2] (the outputs of its conv1 and conv2).

A block with an inner width of 0 has no branch (it computes ReLU(shortcut)): what pruning leaves of a block whose
branch (``branches()``, last BN bn3) was zeroed whole, which computes exactly that.

``prune_mode``:
  inside_blocks (default): the two inner widths of every bottleneck, each gated by its own BN; the stem
      and the residual streams keep their width.
  coupled: also the stem and each stage's stream. A stream channel is written by the projection
      shortcut's BN and by every block's last BN (all of them gate the group; post-activation blocks
      add and ReLU, so a channel zeroed at every writer stays zero) and read by the next blocks' conv1,
      the next stage's projection, or the classifier.
"""

from __future__ import annotations

from torch import nn

from .base import Branch, ChannelGroup, PrunableModel, init_weights, quiet_empty_layers

PRUNE_MODES = ("inside_blocks", "coupled")
STREAMS, INNER = (256, 512, 1024, 2048), (64, 128, 256, 512)


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, mid1: int, mid2: int, c_out: int, stride: int, project: bool):
        super().__init__()
        with quiet_empty_layers():
            self.conv1 = nn.Conv2d(c_in, mid1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(mid1)
            self.conv2 = nn.Conv2d(mid1, mid2, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(mid2)
            self.conv3 = nn.Conv2d(mid2, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                        nn.BatchNorm2d(c_out)) if project else None

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        if min(self.conv1.out_channels, self.conv2.out_channels) == 0:  # the branch was pruned away
            return self.relu(shortcut)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


class BottleneckResNet(PrunableModel):
    """``layers`` = bottlenecks per stage ([3, 4, 6, 3]: ResNet-50); ``widths`` as in the module docstring."""

    def __init__(self, layers: list[int] = (3, 4, 6, 3), num_classes: int = 1000, in_channels: int = 3,
                 widths: list[int] | None = None, bn_init: float = 1.0, prune_mode: str = "inside_blocks"):
        super().__init__()
        layers = [int(n) for n in layers]
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers={layers} must be 4 positive block counts (ResNet-50: [3, 4, 6, 3])")
        if prune_mode not in PRUNE_MODES:
            raise ValueError(f"prune_mode={prune_mode!r}: choose from {list(PRUNE_MODES)}")
        default = [64, *STREAMS] + [w for s, n in enumerate(layers) for _ in range(n) for w in (INNER[s],) * 2]
        widths = list(default if widths is None else widths)
        if len(widths) != len(default) or any(int(w) < 1 for w in widths[:5]) or any(int(w) < 0 for w in widths):
            raise ValueError(f"layers={layers} needs {len(default)} widths, positive (a block's may be 0), "
                             f"got {widths}")
        self.layers, self.num_classes, self.in_channels = layers, num_classes, in_channels
        self.bn_init, self.prune_mode = bn_init, prune_mode
        self.widths = [int(w) for w in widths]

        self.conv1 = nn.Conv2d(in_channels, self.widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c_in = self.widths[0]
        for s, block in enumerate(self.blocks_by_stage()):
            c_out = self.widths[1 + s]
            stage = []
            for i, (mid1, mid2) in enumerate(block):
                stage.append(Bottleneck(c_in, self.widths[mid1], self.widths[mid2], c_out,
                                        2 if i == 0 and s > 0 else 1, project=i == 0))
                c_in = c_out
            self.add_module(f"layer{s + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        init_weights(self, bn_init)

    def blocks_by_stage(self) -> list[list[tuple[int, int]]]:
        """Per stage, the (mid1, mid2) indices into ``widths`` of each of its blocks."""
        out, index = [], 5
        for n in self.layers:
            out.append([(index + 2 * i, index + 2 * i + 1) for i in range(n)])
            index += 2 * n
        return out

    def arch_kwargs(self) -> dict:
        return {"layers": list(self.layers), "num_classes": self.num_classes, "in_channels": self.in_channels,
                "bn_init": self.bn_init, "prune_mode": self.prune_mode}

    def channel_groups(self) -> list[ChannelGroup]:
        groups = []
        for s, block in enumerate(self.blocks_by_stage()):
            for i, (mid1, mid2) in enumerate(block):
                b = f"layer{s + 1}.{i}"
                groups += [ChannelGroup(name=f"{b}.bn1", width=mid1, gates=(f"{b}.bn1",),
                                        out=(f"{b}.conv1", f"{b}.bn1"), inp=(f"{b}.conv2",), branch=b),
                           ChannelGroup(name=f"{b}.bn2", width=mid2, gates=(f"{b}.bn2",),
                                        out=(f"{b}.conv2", f"{b}.bn2"), inp=(f"{b}.conv3",), branch=b)]
        if self.prune_mode == "coupled":
            stem = ChannelGroup(name="bn1", width=0, gates=("bn1",), out=("conv1", "bn1"),
                                inp=("layer1.0.conv1", "layer1.0.downsample.0"))
            groups = [stem, *(self.stream_group(s) for s in range(4)), *groups]
        return groups

    def branches(self) -> list[Branch]:
        return [Branch(f"layer{s + 1}.{i}", f"layer{s + 1}.{i}.bn3") for s, n in enumerate(self.layers)
                for i in range(n)]

    def stream_group(self, s: int) -> ChannelGroup:
        """Stage s's stream: written by its projection and every block's conv3/bn3, read by the blocks after
        the first, then by the next stage's first block (conv1 and projection) or the classifier."""
        stage = f"layer{s + 1}"
        n = self.layers[s]
        gates = (f"{stage}.0.downsample.1", *(f"{stage}.{i}.bn3" for i in range(n)))
        writers = (f"{stage}.0.downsample.0", *(f"{stage}.{i}.conv3" for i in range(n)))
        readers = tuple(f"{stage}.{i}.conv1" for i in range(1, n))
        readers += (f"layer{s + 2}.0.conv1", f"layer{s + 2}.0.downsample.0") if s < 3 else ("fc",)
        return ChannelGroup(name=f"{stage}.stream", width=1 + s, gates=gates, out=writers + gates, inp=readers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
