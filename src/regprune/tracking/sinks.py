"""Metric sinks besides the local run folder. ``logger=none`` keeps local records only."""

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
