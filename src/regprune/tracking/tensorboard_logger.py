"""TensorBoard sink: event files in ``<run folder>/tensorboard/``, viewable offline with
``tensorboard --logdir runs/`` (no account). Scalars per epoch and after pruning, histograms, the kept-channels
table as text, the final metrics as ``final/*`` scalars. Like W&B, a failure only warns."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from .sinks import NullLogger
from .wandb_logger import summary_from_metrics


class TensorBoardLogger(NullLogger):
    def __init__(self, subdir: str = "tensorboard", flush_secs: int = 30):
        if not subdir or subdir.startswith(("/", "..")):
            raise ValueError(f"subdir={subdir!r} must be a folder name inside the run folder")
        if flush_secs < 1:
            raise ValueError(f"flush_secs={flush_secs} must be ≥ 1")
        self.subdir, self.flush_secs = subdir, flush_secs
        self.writer = None
        self.step = 0

    def _call(self, action: str, fn) -> None:
        if self.writer is None:
            return
        try:
            fn(self.writer)
        except Exception as e:
            print(f"warning: TensorBoard {action} failed ({type(e).__name__}: {e}); continuing without it",
                  file=sys.stderr)
            self.writer = None

    def start(self, run_dir: Path, run_id: str, config: dict, group: str, job_type: str,
              tags: list[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / self.subdir), flush_secs=self.flush_secs)
        except Exception as e:
            print(f"warning: TensorBoard init failed ({type(e).__name__}: {e}); continuing without it",
                  file=sys.stderr)

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.step = max(self.step, step or 0)

        def write(w):
            for k, v in metrics.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    w.add_scalar(k, v, global_step=self.step)

        self._call("log", write)

    def histogram(self, name: str, values, step: int | None = None) -> None:
        self.step = max(self.step, step or 0)
        v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size:
            self._call("histogram", lambda w: w.add_histogram(name, v, global_step=self.step))

    def table(self, name: str, columns: list[str], rows: list[list]) -> None:
        lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        self._call("table", lambda w: w.add_text(name, "\n".join(lines), global_step=self.step))

    def summary(self, metrics: dict) -> None:
        def write(w):
            for k, v in summary_from_metrics(metrics).items():
                if k.startswith("final/") and isinstance(v, int | float) and math.isfinite(v):
                    w.add_scalar(k, v, global_step=self.step)

        self._call("summary", write)

    def finish(self, status: str) -> None:
        self._call("finish", lambda w: w.close())
        self.writer = None
