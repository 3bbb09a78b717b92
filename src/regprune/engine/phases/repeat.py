"""Repeat a list of phases: Network Slimming's multi-pass scheme (train → prune → fine-tune, n times), Gate
Decorator's tick-tock passes (until a phase is done)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Phase

if TYPE_CHECKING:
    from ..runner import Runner, RunState


class Repeat(Phase):
    """``times`` passes over ``phases`` (name → phase). Pass i's phases are named ``<name><i>.<phase>``
    (``pass2.prune``); a resumed run continues inside any pass, since the plan is flat. A pass in which a phase
    is ``done`` at the pass's start is skipped whole (recorded in ``skipped_phases``), and so are the later
    passes; ``times`` must cover the passes a phase needs (``min_passes``)."""

    def __init__(self, times: int, phases: dict[str, Phase]):
        if times < 1:
            raise ValueError(f"times={times} must be ≥ 1")
        if not phases:
            raise ValueError("phases must name at least one phase")
        self.times, self.phases = int(times), {k: v for k, v in phases.items() if v is not None}
        for key, phase in self.phases.items():
            needed = getattr(phase, "min_passes", 1)
            if times < needed:
                raise ValueError(f"times={times} is too few: phase {key} needs {needed} passes")

    def expand(self, name: str) -> list[tuple[str, Phase]]:
        members = list(self.phases.values())
        ends = any(type(p).done is not Phase.done for p in members)  # a pass can be skipped
        plan = []
        for i in range(1, self.times + 1):
            one = [pair for key, phase in self.phases.items() for pair in phase.expand(f"{name}{i}.{key}")]
            plan += [(n, InPass(phase, members, one[0][0]) if ends else phase) for n, phase in one]
        return plan


class InPass(Phase):
    """A phase of one pass of a ``Repeat``: skipped when the pass's first phase was, or when, at the pass's first
    phase, one of the pass's phases is done."""

    def __init__(self, phase: Phase, members: list[Phase], first: str):
        self.phase, self.members, self.first = phase, members, first

    def run(self, runner: Runner, state: RunState, name: str) -> None:
        skipped = state.metrics.get("skipped_phases", [])
        if self.first in skipped or (name == self.first and any(p.done(runner, state) for p in self.members)):
            state.metrics["skipped_phases"] = [*skipped, name]
            return
        self.phase.run(runner, state, name)
