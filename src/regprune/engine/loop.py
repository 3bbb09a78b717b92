"""The one training loop (every training phase) and evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..regularizers.base import Regularizer


class NonFiniteError(UserError):
    """Loss or weights became NaN/inf; the run stops and keeps its last good checkpoint."""


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    n = 0
    for x, y in batches:
        out = model(x).float()
        loss_sum = loss_sum + F.cross_entropy(out, y, reduction="sum").double().cpu()
        correct = correct + (out.argmax(1) == y).sum().cpu()
        n += len(y)
    model.train(was_training)
    return {"acc": 100.0 * correct.item() / max(n, 1), "loss": loss_sum.item() / max(n, 1)}


def train_one_epoch(model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer,
                    regularizer: Regularizer | None, *, epoch: int, step: int = 0,
                    progress: bool = False, desc: str = "") -> tuple[dict[str, float], int]:
    """One pass over ``batches``; returns (train loss/acc, global step after the epoch).

    Loss and accuracy are accumulated on-device and read once per epoch (no host sync per step).
    """
    model.train()
    loss_sum = correct = None
    n = 0
    it = batches
    if progress:
        from tqdm import tqdm

        it = tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    for x, y in it:
        out = model(x)
        loss = F.cross_entropy(out, y)
        if regularizer is not None and regularizer.in_loss:
            loss = loss + regularizer.penalty()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if regularizer is not None:
            regularizer.after_backward()
        optimizer.step()
        if regularizer is not None:
            regularizer.after_step(optimizer.param_groups[0]["lr"])
            regularizer.on_iteration(step)
        step += 1
        batch_loss = loss.detach() * len(y)
        batch_correct = (out.detach().argmax(1) == y).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        n += len(y)
    mean_loss = (loss_sum / max(n, 1)).item() if loss_sum is not None else 0.0
    if not math.isfinite(mean_loss):
        raise NonFiniteError(f"non-finite training loss in epoch {epoch + 1} (by step {step}); "
                             "lower the learning rate or λ")
    return {"loss": mean_loss, "acc": 100.0 * (correct.item() if correct is not None else 0) / max(n, 1)}, step
