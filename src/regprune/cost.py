"""Model cost: parameters, conv+linear multiply-accumulates (MACs), FLOPs = 2×MACs, CPU latency."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of every Conv2d and Linear for one input of ``input_shape`` (C, H, W).

    Conv: out_elements × (C_in / groups) × k_h × k_w; Linear: out_elements × in_features.
    BN, ReLU, pooling and additions are not counted (equal to FlopCounterMode's total / 2).
    """
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    try:
        model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


OUTLIER_FACTOR = 3.0  # a timed call slower than this × the median is an outlier (descheduled, cold cache)


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1, repeats: int = 51,
                    warmup: int = 5) -> dict:
    """Wall time of one eval-mode forward pass on the model's device, over ``repeats`` timed calls:
    ``latency_ms`` (the median: any ``repeats // 2`` outliers cannot move it past the other calls),
    ``latency_ms_iqr`` (interquartile range) and ``latency_outlier_share`` (the share of calls slower than
    OUTLIER_FACTOR × the median: a few are usual on a shared machine, many flag a disturbed measurement)."""
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x = torch.randn(batch, *input_shape, device=p.device, dtype=p.dtype)
    sync = torch.cuda.synchronize if p.is_cuda else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        model(x)
        sync()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    model.train(was_training)
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4)
    return {"latency_ms": median, "latency_ms_iqr": q3 - q1,
            "latency_outlier_share": sum(t > OUTLIER_FACTOR * median for t in times) / len(times)}


def model_cost(model: nn.Module, input_shape: tuple[int, ...], latency: bool = True) -> dict:
    macs = count_macs(model, input_shape)
    cost = {"params": count_params(model), "macs": macs, "flops": 2 * macs}
    if latency:
        cost.update(measure_latency(model, input_shape))
    return cost


def macs_at_widths(model, widths: list[int], input_shape: tuple[int, ...]) -> int:
    """MACs of ``model``'s architecture at other widths, counted on the meta device (no weights allocated)."""
    with torch.device("meta"):
        return count_macs(model.rebuild(widths), input_shape)
