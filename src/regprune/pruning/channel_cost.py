"""MACs as a function of how many channels of each group are on, for FLOPs budgets during training
(docs/methods.md, Gates).

``ChannelCost(model, sizes)(on)`` takes per group the number of channels that are on (a count, or a sum of gate
factors, differentiable) and returns the MACs ``cost.count_macs`` counts for the model pruned to those widths:
a conv costs k_h·k_w·H_out·W_out·C_in·C_out (a depthwise conv k_h·k_w·H_out·W_out·C_out), a linear layer
C_in·C_out, where C_in and C_out add the counts of the groups the layer reads and writes to its channels that
belong to no group. With gate factors this is bilinear in the gates of adjacent groups: a budget means the
same here as in ``schedule.prune.flops_target``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.base import PrunableModel

LAYERS = (nn.Conv2d, nn.Linear)


class OutputSizes:
    """Records, on the next forward pass, the output H·W of every conv and linear layer that runs (a layer of a
    skipped branch does not run and costs nothing)."""

    def __init__(self, model: nn.Module):
        self.hw: dict[str, int] = {}
        self.hooks = [m.register_forward_hook(self.recorder(n)) for n, m in model.named_modules()
                      if isinstance(m, LAYERS)]

    def recorder(self, name: str):
        def hook(module, inputs, output):
            self.hw[name] = output.shape[2:].numel() if isinstance(module, nn.Conv2d) else 1
        return hook

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []


@dataclass
class Layer:
    per_pair: int  # MACs per (input channel, output channel) pair, or per output channel if depthwise
    depthwise: bool
    fixed_in: int  # channels of no group
    fixed_out: int
    reads: list[str]  # groups whose channels the layer reads (dim 1) / writes (dim 0)
    writes: list[str]


class ChannelCost:
    def __init__(self, model: PrunableModel, hw: dict[str, int]):
        modules = dict(model.named_modules())
        widths = {g.name: model.widths[g.width] for g in model.channel_groups()}
        self.full = dict(widths)
        self.layers: list[Layer] = []
        for name, m in modules.items():
            if not isinstance(m, LAYERS) or name not in hw:
                continue
            reads = [g.name for g in model.channel_groups() if name in g.inp]
            writes = [g.name for g in model.channel_groups() if name in g.out]
            c_in, c_out = (m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d) else (m.in_features,
                                                                                            m.out_features)
            groups = m.groups if isinstance(m, nn.Conv2d) else 1
            depthwise = groups > 1 and groups == c_in == c_out
            if groups > 1 and not depthwise:
                raise ValueError(f"{name}: grouped convolutions other than depthwise are not counted")
            kernel = m.weight[0, 0].numel() if isinstance(m, nn.Conv2d) else 1
            self.layers.append(Layer(kernel * hw[name], depthwise, c_in - sum(widths[g] for g in reads),
                                     c_out - sum(widths[g] for g in writes), reads, writes))

    def __call__(self, on: dict[str, torch.Tensor | float]) -> torch.Tensor:
        """MACs with ``on[g]`` channels of group g on (groups not given are full)."""
        count = {**self.full, **on}
        total = torch.zeros((), dtype=torch.float64)
        for layer in self.layers:
            c_out = layer.fixed_out + sum(count[g] for g in layer.writes)
            if layer.depthwise:
                total = total + layer.per_pair * c_out
            else:
                total = total + layer.per_pair * c_out * (layer.fixed_in + sum(count[g] for g in layer.reads))
        return total
