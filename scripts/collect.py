"""Collect run folders into tables: `python scripts/collect.py runs/` (writes outputs/tables, ignored by git).

Writes runs.csv (complete runs), incomplete.csv (failed/running, left out), summary.csv + summary.md (per
model × dataset × method × λ × ratio × setting: n seeds, mean and 95% t interval of every figure, baseline,
paired comparison with l1), duplicates.csv (runs not averaged), vs_paper.csv, kept_channels.csv,
gamma_hist.csv and magnitude_hist.csv (the figures' inputs), and machine/ (latency, wall time, hosts).
Committed tables are written only by the reproductions (`make reproduce-mini`, ...) or an explicit --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regprune.analysis.collect import collect
from regprune.errors import UserError

ROOT = Path(__file__).resolve().parents[1]



def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding run folders (e.g. runs/)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "tables", help="output folder")
    parser.add_argument("--reference", type=Path, default=ROOT / "results" / "reference",
                        help="folder of the papers' reference CSVs")
    parser.add_argument("--heading", default="Accuracy vs FLOPs", help="title of summary.md")
    parser.add_argument("--preface", default="", help="a paragraph under the title (e.g. that it is a smoke run)")
    parser.add_argument("--no-histograms", action="store_true",
                        help="skip |gamma| and magnitude histograms (they load every run's models)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    missing = [str(r) for r in args.roots if not r.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        tables = collect(args.roots, args.out, args.reference, histograms=not args.no_histograms,
                         heading=args.heading, preface=args.preface)
    except UserError as e:  # e.g. cannot write <table>: no space left on device (0 B free)
        print(f"error: {e}", file=sys.stderr)
        return UserError.exit_code
    n_done, n_skipped = len(tables["runs"]), len(tables["incomplete"])
    print(f"{n_done} complete runs -> {len(tables['summary'])} rows in {args.out / 'summary.csv'}"
          f" ({len(tables['vs_paper'])} comparisons with the papers)")
    if len(tables["duplicates"]):
        print(f"note: {len(tables['duplicates'])} runs share a trained model with another run of their row and "
              f"were not averaged (listed in {args.out / 'duplicates.csv'})")
    if n_skipped:
        print(f"note: {n_skipped} runs not complete were left out (listed in {args.out / 'incomplete.csv'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
