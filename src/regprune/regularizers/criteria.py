"""Score thresholds that a regularizer's own pruning criterion derives from the scores themselves."""

from __future__ import annotations

import torch

from ..errors import UserError


def valley_threshold(scores: dict[str, torch.Tensor], bin_width: float = 0.01) -> float:
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
