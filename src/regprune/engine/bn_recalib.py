"""Adaptive BatchNorm recalibration: re-estimate BN running statistics after pruning (EagleEye)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..distributed import sync_buffers


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_batches: int) -> None:
    """Reset BN running statistics and recompute them as a cumulative average over ``num_batches``
    training batches in train mode; weights are untouched. Across processes each rank reads its share of the
    batches and every rank then takes rank 0's statistics, so all ranks keep the same model."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = model.training
    model.train()
    for i, (x, _) in enumerate(batches):
        if i >= num_batches:
            break
        model(x)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.train(was_training)
    sync_buffers(model)
