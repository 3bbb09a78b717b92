"""Repeat a list of phases: Network Slimming's multi-pass scheme (train → prune → fine-tune, n times)."""

from __future__ import annotations

from .base import Phase


class Repeat(Phase):
    """``times`` passes over ``phases`` (name → phase). Pass i's phases are named ``<name><i>.<phase>``
    (``pass2.prune``); a resumed run continues inside any pass, since the plan is flat."""

    def __init__(self, times: int, phases: dict[str, Phase]):
        if times < 1:
            raise ValueError(f"times={times} must be ≥ 1")
        if not phases:
            raise ValueError("phases must name at least one phase")
        self.times, self.phases = int(times), {k: v for k, v in phases.items() if v is not None}

    def expand(self, name: str) -> list[tuple[str, Phase]]:
        return [pair for i in range(1, self.times + 1) for key, phase in self.phases.items()
                for pair in phase.expand(f"{name}{i}.{key}")]
