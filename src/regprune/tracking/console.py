"""Plain lines on stdout for logs read later (a Slurm log, ``> train.log``), in the manner of timm's train script:
one line per epoch, a summary after pruning and one at the end. Always on; tqdm bars appear only on a terminal."""

from __future__ import annotations

import sys
from pathlib import Path

from .sinks import NullLogger


def si(n: float) -> str:
    """19024384 -> 19.02M."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:g}"


def change(before: float | None, after: float, fmt=si) -> str:
    if not before:
        return fmt(after)
    return f"{fmt(before)} -> {fmt(after)} ({after / before - 1:+.1%})"


class ConsoleLogger(NullLogger):
    def __init__(self, stream=None):
        self.stream = stream
        self.epochs: dict[str, int] = {}

    def write(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def start(self, run_dir: Path, run_id: str, config: dict, group: str, job_type: str,
              tags: list[str]) -> None:
        schedule = config.get("schedule") or {}
        self.epochs = {phase: section["epochs"] for phase, section in schedule.items()
                       if isinstance(section, dict) and isinstance(section.get("epochs"), int)}
        self.write(f"run {run_dir} ({' '.join(tags)}, schedule {job_type})")

    def log(self, metrics: dict, step: int | None = None) -> None:
        phase = next(iter(metrics), "").partition("/")[0]
        values = {k.partition("/")[2]: v for k, v in metrics.items()}
        if phase == "prune":
            self.write(self.prune_line(values))
        elif "epoch" in values and "train_loss" in values:
            self.write(self.epoch_line(phase, values))

    def epoch_line(self, phase: str, v: dict) -> str:
        total = self.epochs.get(phase)
        parts = [f"{phase:<8} epoch {v['epoch']:>3}" + (f"/{total}" if total else ""), f"lr {v['lr']:.4g}",
                 f"loss {v['train_loss']:.4f}", f"train {v['train_acc']:6.2f}%"]
        parts += [f"{split} {v[f'{split}_acc']:6.2f}%" for split in ("val", "test") if f"{split}_acc" in v]
        if v.get("penalty"):
            parts.append(f"penalty {v['penalty']:.4g}")
        parts.append(f"{v['epoch_time_s']:.1f}s")
        return "  ".join(parts)

    def prune_line(self, v: dict) -> str:
        kept, total = v["kept_channels"], v["total_channels"]
        return "  ".join([f"{'prune':<8} kept {kept}/{total} channels ({1 - kept / total:.1%} pruned)",
                          f"FLOPs {change(v.get('flops_unpruned'), v['flops'])}",
                          f"params {change(v.get('params_unpruned'), v['params'])}",
                          f"test {v['acc_pruned']:.2f}% right after pruning"])

    def summary(self, metrics: dict) -> None:
        stages = [(label, metrics[key]) for label, key in (
            ("trained", "acc_trained_final"), ("pruned", "acc_pruned"), ("recalibrated", "acc_recalibrated"),
            ("fine-tuned", "acc_finetuned_final")) if metrics.get(key) is not None]
        parts = [f"{'done':<8} test acc " + " | ".join(f"{label} {acc:.2f}%" for label, acc in stages)]
        if "flops" in metrics:
            parts += [f"FLOPs {change(metrics.get('flops_unpruned'), metrics['flops'])}",
                      f"params {change(metrics.get('params_unpruned'), metrics['params'])}"]
        if metrics.get("latency_ms") is not None:
            parts.append(f"latency {metrics['latency_ms']:.2f} ms")
        parts.append(f"wall {metrics.get('wall_time_s', 0):.0f}s")
        self.write("  ".join(parts))
