"""Callbacks: code that watches a run from outside the training loop (fault injection in tests, ...).

A callback is a ``_target_`` node under the top-level ``callbacks`` key; the runner calls its hooks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class Callback:
    def on_step(self, step: int) -> None:
        """Before optimizer step ``step`` (0-based, counted over all phases)."""

    def on_phase_end(self, name: str) -> None:
        """After phase ``name``'s work, before its checkpoint is written."""


class Callbacks(Callback):
    """Fans every hook out to a list of callbacks."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def on_step(self, step: int) -> None:
        for c in self.callbacks:
            c.on_step(step)

    def on_phase_end(self, name: str) -> None:
        for c in self.callbacks:
            c.on_phase_end(name)

    def watch(self, batches: Iterable, step: int) -> Iterable:
        """``batches``, calling ``on_step`` before each one is used (or ``batches`` itself without callbacks)."""
        return self._watched(batches, step) if self.callbacks else batches

    def _watched(self, batches: Iterable, step: int) -> Iterator:
        for i, batch in enumerate(batches):
            self.on_step(step + i)
            yield batch
