"""The one training loop (every training phase), evaluation, and the speed switches both use."""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import active, all_reduce_sum
from ..errors import UserError
from ..regularizers.base import Regularizer

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AMP_MODES = ("auto", "off", *AMP_DTYPES)
LAYOUT_MODES = ("auto", "true", "false")


class NonFiniteError(UserError):
    """Loss or weights became NaN/inf; the run stops and keeps its last good checkpoint."""


def perf_modes(amp: str, channels_last: str | bool) -> tuple[str, str]:
    """The perf section's ``amp`` and ``channels_last`` checked and lower-cased (yaml may give a bool)."""
    amp, layout = str(amp).lower(), str(channels_last).lower()
    if amp not in AMP_MODES:
        raise UserError(f"perf.amp={amp!r}: choose from {list(AMP_MODES)}")
    if layout not in LAYOUT_MODES:
        raise UserError(f"perf.channels_last={layout!r}: choose from {list(LAYOUT_MODES)}")
    return amp, layout


@dataclass(frozen=True)
class Accel:
    """Speed switches resolved for one device (config section ``perf``).

    amp: autocast dtype name ("bf16", "fp16") or None for fp32. BatchNorm and the loss stay fp32
    under autocast; fp16 needs a GradScaler (see ``MixedPrecision``), bf16 does not.
    channels_last: NHWC activations and weights (fast convolutions on tensor cores).
    compile: ``torch.compile`` the model for training and evaluation.
    """

    device_type: str = "cpu"
    amp: str | None = None
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def resolve(cls, device: torch.device | str, amp: str = "auto", channels_last: str | bool = "auto",
                compile: bool = False) -> Accel:
        """"auto" turns a switch on where it helps (measured by ``make bench``): channels_last everywhere
        (on 2 CPU cores 0.77–0.96× the step time of VGG-11/19 and ResNet-56, 0.8× on vgg_tiny/digits) and
        bf16 autocast on CUDA only (0.59× on CPU too, but the CPU path stays fp32, the reference numerics)."""
        device_type = torch.device(device).type
        cuda = device_type == "cuda"
        amp, layout = perf_modes(amp, channels_last)
        if amp == "auto":
            amp = "bf16" if cuda and torch.cuda.is_bf16_supported() else "off"
        return cls(device_type=device_type, amp=None if amp == "off" else amp,
                   channels_last=layout in ("auto", "true"), compile=bool(compile))

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def prepare(self, model: nn.Module) -> nn.Module:
        """Puts ``model``'s weights in the chosen layout (in place) and returns what to call for forward
        passes: the model itself, or its compiled wrapper (which shares the parameters)."""
        model.to(memory_format=self.memory_format)
        return torch.compile(model) if self.compile else model

    def precision(self) -> MixedPrecision:
        return MixedPrecision(self.device_type, self.amp)


class MixedPrecision:
    """Autocast for forward passes and, for fp16, the GradScaler; one per training phase (the scale
    adapts over steps and is not checkpointed: a resumed phase starts again at the initial scale)."""

    def __init__(self, device_type: str = "cpu", amp: str | None = None):
        self.device_type, self.dtype = device_type, AMP_DTYPES.get(amp) if amp else None
        self.scaler = torch.amp.GradScaler(device_type) if amp == "fp16" else None

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             precision: MixedPrecision | None = None) -> dict[str, float]:
    """Test loss and accuracy; sums stay on the device and are read once at the end."""
    precision = precision or MixedPrecision()
    was_training = model.training
    model.eval()
    correct = loss_sum = None
    n = 0
    for x, y in batches:
        with precision.autocast():
            out = model(x)
        batch_loss = F.cross_entropy(out.float(), y, reduction="sum").double()
        batch_correct = (out.argmax(1) == y).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        n += len(y)
    model.train(was_training)
    if loss_sum is None:
        return {"acc": 0.0, "loss": 0.0}
    return {"acc": 100.0 * correct.item() / n, "loss": loss_sum.item() / n}


def train_one_epoch(model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer,
                    regularizer: Regularizer | None, *, epoch: int, step: int = 0,
                    precision: MixedPrecision | None = None, progress: bool = False,
                    desc: str = "") -> tuple[dict[str, float], int]:
    """One pass over ``batches``; returns (train loss/acc, global step after the epoch).

    ``model`` is what runs the forward pass (possibly a compiled wrapper of the regularised model).
    Loss and accuracy are accumulated on-device and read once per epoch (no host sync per step);
    a non-finite loss is therefore detected at the end of the epoch. In a run across processes they are
    summed over the ranks' shares, so every rank reports (and stops on) the same numbers.
    """
    precision = precision or MixedPrecision()
    scaler = precision.scaler
    model.train()
    loss_sum = correct = None
    n = 0
    it = batches
    if progress:
        from tqdm import tqdm

        it = tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    for x, y in it:
        with precision.autocast():
            out = model(x)
            loss = F.cross_entropy(out, y)  # autocast computes the loss in fp32
        if regularizer is not None and regularizer.in_loss:
            loss = loss + regularizer.penalty()  # fp32, outside autocast
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # penalty gradients go in after unscaling (docs/methods.md, Training step)
        if regularizer is not None:
            regularizer.after_backward()
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)  # skipped if a gradient overflowed
            scaler.update()
        if regularizer is not None:
            regularizer.after_step(optimizer.param_groups[0]["lr"])
            regularizer.on_iteration(step)
        step += 1
        batch_loss = loss.detach() * len(y)
        batch_correct = (out.detach().argmax(1) == y).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        n += len(y)
    if loss_sum is not None and active():
        sums = all_reduce_sum(torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(n), device=y.device)]))
        loss_sum, correct, n = sums[0], sums[1], int(sums[2].item())
    mean_loss = (loss_sum / max(n, 1)).item() if loss_sum is not None else 0.0
    if not math.isfinite(mean_loss):
        raise NonFiniteError(f"non-finite training loss in epoch {epoch + 1} (by step {step}); "
                             "lower the learning rate or λ")
    return {"loss": mean_loss, "acc": 100.0 * (correct.item() if correct is not None else 0) / max(n, 1)}, step
