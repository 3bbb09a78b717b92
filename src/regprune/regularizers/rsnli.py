"""ISTA on BN γ weighted by compute cost (Ye et al., ICLR 2018, "Rethinking the smaller-norm-less-
informative assumption"; docs/methods.md, RSNLI).

Penalty λ Σ_g c_g Σ_{k∈g} |γ_k|, optimised by soft-thresholding γ ← sign(γ)·max(|γ| − lr·λ·c_g, 0) after
each SGD step (``update=prox``, ISTA) or by adding λc_g·sign(γ) to the gradient (``update=subgradient``).

Our weighting (Ye et al. scale each layer's penalty by its cost; the exact normalisation here is ours):
c_g = MACs that one channel of group g costs = Σ over producers (conv: H_out·W_out·C_in/groups·k_h·k_w;
linear: in_features) + Σ over consumers (conv: H_out·W_out·C_out/groups·k_h·k_w; linear: out_features),
divided by the channel-weighted mean over all groups, so that the mean weight per channel is 1 and λ is
on the ℓ1 scale. Output sizes are read by forward hooks on the first forward pass after ``attach``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.base import PrunableModel
from .base import BNRegularizer, checked_update


def channel_costs(model: PrunableModel, out_hw: dict[str, int]) -> dict[str, float]:
    """MACs per channel of each group, given each conv's output H·W (``out_hw``, by module name)."""
    modules = dict(model.named_modules())

    def macs(name: str, per_out: bool) -> float:
        m = modules[name]
        if isinstance(m, nn.Linear):
            return float(m.in_features if per_out else m.out_features)
        if isinstance(m, nn.modules.conv._ConvNd):
            k = m.weight[0, 0].numel()
            fan = m.in_channels if per_out else m.out_channels
            return float(out_hw[name] * fan // m.groups * k)
        return 0.0  # BN and other per-channel modules: negligible, not counted

    return {g.name: sum(macs(n, True) for n in g.out) + sum(macs(n, False) for n in g.inp)
            for g in model.channel_groups()}


class CostWeightedL1(BNRegularizer):
    name = "rsnli"

    def __init__(self, lam: float = 1e-4, update: str = "prox"):
        super().__init__(lam)
        self.update = checked_update(update)
        self.weights: torch.Tensor | None = None
        self._hooks: list = []

    @property
    def criterion(self) -> str:
        return "threshold" if self.update == "prox" else "percentile"

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self._remove_hooks()
        self.weights, self._out_hw = None, {}
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                self._hooks.append(m.register_forward_hook(self._record(name)))

    def _record(self, name: str):
        def hook(module, inputs, output):
            self._out_hw[name] = output.shape[2:].numel()
        return hook

    def detach(self) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def channel_weights(self) -> torch.Tensor:
        """c_g for every γ entry, in the order of the flat γ vector."""
        if self.weights is None:
            if not self._out_hw:
                raise RuntimeError("rsnli needs one forward pass after attach() to measure layer sizes")
            self._remove_hooks()
            costs = channel_costs(self.model, self._out_hw)
            gate_cost = {b: costs[g.name] for g in self.model.channel_groups() for b in g.gates}
            names = list(self.model.gate_modules())
            w = torch.cat([torch.full((n,), gate_cost[b], dtype=torch.float64)
                           for b, n in zip(names, self.sizes, strict=True)])
            self.weights = (w / w.mean()).to(self.gammas[0])
        return self.weights

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
