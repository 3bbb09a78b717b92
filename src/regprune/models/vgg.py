"""VGG for CIFAR as in Network Slimming: 3×3 conv + BN + ReLU blocks, 2×2 max-pool at 'M',
global 2×2 average pool at the end, one linear classifier (NS repo ``vgg.py``)."""

from __future__ import annotations

from torch import nn

from .base import ChannelGroup, PrunableModel, init_weights

LAYOUTS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512],
    "vgg_tiny": [32, 32, "M", 64, 64, "M", 128, 128],
}


class VGG(PrunableModel):
    """``depth`` names a layout; ``widths`` overrides its conv widths (one per conv, in order)."""

    def __init__(self, depth: str = "vgg19", num_classes: int = 10, in_channels: int = 3,
                 widths: list[int] | None = None, bn_init: float = 1.0):
        super().__init__()
        if depth not in LAYOUTS:
            raise ValueError(f"unknown VGG layout {depth!r}; choose from {sorted(LAYOUTS)}")
        layout = LAYOUTS[depth]
        default = [v for v in layout if v != "M"]
        widths = list(default if widths is None else widths)
        if len(widths) != len(default) or any(int(w) < 1 for w in widths):
            raise ValueError(f"{depth} needs {len(default)} positive widths, got {widths}")
        self.depth, self.num_classes, self.in_channels, self.bn_init = depth, num_classes, in_channels, bn_init
        self.widths = [int(w) for w in widths]

        layers: list[nn.Module] = []
        c_in, i = in_channels, 0
        for v in layout:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c_out = self.widths[i]
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c_in, i = c_out, i + 1
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)
        init_weights(self, bn_init)

    def arch_kwargs(self) -> dict:
        return {"depth": self.depth, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "bn_init": self.bn_init}

    def channel_groups(self) -> list[ChannelGroup]:
        convs = [n for n, m in self.features.named_children() if isinstance(m, nn.Conv2d)]
        groups = []
        for i, conv in enumerate(convs):
            bn = str(int(conv) + 1)
            consumer = f"features.{convs[i + 1]}" if i + 1 < len(convs) else "classifier"
            groups.append(ChannelGroup(name=f"features.{bn}", width=i, gates=(f"features.{bn}",),
                                       out=(f"features.{conv}", f"features.{bn}"), inp=(consumer,)))
        return groups

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))
