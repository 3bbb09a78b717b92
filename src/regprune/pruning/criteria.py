"""Criteria: scores → which channels survive. A channel survives when its score is strictly above the
criterion's threshold (Network Slimming's rule; docs/methods.md, Pruning criteria).

``percentile``  the ``ratio`` quantile of all scores (scope global, NS) or of each group's (scope layer);
``threshold``   a fixed value (zero detection with 0 after proximal steps, Li/Hu's 0.009);
``valley``      the first local minimum of the score histogram (polarization).
A FLOPs target (``flops_for_ratio``) searches the percentile ratio that meets it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import UserError
from .importance import Scores
from .masks import PruneResult, guard

Masks = dict[str, torch.Tensor]
SCOPES = ("global", "layer")


class Criterion:
    name = "criterion"

    def __call__(self, scores: Scores) -> tuple[Masks, float | None]:
        """(masks, the global threshold used or None)."""
        raise NotImplementedError


class Percentile(Criterion):
    """Prune the ``ratio`` share of lowest scores: NS's count ⌊N·ratio⌋ + 1 of all channels (scope global) or
    ⌊n·ratio⌋ of each group's (scope layer). Without ``tiebreak`` the global rule is NS's own, "keep the scores
    above the value at index ⌊N·ratio⌋", which removes every channel tied with it: all the exact zeros of a
    proximal penalty, whatever the ratio. With it (the prune phase passes ``constant_outputs``) exactly that
    count goes, equal scores lowest ``tiebreak`` first."""

    name = "percentile"

    def __init__(self, ratio: float, scope: str = "global", tiebreak: Scores | None = None):
        if not 0.0 <= ratio < 1.0:
            raise UserError(f"schedule.prune.ratio={ratio} is outside [0, 1)")
        if scope not in SCOPES:
            raise UserError(f"schedule.prune.scope={scope!r}: choose from {list(SCOPES)}")
        self.ratio, self.scope, self.tiebreak = ratio, scope, tiebreak

    def __call__(self, scores: Scores) -> tuple[Masks, float | None]:
        if self.scope == "layer":
            return {k: self.keep(s, int(len(s) * self.ratio), None if self.tiebreak is None else self.tiebreak[k])
                    for k, s in scores.items()}, None
        flat = torch.cat(list(scores.values()))
        n_drop = int(len(flat) * self.ratio) + 1 if self.ratio > 0 else 0
        if self.tiebreak is None:  # NS: keep the scores above the value at index ⌊N·ratio⌋ (ratio 0 keeps all)
            threshold = float(flat.sort().values[n_drop - 1]) if n_drop else -1.0
            return {k: s > threshold for k, s in scores.items()}, threshold
        keep = self.keep(flat, n_drop, torch.cat([self.tiebreak[k] for k in scores]))
        threshold = float(flat[~keep].max()) if n_drop else -1.0
        return dict(zip(scores, keep.split([len(s) for s in scores.values()]), strict=True)), threshold

    @staticmethod
    def keep(scores: torch.Tensor, n_drop: int, tiebreak: torch.Tensor | None) -> torch.Tensor:
        """Mask without the ``n_drop`` lowest scores, equal scores by lowest ``tiebreak``, then by position."""
        order = torch.arange(len(scores)) if tiebreak is None else tiebreak.argsort(stable=True)
        order = order[scores[order].argsort(stable=True)]
        mask = torch.ones_like(scores, dtype=torch.bool)
        mask[order[:n_drop]] = False
        return mask


class Threshold(Criterion):
    name = "threshold"

    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def __call__(self, scores: Scores) -> tuple[Masks, float | None]:
        return {k: s > self.value for k, s in scores.items()}, self.value


class Valley(Criterion):
    name = "valley"

    def __init__(self, bin_width: float = 0.01):
        self.bin_width = bin_width

    def __call__(self, scores: Scores) -> tuple[Masks, float | None]:
        threshold = valley_threshold(scores, self.bin_width)
        return {k: s > threshold for k, s in scores.items()}, threshold


CRITERIA = ("percentile", "threshold", "valley")


def select(scores: Scores, criterion: Criterion, min_channels: int = 1, on_empty: str = "error",
           max_layer_ratio: float | None = None) -> PruneResult:
    """The criterion's masks after the guards (``pruning.masks.guard``)."""
    masks, threshold = criterion(scores)
    return guard(masks, scores, threshold, min_channels, on_empty, max_layer_ratio)


def build_criterion(name: str, ratio: float, scope: str, threshold: float,
                    tiebreak: Scores | None = None) -> Criterion:
    if name == "percentile":
        return Percentile(ratio, scope, tiebreak)
    if name == "threshold":
        return Threshold(threshold)
    if name == "valley":
        return Valley()
    raise UserError(f"schedule.prune.criterion={name!r}: choose auto or one of {list(CRITERIA)}")


def valley_threshold(scores: Scores, bin_width: float = 0.01) -> float:
    """Polarization's criterion (Zhuang et al. 2020): histogram all scores with bins of ``bin_width``
    from 0 and scan up from 0 for the first local minimum, a bin lower than the one before it and not
    higher than the one after it (the first bin of a flat valley). Returns the centre of that bin; the
    channels at or below it (the cluster at 0 and the valley's lower half) are pruned."""
    values = torch.cat([s.flatten() for s in scores.values()]).double().abs()
    bins = int(values.max() / bin_width) + 1
    counts = torch.bincount((values / bin_width).floor().long().clamp_max(bins - 1), minlength=bins)
    for i in range(1, bins - 1):
        if counts[i] < counts[i - 1] and counts[i] <= counts[i + 1]:
            return (i + 0.5) * bin_width
    raise UserError("the score histogram has no valley (scores are not polarised); "
                    "use schedule.prune.criterion=percentile or train longer / with a larger λ")


def ratio_for_flops(macs_at: Callable[[float], int | None], target: float, iterations: int = 30) -> float:
    """The smallest percentile ratio whose pruned model has at most ``target`` MACs, by bisection on
    [0, 1). ``macs_at(ratio)`` gives the MACs of the model pruned at ``ratio``, or None where that ratio is
    not allowed (it would empty a layer); MACs fall as the ratio grows."""
    lo, hi = 0.0, 1.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        macs = macs_at(mid)
        if macs is not None and macs <= target:
            hi = mid
        else:
            lo = mid
    if hi >= 1.0 or macs_at(hi) is None:
        raise UserError("schedule.prune.flops_target cannot be met without emptying a layer; raise the target "
                        "or set schedule.prune.on_empty=keep_min")
    return hi
