"""Choose each method's λ from the digits calibration runs (validation split only) and write it where the presets
read it: `python scripts/calibrate.py runs/digits_calibration --methods l1 tl1 ...`.

Each method's grid is the one in its preset (`experiment=<prefix>/<method>`, hydra.sweeper.params).

Writes configs/_shared/digits/calibrated/<method>.yaml (the chosen λ) and, in --out, selection.csv and
selection.md (every λ of every grid with its validation accuracies, the rule, the choice).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from regprune.analysis.calibrate import Rule, choose, read_calibration, selection_rows, write_choice
from regprune.analysis.runs import find_run_dirs
from regprune.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def preset_grid(experiment: str) -> list[float]:
    """The λ grid in a preset's hydra.sweeper.params."""
    from hydra import compose, initialize_config_dir

    from regprune.config import register_schema

    register_schema()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            params = compose("config", [f"experiment={experiment}"], return_hydra_config=True).hydra.sweeper.params
    except Exception as e:  # an unknown preset: Hydra's message, on one line
        raise UserError(f"experiment={experiment}: {str(e).splitlines()[0]}") from None
    if not params or "regularizer.lam" not in params:
        raise UserError(f"experiment={experiment} has no λ grid (hydra.sweeper.params.regularizer.lam)")
    return [float(v) for v in str(params["regularizer.lam"]).split(",")]


def markdown(rows: pd.DataFrame, rule: Rule, baseline_val: float) -> str:
    lines = [
        "# λ calibration on the validation split",
        "",
        f"Rule (results/digits/PROTOCOL.md): among the λ whose validation accuracy after fine-tuning at "
        f"{rule.constraint_ratio:.0%} of channels is at most {rule.max_drop:g} point(s) below the baseline's "
        f"({baseline_val:.2f}%), the one with the highest validation accuracy right after pruning "
        f"{rule.select_ratio:.0%} (ties: higher fine-tuned, then smaller λ); if none qualifies, the best "
        "fine-tuned one. One calibration seed; the test split is not read.",
        "",
        f"| method | λ | val % right after pruning {rule.select_ratio:.0%} | val % fine-tuned at "
        f"{rule.constraint_ratio:.0%} | within {rule.max_drop:g} pt | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        mark = ("**yes**" + (" (edge of grid)" if r.at_edge else "")) if r.chosen else ""
        lines.append(f"| {r.method} | {r.lam:g} | {r.val_pruned:.2f} | {r.val_finetuned:.2f} | "
                     f"{'yes' if r.meets_constraint else 'no'} | {mark} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="folder of the calibration runs (e.g. runs/digits_calibration)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "digits" / "calibration")
    ap.add_argument("--configs", type=Path, default=ROOT / "configs" / "_shared" / "digits" / "calibrated")
    ap.add_argument("--prefix", default="digits", help="run names are <prefix>-<method>")
    ap.add_argument("--methods", nargs="+", required=True, help="the methods to calibrate (their presets' names)")
    args = ap.parse_args(argv)
    rule = Rule()
    try:
        if not args.runs.is_dir():
            raise UserError(f"not a folder: {args.runs}")
        grids = {m: preset_grid(f"{args.prefix}/{m}") for m in args.methods}
        candidates, baseline_val = read_calibration(find_run_dirs(args.runs), grids, args.prefix, rule)
        choices = {m: choose(cs, baseline_val, rule) for m, cs in candidates.items()}
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return UserError.exit_code
    args.configs.mkdir(parents=True, exist_ok=True)
    for choice in choices.values():
        write_choice(choice, args.configs, f"{args.prefix}/{choice.method}")
    rows = pd.DataFrame(selection_rows(candidates, choices, rule))
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / "selection.csv", index=False)
    (args.out / "selection.md").write_text(markdown(rows, rule, baseline_val))
    for c in choices.values():
        note = "" if c.eligible else "  (no λ met the constraint)"
        print(f"{c.method:<22} λ = {c.lam:g}{note}{'  (edge of grid)' if c.at_edge else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
