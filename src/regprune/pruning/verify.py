"""The compaction-equivalence check: a model's declared channel groups are right when the compacted network
computes exactly what the masked one computes. Every registered model passes it (tests/test_compaction.py,
tests/test_models_zoo.py); run it on a new architecture before training it (README, "Prune your own
architecture")."""

from __future__ import annotations

import torch

from ..models.base import PrunableModel
from .compact import compact
from .masks import apply_masks


def random_masks(model: PrunableModel, keep_prob: float, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Keep each channel of each group with probability ``keep_prob`` (at least one per group)."""
    masks = {}
    for grp in model.channel_groups():
        n = model.widths[grp.width]
        m = torch.rand(n, generator=g) < keep_prob
        m[torch.randint(0, n, (1,), generator=g)] = True  # never empty
        masks[grp.name] = m
    return masks


def randomise_bn(model: torch.nn.Module, g: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters, so equality is not a coincidence."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.rand(m.weight.shape, generator=g, dtype=m.weight.dtype) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype) * 0.1
            m.running_mean = torch.randn(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype) * 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5


def check_equivalence(model: PrunableModel, input_shape: tuple[int, ...], keep_prob: float = 0.5,
                      seed: int = 0) -> tuple[PrunableModel, PrunableModel, dict[str, torch.Tensor]]:
    """Mask random channels of every group, compact, and assert (float64, eval mode) that the smaller model's
    outputs equal the masked model's; returns (masked model, compacted model, masks). A wrong group declaration
    fails here: in compaction's strict state-dict load, or in this comparison."""
    g = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    randomise_bn(model, g)
    masks = random_masks(model, keep_prob, g)
    apply_masks(model, masks)
    small = compact(model, masks).eval()
    x = torch.randn(4, *input_shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-8)
    return model, small, masks
