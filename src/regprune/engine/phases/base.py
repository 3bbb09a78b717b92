"""A schedule is a list of named phases; each phase is one ``_target_`` component with ``run``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runner import Runner, RunState


class Phase:
    """One step of a schedule. ``run`` does the work on ``state`` (the model, metrics, history); the runner
    writes a checkpoint after every phase, so a phase that checkpoints inside itself (training epochs) must
    be able to continue from ``state.epoch``."""

    def run(self, runner: Runner, state: RunState, name: str) -> None:
        raise NotImplementedError

    def done(self, runner: Runner, state: RunState) -> bool:
        """True when the phase has nothing left to do: a ``Repeat`` skips a pass in which a phase is done at its
        start (Gate Decorator's passes end at the FLOPs target)."""
        return False

    def expand(self, name: str) -> list[tuple[str, Phase]]:
        """The (qualified name, phase) pairs this phase stands for in the flat plan (``Repeat`` unrolls)."""
        return [(name, self)]


def role(name: str) -> str:
    """A phase's name without its pass prefix: ``pass2.train`` -> ``train``."""
    return name.rpartition(".")[2]
