"""MobileNetV2 (Sandler et al. 2018) in torchvision's layout and module names, so a torchvision
``mobilenet_v2()`` state dict loads into it unchanged: 3×3/2 stem conv (32) → BN → ReLU6, seventeen
inverted residual blocks in seven stages (expansion t, output c, repeats n, first stride s)

    [expand conv1×1 → BN → ReLU6] → depthwise conv3×3 (stride) → BN → ReLU6 → project conv1×1 → BN (+ input)

(no expansion when t = 1; the input is added when the stride is 1 and the width is unchanged), a last
conv1×1 (1280) → BN → ReLU6, global average pool, dropout, linear.

``widths`` = [stem, the seven stage outputs, last] followed by the hidden (expanded) width of every block
with t > 1, in order. A hidden channel lives in three tensors: the expansion conv's output, the depthwise
conv (one filter per channel: its ``groups`` is the hidden width, so rebuilding with a narrower width is
the compaction), and the projection's input. The first block has no expansion: its hidden channels are
the stem's outputs.

``prune_mode``:
  inside_blocks (default): every hidden width (gated by the expansion BN and the depthwise BN; the first
      block's by the stem BN and its depthwise BN) and the last conv; the stage outputs keep their width.
  coupled: also each stage's output, written by the projection BN of every block in the stage (the
      residual additions tie them) and read by the next blocks' expansion convs or the last conv.
"""

from __future__ import annotations

from torch import nn

from .base import ChannelGroup, PrunableModel, init_weights

PRUNE_MODES = ("inside_blocks", "coupled")
# (expansion t, output channels c, repeats n, first stride s): torchvision's / the paper's Table 2
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))
STEM, LAST = 32, 1280
LAST_CONV = "features.18"  # after the stem and the 17 blocks


def conv_bn_relu6(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """``hidden`` None: no expansion conv (t = 1, the depthwise conv runs on the input)."""

    def __init__(self, c_in: int, hidden: int | None, c_out: int, stride: int, residual: bool):
        super().__init__()
        layers = [] if hidden is None else [conv_bn_relu6(c_in, hidden)]
        width = c_in if hidden is None else hidden
        layers += [conv_bn_relu6(width, width, 3, stride, groups=width), nn.Conv2d(width, c_out, 1, bias=False),
                   nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(PrunableModel):
    """``widths`` as in the module docstring (None = the standard network, width multiplier 1)."""

    rescalable = False  # ReLU6 clips: min(αx, 6) ≠ α·min(x, 6)

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, widths: list[int] | None = None,
                 bn_init: float = 1.0, dropout: float = 0.2, prune_mode: str = "inside_blocks"):
        super().__init__()
        if prune_mode not in PRUNE_MODES:
            raise ValueError(f"prune_mode={prune_mode!r}: choose from {list(PRUNE_MODES)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} is outside [0, 1)")
        default = self.default_widths()
        widths = list(default if widths is None else widths)
        if len(widths) != len(default) or any(int(w) < 1 for w in widths):
            raise ValueError(f"mobilenet_v2 needs {len(default)} positive widths, got {widths}")
        self.num_classes, self.in_channels, self.bn_init = num_classes, in_channels, bn_init
        self.dropout, self.prune_mode = dropout, prune_mode
        self.widths = [int(w) for w in widths]

        features = [conv_bn_relu6(in_channels, self.widths[0], 3, 2)]
        c_in = self.widths[0]
        for block in self.blocks():
            c_out = self.widths[block["out"]]
            hidden = self.widths[block["hidden"]] if block["expand"] else None
            features.append(InvertedResidual(c_in, hidden, c_out, block["stride"], block["residual"]))
            c_in = c_out
        features.append(conv_bn_relu6(c_in, self.widths[8]))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.widths[8], num_classes))
        init_weights(self, bn_init)
        nn.init.normal_(self.classifier[1].weight, 0, 0.01)  # torchvision's classifier init
        nn.init.zeros_(self.classifier[1].bias)

    @staticmethod
    def default_widths() -> list[int]:
        hidden, c_in = [], STEM
        for t, c, n, _ in SETTINGS:
            for _ in range(n):
                hidden += [t * c_in] if t > 1 else []
                c_in = c
        return [STEM, *(c for _, c, _, _ in SETTINGS), LAST, *hidden]

    @staticmethod
    def blocks() -> list[dict]:
        """Per block (features.1 … features.17): its stage, stride, residual, the indices into ``widths``
        of its output and hidden widths, and the modules its hidden channels and its output live in."""
        out, hidden = [], 9
        for s, (t, _, n, stride) in enumerate(SETTINGS):
            for i in range(n):
                f = f"features.{len(out) + 1}.conv"
                if t == 1:  # no expansion: the hidden channels are the stem's outputs (widths[0])
                    convs, gates, project = ("features.0.0", f"{f}.0.0"), ("features.0.1", f"{f}.0.1"), \
                        (f"{f}.1", f"{f}.2")
                else:
                    convs, gates, project = (f"{f}.0.0", f"{f}.1.0"), (f"{f}.0.1", f"{f}.1.1"), (f"{f}.2", f"{f}.3")
                out.append({"stage": s, "stride": stride if i == 0 else 1, "residual": i > 0, "out": 1 + s,
                            "hidden": hidden if t > 1 else 0, "expand": t > 1, "convs": convs, "gates": gates,
                            "project": project})
                hidden += t > 1
        return out

    def arch_kwargs(self) -> dict:
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, "bn_init": self.bn_init,
                "dropout": self.dropout, "prune_mode": self.prune_mode}

    def channel_groups(self) -> list[ChannelGroup]:
        groups = [ChannelGroup(name=b["gates"][0], width=b["hidden"], gates=b["gates"], out=b["convs"] + b["gates"],
                               inp=(b["project"][0],)) for b in self.blocks()]
        groups.append(ChannelGroup(name=f"{LAST_CONV}.1", width=8, gates=(f"{LAST_CONV}.1",),
                                   out=(f"{LAST_CONV}.0", f"{LAST_CONV}.1"), inp=("classifier.1",)))
        if self.prune_mode == "coupled":
            groups = [self.stage_group(s) for s in range(len(SETTINGS))] + groups
        return groups

    def stage_group(self, s: int) -> ChannelGroup:
        """Stage s's output channels: each of its blocks writes them (projection conv and BN); its later
        blocks and the next stage's first block (or the last conv) read them."""
        blocks = self.blocks()
        mine = [k for k, b in enumerate(blocks) if b["stage"] == s]
        readers = [blocks[k]["convs"][0] for k in mine[1:]]
        readers.append(blocks[mine[-1] + 1]["convs"][0] if mine[-1] + 1 < len(blocks) else f"{LAST_CONV}.0")
        convs, gates = zip(*(blocks[k]["project"] for k in mine), strict=True)
        return ChannelGroup(name=f"stage{s + 1}", width=1 + s, gates=gates, out=convs + gates, inp=tuple(readers))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))
