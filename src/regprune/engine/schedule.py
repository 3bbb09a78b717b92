"""A schedule: named phases in order (``configs/schedule/*.yaml``), flattened into the plan the runner walks.

Each key of a schedule yaml other than ``name``, ``start_from``, ``start_at`` and ``stop_after`` is a phase (a
``_target_`` node, or null for an absent one), so ``schedule.prune.ratio=0.5`` overrides a phase's setting.
``start_from`` (an earlier run's folder) starts from the model it saved after its ``train`` phase
(``trained.pt``): the plan begins at ``start_at``, by default the phase after ``train``, so several ratios share
one trained model (or, with ``start_at=train``, a penalty phase starts from a trained baseline). ``stop_after``
ends the plan after the named phase (the first stage of a two-stage sweep trains only).
"""

from __future__ import annotations

from ..errors import UserError
from .phases import Phase

TRAINED = "train"  # the phase whose output is saved as trained.pt and whose output start_from reuses


class Schedule:
    def __init__(self, name: str = "ns", start_from: str | None = None, start_at: str | None = None,
                 stop_after: str | None = None, **phases: Phase | None):
        for key, phase in phases.items():
            if phase is not None and not isinstance(phase, Phase):
                raise ValueError(f"{key} is not a phase (a _target_ node naming a regprune.engine.phases class)")
        self.name, self.start_from, self.start_at, self.stop_after = name, start_from, start_at, stop_after
        self.phases = {k: v for k, v in phases.items() if v is not None}
        names = [n for n, _ in self.all_phases()]
        for key in ("start_at", "stop_after"):
            value = getattr(self, key)
            if value is not None and value not in names:
                raise ValueError(f"{key}={value!r} is not a phase of this schedule; phases: {names}")
        if start_at is not None and start_from is None:
            raise ValueError("start_at needs start_from (the run whose trained model the plan starts from)")
        if start_from is not None and start_at is None:
            if TRAINED not in names or names.index(TRAINED) == len(names) - 1:
                raise UserError(f"schedule.start_from continues after the '{TRAINED}' phase, but schedule={name} has "
                                f"no phase after a top-level '{TRAINED}'; set schedule.start_at")

    def all_phases(self) -> list[tuple[str, Phase]]:
        return [pair for key, phase in self.phases.items() for pair in phase.expand(key)]

    def plan(self) -> list[tuple[str, Phase]]:
        """(qualified name, phase) in the order they run."""
        plan = self.all_phases()
        if self.start_from is not None:
            names = [n for n, _ in plan]
            plan = plan[names.index(self.start_at) if self.start_at else names.index(TRAINED) + 1:]
        if self.stop_after is not None:
            plan = plan[:[n for n, _ in plan].index(self.stop_after) + 1]
        if not plan:
            raise UserError(f"schedule={self.name} has no phase left to run")
        return plan

    def skipped(self) -> list[str]:
        """Top-level phase keys that do not run (before start_from's point or after stop_after)."""
        running = {n for n, _ in self.plan()}
        return [k for k, phase in self.phases.items() if not running & {n for n, _ in phase.expand(k)}]
