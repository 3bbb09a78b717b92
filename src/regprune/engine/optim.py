"""Optimizer configs (instantiated from yaml) and per-epoch learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn


def _no_decay(model: nn.Module) -> set[int]:
    """ids of BatchNorm parameters (γ, β)."""
    return {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in m.parameters(recurse=False)}


class OptimizerSpec:
    def __init__(self, lr: float, weight_decay: float, bn_weight_decay: bool):
        if not lr > 0:
            raise ValueError(f"lr={lr} must be > 0")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay={weight_decay} must be ≥ 0")
        self.lr, self.weight_decay, self.bn_weight_decay = float(lr), float(weight_decay), bn_weight_decay

    def param_groups(self, model: nn.Module, weight_decay: float | None = None) -> list[dict]:
        """``weight_decay``: a phase's own value (None: the optimizer's)."""
        decay = self.weight_decay if weight_decay is None else float(weight_decay)
        if self.bn_weight_decay:
            return [{"params": list(model.parameters()), "weight_decay": decay}]
        skip = _no_decay(model)
        params = list(model.parameters())
        return [{"params": [p for p in params if id(p) not in skip], "weight_decay": decay},
                {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0}]

    def build(self, model: nn.Module, weight_decay: float | None = None) -> torch.optim.Optimizer:
        raise NotImplementedError


class SGD(OptimizerSpec):
    """SGD with momentum; NS's paper uses Nesterov, its public port plain momentum and wd on γ, β."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 1e-4, bn_weight_decay: bool = True):
        super().__init__(lr, weight_decay, bn_weight_decay)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum} is outside [0, 1)")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov

    def build(self, model: nn.Module, weight_decay: float | None = None) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.param_groups(model, weight_decay), lr=self.lr, momentum=self.momentum,
                               nesterov=self.nesterov)


class Adam(OptimizerSpec):
    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0,
                 bn_weight_decay: bool = True):
        super().__init__(lr, weight_decay, bn_weight_decay)
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas={betas} must be two values in [0, 1)")
        self.betas = betas

    def build(self, model: nn.Module, weight_decay: float | None = None) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.param_groups(model, weight_decay), lr=self.lr, betas=self.betas)


def lr_at(epoch: int, epochs: int, base_lr: float, schedule: str, milestones: list[float], gamma: float) -> float:
    """Learning rate for a (0-based) epoch. Step milestones are fractions of ``epochs`` rounded to whole
    epochs (NS: ÷10 at 50% and 75%), so no decay is skipped by a float comparison."""
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * gamma ** sum(epoch >= round(m * epochs) for m in milestones)
    if schedule == "cosine":
        return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / max(1, epochs)))
    raise ValueError(f"unknown lr schedule {schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
