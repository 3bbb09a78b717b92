"""Metric sinks besides the local run folder, and the fan-out that feeds several of them.

Every sink receives the same calls: ``start`` once, ``log`` per epoch (``<phase>/<key>`` scalars) and after
pruning (``prune/...``), ``histogram``/``table`` now and then, ``summary`` with the final metrics, ``finish``.
"""

from __future__ import annotations

from pathlib import Path


class NullLogger:
    """Local records only."""

    def start(self, run_dir: Path, run_id: str, config: dict, group: str, job_type: str,
              tags: list[str]) -> None:
        pass

    def log(self, metrics: dict, step: int | None = None) -> None:
        pass

    def histogram(self, name: str, values, step: int | None = None) -> None:
        pass

    def table(self, name: str, columns: list[str], rows: list[list]) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


class Loggers(NullLogger):
    """Several sinks as one (the console, plus each of ``logger=[wandb,tensorboard]``)."""

    def __init__(self, sinks: list[NullLogger]):
        self.sinks = list(sinks)

    def start(self, *args, **kwargs) -> None:
        for s in self.sinks:
            s.start(*args, **kwargs)

    def log(self, metrics: dict, step: int | None = None) -> None:
        for s in self.sinks:
            s.log(metrics, step=step)

    def histogram(self, name: str, values, step: int | None = None) -> None:
        for s in self.sinks:
            s.histogram(name, values, step=step)

    def table(self, name: str, columns: list[str], rows: list[list]) -> None:
        for s in self.sinks:
            s.table(name, columns, rows)

    def summary(self, metrics: dict) -> None:
        for s in self.sinks:
            s.summary(metrics)

    def finish(self, status: str) -> None:
        for s in self.sinks:
            s.finish(status)
