"""A schedule is an ordered list of phases: train (with penalty) → prune → recalibrate BN → fine-tune.

``Schedule`` is instantiated from ``configs/schedule/*.yaml``; a phase whose section is null is absent
(``schedule=train`` has only ``train``). ``start_from`` points at an earlier run's folder: its
penalty-trained model is pruned here, so several ratios share one trained model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import UserError

LR_SCHEDULES = ("step", "cosine", "constant")
CRITERIA = ("auto", "percentile", "threshold", "valley")
PRUNERS = ("regprune", "torch_pruning")


def _build(cls, section: str, values) -> object:
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{section}: unknown key(s) {unknown}; allowed {sorted(known)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{section}.{e}") from None


@dataclass
class TrainPhase:
    epochs: int = 160
    lr: float | None = None  # None: the optimizer's lr
    lr_schedule: str = "step"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    lr_gamma: float = 0.1
    penalty: bool = True  # apply the regularizer in this phase

    def __post_init__(self):
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs} must be ≥ 0")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: choose from {list(LR_SCHEDULES)}")
        self.milestones = [float(m) for m in self.milestones]
        if any(not 0 < m <= 1 for m in self.milestones):
            raise ValueError(f"milestones={self.milestones} must be fractions in (0, 1]")


@dataclass
class PrunePhase:
    ratio: float = 0.5
    scope: str = "global"  # global percentile (NS) or per-layer ratio
    criterion: str = "auto"  # auto: the regularizer's; percentile of scores; threshold: score ≤ value;
    # valley: first minimum of the score histogram (polarization)
    threshold: float = 0.0
    min_channels: int = 1
    on_empty: str = "error"  # error | keep_min
    pruner: str = "regprune"  # regprune (ours) | torch_pruning (the peer: its |γ| ranking and surgery)
    recalibrate_batches: int = 100  # acc_pruned_recal: adaptive BN on a copy (0 = off)

    def __post_init__(self):
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner={self.pruner!r}: choose from {list(PRUNERS)}")
        if self.recalibrate_batches < 0:
            raise ValueError(f"recalibrate_batches={self.recalibrate_batches} must be ≥ 0")
        if not 0 <= self.ratio < 1:
            raise ValueError(f"ratio={self.ratio} is outside [0, 1)")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope={self.scope!r}: choose global or layer")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion={self.criterion!r}: choose from {list(CRITERIA)}")
        if self.min_channels < 1:
            raise ValueError(f"min_channels={self.min_channels} must be ≥ 1")
        if self.on_empty not in ("error", "keep_min"):
            raise ValueError(f"on_empty={self.on_empty!r}: choose error or keep_min")


@dataclass
class RecalibrateBN:
    batches: int = 100

    def __post_init__(self):
        if self.batches < 1:
            raise ValueError(f"batches={self.batches} must be ≥ 1")


class Schedule:
    def __init__(self, name: str = "ns", train: dict | None = None, prune: dict | None = None,
                 recalibrate_bn: dict | None = None, finetune: dict | None = None,
                 start_from: str | None = None):
        self.name = name
        self.train = _build(TrainPhase, "train", train) if train is not None else None
        self.prune = _build(PrunePhase, "prune", prune) if prune is not None else None
        self.recalibrate_bn = _build(RecalibrateBN, "recalibrate_bn", recalibrate_bn) if recalibrate_bn else None
        self.finetune = _build(TrainPhase, "finetune", {"penalty": False, **(finetune or {})}) \
            if finetune is not None else None
        self.start_from = start_from
        if start_from is not None and self.prune is None:
            raise UserError("schedule.start_from needs a prune phase (it starts at pruning)")
        if self.finetune is not None and self.prune is None:
            raise ValueError("schedule.finetune needs schedule.prune")

    def phases(self) -> list[tuple[str, object]]:
        """(phase name, settings) in order; a run with ``start_from`` skips ``train``."""
        out = []
        if self.train is not None and self.start_from is None:
            out.append(("train", self.train))
        if self.prune is not None:
            out.append(("prune", self.prune))
        if self.recalibrate_bn is not None:
            out.append(("recalibrate_bn", self.recalibrate_bn))
        if self.finetune is not None:
            out.append(("finetune", self.finetune))
        return out
