"""Choosing each method's λ on the validation split, never on the test split (results/digits/PROTOCOL.md).

The calibration runs train every λ of a method's grid once, then prune each trained model at two ratios and
fine-tune. The rule: among the λ whose validation accuracy after fine-tuning at ``constraint_ratio`` of
channels is within ``max_drop`` points of the baseline's validation accuracy, take the one with the highest
validation accuracy right after pruning ``select_ratio`` of channels (compacted model, no BN
recalibration); ties go to the higher fine-tuned accuracy, then to the smaller λ (the gentler penalty). If no
λ qualifies, the one with the best fine-tuned validation accuracy is taken and the choice says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ..errors import UserError


@dataclass(frozen=True)
class Rule:
    select_ratio: float = 0.7  # maximise validation accuracy right after pruning this share of channels ...
    constraint_ratio: float = 0.5  # ... among the λ whose validation accuracy after fine-tuning at this share
    max_drop: float = 1.0  # is at most this many points below the baseline's


@dataclass(frozen=True)
class Candidate:
    """One λ of a method's grid: its validation accuracies (%) at the rule's two ratios."""

    method: str
    lam: float
    val_pruned: float  # right after pruning select_ratio
    val_finetuned: float  # after fine-tuning at constraint_ratio


@dataclass(frozen=True)
class Choice:
    method: str
    lam: float
    eligible: bool  # False: no λ met the constraint; the best fine-tuned one was taken
    at_edge: bool  # the chosen λ is the smallest or largest of the grid (the grid may be too narrow)
    val_pruned: float
    val_finetuned: float
    baseline_val: float


def choose(candidates: list[Candidate], baseline_val: float, rule: Rule = Rule()) -> Choice:
    """Apply the rule to one method's candidates (see the module docstring)."""
    if not candidates:
        raise UserError("no calibration candidates to choose from")
    methods = {c.method for c in candidates}
    if len(methods) != 1:
        raise UserError(f"candidates of several methods given together: {sorted(methods)}")
    floor = baseline_val - rule.max_drop
    eligible = [c for c in candidates if c.val_finetuned >= floor]
    if eligible:
        best = max(eligible, key=lambda c: (c.val_pruned, c.val_finetuned, -c.lam))
    else:
        best = max(candidates, key=lambda c: (c.val_finetuned, c.val_pruned, -c.lam))
    grid = sorted(c.lam for c in candidates)
    return Choice(method=best.method, lam=best.lam, eligible=bool(eligible), at_edge=len(grid) > 1 and best.lam in
                  (grid[0], grid[-1]), val_pruned=best.val_pruned, val_finetuned=best.val_finetuned,
                  baseline_val=baseline_val)


def method_of(metrics: dict, prefix: str) -> str:
    """The method a run belongs to, from its run name ``<prefix>-<method>`` (the presets' convention)."""
    name = str(metrics.get("name", ""))
    if not name.startswith(f"{prefix}-"):
        raise UserError(f"run {metrics.get('run_id')} is named {name!r}, not {prefix}-<method>")
    return name.removeprefix(f"{prefix}-")


def read_calibration(run_dirs: Iterable[Path], grids: dict[str, list[float]], prefix: str = "digits",
                     rule: Rule = Rule()) -> tuple[dict[str, list[Candidate]], float]:
    """Candidates of every method in ``grids`` (method -> its λ grid) and the baseline's validation accuracy,
    from complete calibration run folders; runs of λ outside a method's grid are left out (an older grid).

    Reads only ``val_acc_*`` metrics: pruned runs give ``val_acc_pruned`` (at ``select_ratio``) and
    ``val_acc_finetuned_final`` (at ``constraint_ratio``); the baseline's run gives ``val_acc_trained_final``.
    """
    pruned: dict[tuple[str, float], dict[float, dict]] = {}
    baseline: list[float] = []
    for run_dir in run_dirs:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        if metrics.get("status") != "complete":
            continue
        method = method_of(metrics, prefix)
        if method == "baseline":
            baseline.append(_metric(metrics, "val_acc_trained_final"))
        elif metrics.get("prune_ratio") is not None and method in grids:
            lam = next((v for v in grids[method] if math.isclose(v, float(metrics["lam"]))), None)
            if lam is not None:
                pruned.setdefault((method, lam), {})[float(metrics["prune_ratio"])] = metrics
    if not baseline:
        raise UserError(f"no complete {prefix}-baseline run among the calibration runs")
    candidates: dict[str, list[Candidate]] = {}
    for method, grid in grids.items():
        for lam in sorted(grid):
            by_ratio = pruned.get((method, lam), {})
            missing = [r for r in (rule.select_ratio, rule.constraint_ratio) if r not in by_ratio]
            if missing:
                raise UserError(f"calibration of {method} at λ={lam:g} lacks a complete run pruned at {missing}")
            candidates.setdefault(method, []).append(Candidate(
                method, lam, _metric(by_ratio[rule.select_ratio], "val_acc_pruned"),
                _metric(by_ratio[rule.constraint_ratio], "val_acc_finetuned_final")))
    return candidates, sum(baseline) / len(baseline)


def _metric(metrics: dict, key: str) -> float:
    if metrics.get(key) is None:
        raise UserError(f"run {metrics.get('run_id')} has no {key} (was it run with dataset.val_fraction > 0?)")
    return float(metrics[key])


def write_choice(choice: Choice, folder: Path, grid_source: str) -> Path:
    """The chosen λ as a config fragment (``<folder>/<method>.yaml``) that the method's preset composes."""
    how = "met the rule" if choice.eligible else "no λ met the constraint: the best fine-tuned one"
    header = (f"# @package _global_\n# λ of {grid_source}, chosen on the validation split by scripts/calibrate.py "
              f"({how}; val % right after\n# pruning {choice.val_pruned:.2f}, fine-tuned {choice.val_finetuned:.2f}, "
              f"baseline {choice.baseline_val:.2f}). Written by make reproduce-digits: do not edit.\n")
    path = Path(folder) / f"{choice.method}.yaml"
    path.write_text(header + OmegaConf.to_yaml({"regularizer": {"lam": choice.lam}}))
    return path


def selection_rows(candidates: dict[str, list[Candidate]], choices: dict[str, Choice],
                   rule: Rule = Rule()) -> list[dict]:
    """Every candidate, whether it meets the constraint and whether it was chosen, for the selection table."""
    return [{**asdict(c), "meets_constraint": c.val_finetuned >= choices[m].baseline_val - rule.max_drop,
             "chosen": c.lam == choices[m].lam, "at_edge": choices[m].at_edge and c.lam == choices[m].lam}
            for m, cs in candidates.items() for c in sorted(cs, key=lambda c: c.lam)]
