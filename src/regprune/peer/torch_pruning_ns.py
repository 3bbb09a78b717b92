"""Network slimming through Torch-Pruning: the benchmark's peer row (docs/methods.md, Network Slimming).

An independent implementation of the same method on the same model, data and loop: Torch-Pruning's
``BNScalePruner`` adds its ℓ1 subgradient to the BN scales during training (``TorchPruningNS``), and at
the pruning step its global ranking of |γ| and its DependencyGraph surgery remove the channels
(``torch_pruning_prune``). The pruned module is converted back into our model class (rebuilt from the
widths Torch-Pruning left, then its state dict loaded), so costs, saving and fine-tuning are shared.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ..models.base import PrunableModel
from ..pruning.importance import BNScale
from ..regularizers.base import Regularizer

EXAMPLE_SIZE = 32  # spatial size of the tracing input; the traced graph does not depend on it for our CNNs


def producers(model: PrunableModel) -> dict[str, str]:
    """Channel group name -> the conv/linear whose output channels the group is (its first producer)."""
    modules = dict(model.named_modules())
    out = {}
    for g in model.channel_groups():
        convs = [n for n in g.out if isinstance(modules[n], nn.Conv2d | nn.Linear)]
        if not convs:
            raise ValueError(f"channel group {g.name} has no producing conv: Torch-Pruning ranks conv groups")
        out[g.name] = convs[0]
    return out


def bn_scale_pruner(model: PrunableModel, example: torch.Tensor, lam: float = 0.0,
                    ratio: float = 0.0) -> tp.pruner.BNScalePruner:
    """Torch-Pruning's network-slimming pruner over ``model``: NS's global ranking of raw |γ|
    (``normalizer=None``; tp's default divides each layer's scores by their mean), every conv/linear
    that produces none of our channel groups (the classifier) left alone."""
    kept = set(producers(model).values())
    ignored = [m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear) and n not in kept]
    was_training = model.training
    model.eval()  # tracing runs a forward pass: it must not update BN running statistics
    try:
        return tp.pruner.BNScalePruner(model, example, importance=tp.importance.BNScaleImportance(normalizer=None),
                                       reg=lam, global_pruning=True, pruning_ratio=ratio, ignored_layers=ignored)
    finally:
        model.train(was_training)


def example_input(model: PrunableModel, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    p = next(model.parameters())
    shape = shape or (model.arch_kwargs()["in_channels"], EXAMPLE_SIZE, EXAMPLE_SIZE)
    return torch.zeros(1, *shape, device=p.device, dtype=p.dtype)


class TorchPruningNS(Regularizer):
    """λΣ|γ| on every affine BN scale, applied by Torch-Pruning's ``BNScalePruner.regularize``
    (adds λ·sign(γ) to each γ gradient after backward, as NS; docs/methods.md, Network Slimming)."""

    name = "tp_ns"

    def __init__(self, lam: float = 1e-4):
        super().__init__(lam)
        self.pruner: tp.pruner.BNScalePruner | None = None

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        self.pruner = bn_scale_pruner(model, example_input(model), lam=self.lam)

    def penalty(self) -> torch.Tensor:
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
        return self.lam * sum(m.weight.abs().sum() for m in bns)

    @torch.no_grad()
    def after_backward(self) -> None:
        self.pruner.regularize(self.model, reg=self.lam)


@dataclass
class PeerPruneResult:
    model: PrunableModel  # our class, rebuilt from Torch-Pruning's pruned module
    masks: dict[str, torch.Tensor]  # group name -> bool mask of the channels Torch-Pruning kept
    threshold: float | None  # largest |γ| Torch-Pruning removed (None: nothing removed)
    module: nn.Module  # Torch-Pruning's pruned copy of the input model (its surgery)
    skipped: list[str] = field(default_factory=list)  # groups the global threshold would empty: tp leaves them whole


def torch_pruning_prune(model: PrunableModel, ratio: float, input_shape: tuple[int, ...]) -> PeerPruneResult:
    """Prune ``ratio`` of all channels by Torch-Pruning's global |γ| ranking and DependencyGraph surgery,
    on a copy of ``model``; return the pruned network as our model class and the masks it implies."""
    work = copy.deepcopy(model)
    names = producers(work)
    gammas = BNScale()(work)  # |γ| per channel, as both pruners rank them
    pruner = bn_scale_pruner(work, example_input(work, input_shape), ratio=ratio)
    pruner.step()
    removed = {name: set() for name in names}
    by_module = {module: group for group, module in names.items()}
    for module, is_out, idxs in pruner.pruning_history():
        if is_out and module in by_module:
            removed[by_module[module]].update(int(i) for i in idxs)
    masks = {}
    for name, scores in gammas.items():
        mask = torch.ones(len(scores), dtype=torch.bool)
        mask[sorted(removed[name])] = False
        masks[name] = mask
    modules = dict(work.named_modules())
    widths = list(model.widths)
    for g in model.channel_groups():
        widths[g.width] = _out_channels(modules[names[g.name]])
        if widths[g.width] != int(masks[g.name].sum()):
            raise RuntimeError(f"Torch-Pruning left {widths[g.width]} channels in {g.name}, its history says "
                               f"{int(masks[g.name].sum())}")
    rebuilt = model.rebuild(widths)
    p = next(model.parameters())
    rebuilt.to(device=p.device, dtype=p.dtype)
    rebuilt.load_state_dict(work.state_dict(), strict=True)
    rebuilt.train(model.training)
    pruned = [s[~masks[k]] for k, s in gammas.items() if (~masks[k]).any()]
    threshold = float(torch.cat(pruned).max()) if pruned else None
    skipped = [k for k, s in gammas.items()
               if threshold is not None and masks[k].all() and bool((s <= threshold).all())]
    return PeerPruneResult(model=rebuilt, masks=masks, threshold=threshold, module=work, skipped=skipped)


def _out_channels(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
