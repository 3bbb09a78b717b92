"""ISTA on BN γ weighted by per-channel cost, with the γ–W rescaling trick (Ye et al., ICLR 2018, "Rethinking the
smaller-norm-less-informative assumption"; docs/methods.md, RSNLI).

Penalty λ Σ_g c_g Σ_{k∈g} |γ_k|, optimised by soft-thresholding γ ← sign(γ)·max(|γ| − lr·λ·c_g, 0) after
each SGD step (``update=prox``, ISTA) or by adding λc_g·sign(γ) to the gradient (``update=subgradient``).

Cost weights c_g (``cost``), from sizes measured by forward hooks on the first forward pass after ``attach``:
- ``memory`` (the authors' public code): the memory one channel occupies — its feature map at every gate
  (H·W) plus its weights in its producers (k_h·k_w·C_in/groups; linear: in_features) and in its consumers
  (k_h·k_w·C_out/groups; linear: out_features) — divided by the input image's H·W;
- ``macs`` (ours): the MACs one channel costs in its producers (H_out·W_out·C_in/groups·k_h·k_w) and consumers
  (H_out·W_out·C_out/groups·k_h·k_w), divided by the channel-weighted mean over all groups (mean weight 1).

γ–W rescaling (``rescale`` = α ≠ 1): when penalty training starts, every gate's γ and β are multiplied by α and
its consumers' input slices divided by α (``pruning.rescale``, function-preserving); ISTA then acts on αγ; when
the phase ends the scaling is undone (γ, β ÷ α, consumers × α), so exact zeros stay exact.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.base import PrunableModel
from ..pruning.rescale import check_rescalable, rescale_channels
from .base import BNRegularizer, checked_update

COSTS = ("memory", "macs")


def channel_weights(module: nn.Module, per_out: bool) -> float:
    """Weights one output (``per_out``) or one input channel of a conv/linear holds; 0 for other modules (BN's two
    per-channel parameters are not counted, as in the authors' code)."""
    if isinstance(module, nn.Linear):
        return float(module.in_features if per_out else module.out_features)
    if isinstance(module, nn.modules.conv._ConvNd):
        fan = module.in_channels if per_out else module.out_channels
        return float(module.weight[0, 0].numel() * fan // module.groups)
    return 0.0


def channel_costs(model: PrunableModel, out_hw: dict[str, int]) -> dict[str, float]:
    """MACs per channel of each group, given each conv's output H·W (``out_hw``, by module name)."""
    modules = dict(model.named_modules())

    def macs(name: str, per_out: bool) -> float:
        spatial = out_hw[name] if isinstance(modules[name], nn.modules.conv._ConvNd) else 1
        return spatial * channel_weights(modules[name], per_out)

    return {g.name: sum(macs(n, True) for n in g.out) + sum(macs(n, False) for n in g.inp)
            for g in model.channel_groups()}


def channel_memory(model: PrunableModel, out_hw: dict[str, int], input_hw: int) -> dict[str, float]:
    """Memory per channel of each group, in units of the input image's H·W (``input_hw``): the channel's feature
    map at each gate (``out_hw`` by module name) plus its weights in its producers and consumers."""
    modules = dict(model.named_modules())
    return {g.name: (sum(out_hw[b] for b in g.gates) + sum(channel_weights(modules[n], True) for n in g.out)
                     + sum(channel_weights(modules[n], False) for n in g.inp)) / input_hw
            for g in model.channel_groups()}


class CostWeightedL1(BNRegularizer):
    name = "rsnli"

    def __init__(self, lam: float = 1e-4, update: str = "prox", cost: str = "macs", rescale: float = 1.0):
        super().__init__(lam)
        self.update = checked_update(update)
        if cost not in COSTS:
            raise ValueError(f"cost={cost!r}: choose from {list(COSTS)}")
        if not rescale > 0:
            raise ValueError(f"rescale={rescale} must be > 0")
        self.cost, self.rescale = cost, float(rescale)
        self.weights: torch.Tensor | None = None
        self.rescaled = False
        self._hooks: list = []

    @property
    def criterion(self) -> str:
        return "threshold" if self.update == "prox" else "percentile"

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        if self.rescale != 1:
            check_rescalable(model)
        self._remove_hooks()
        self.weights, self._out_hw, self._input_hw = None, {}, 0
        gates = model.gate_modules()
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.conv._ConvNd) or name in gates:
                self._hooks.append(m.register_forward_hook(self._record(name)))
        self._hooks.append(model.register_forward_pre_hook(self._record_input))

    def _record(self, name: str):
        def hook(module, inputs, output):
            self._out_hw[name] = output.shape[2:].numel()
        return hook

    def _record_input(self, module, inputs) -> None:
        self._input_hw = inputs[0].shape[2:].numel()

    def on_epoch(self, epoch: int) -> None:
        if self.rescale != 1 and not self.rescaled:
            self._scale_all(self.rescale)
            self.rescaled = True

    def detach(self) -> None:
        self._remove_hooks()
        if self.rescaled:
            self._scale_all(1.0 / self.rescale)
            self.rescaled = False

    def _scale_all(self, alpha: float) -> None:
        rescale_channels(self.model, {g.name: alpha for g in self.model.channel_groups()})

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def channel_weights(self) -> torch.Tensor:
        """c_g for every γ entry, in the order of the flat γ vector (a γ of no group: its BN's first group's)."""
        if self.weights is None:
            if not self._out_hw:
                raise RuntimeError("rsnli needs one forward pass after attach() to measure layer sizes")
            self._remove_hooks()
            if self.cost == "memory":
                costs = channel_memory(self.model, self._out_hw, self._input_hw)
            else:
                costs = channel_costs(self.model, self._out_hw)
            gates = self.model.gate_modules()
            per_gate = {}
            for g in self.model.channel_groups():
                for b in g.gates:
                    w = per_gate.setdefault(b, torch.full((gates[b].weight.numel(),), costs[g.name],
                                                          dtype=torch.float64))
                    w[self.model.gate_index(g, b).cpu()] = costs[g.name]
            w = torch.cat([per_gate[b] for b in gates])
            self.weights = (w / w.mean() if self.cost == "macs" else w).to(self.gammas[0])
        return self.weights

    def state_dict(self) -> dict:
        return {"rescaled": self.rescaled}

    def load_state_dict(self, state: dict) -> None:
        self.rescaled = bool(state.get("rescaled", False))

    def penalty(self) -> torch.Tensor:
        return self.lam * (self.channel_weights() * self.flat(detach=False).abs()).sum()

    @torch.no_grad()
    def after_backward(self) -> None:
        if self.update == "subgradient" and self.lam > 0:
            self.add_grad(self.lam * self.channel_weights() * self.flat().sign())

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self.update == "prox" and self.lam > 0:
            g = self.flat()
            self.assign(g.sign() * (g.abs() - lr * self.lam * self.channel_weights()).clamp_min(0))
