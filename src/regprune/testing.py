"""Test helpers that a run can load through the ``callbacks`` config key (never used by default)."""

from __future__ import annotations

import os
import signal

from .distributed import world_from_env
from .engine.callbacks import Callback

CRASH_EXIT_CODE = 86


class Crash(Callback):
    """Kill the process abruptly before optimizer step ``at_step`` or after phase ``after_phase``'s work (before
    its checkpoint): exact-resume tests. ``how``: ``exit`` (exit code 86, no cleanup, like a power cut) or
    ``sigkill`` (the process sends itself SIGKILL). ``rank``: in a run across processes, only that rank dies."""

    def __init__(self, at_step: int | None = None, after_phase: str | None = None, how: str = "exit",
                 rank: int | None = None):
        if at_step is not None and at_step < 0:
            raise ValueError(f"at_step={at_step} must be ≥ 0")
        if how not in ("exit", "sigkill"):
            raise ValueError(f"how={how!r}: choose exit or sigkill")
        self.at_step, self.after_phase, self.how = at_step, after_phase, how
        self.rank = rank

    def die(self) -> None:
        if self.rank is not None and self.rank != world_from_env().rank:
            return
        if self.how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(CRASH_EXIT_CODE)

    def on_step(self, step: int) -> None:
        if step == self.at_step:
            self.die()

    def on_phase_end(self, name: str) -> None:
        if name == self.after_phase:
            self.die()
