"""Figures from collected tables: `python scripts/make_figures.py` (outputs/tables -> outputs/figures, both
ignored by git).

Per model × dataset, PNG + PDF: acc_vs_flops (final accuracy against FLOPs, one line per method), acc_vs_ratio
(right after pruning, with adaptive BN, fine-tuned), gamma_hist (|gamma| after training), kept_channels (per
layer), magnitudes (weight and group magnitude distributions). Reads only the CSVs, never run folders.
`--committed` regenerates every committed figure folder from the committed tables next to it: results/<name>/
-> results/<name>/figures/, results/tables[/<paper>]/ -> results/figures[/<paper>]/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import pandas as pd  # noqa: E402

from regprune.analysis import plots  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]



def read(tables: Path, name: str) -> pd.DataFrame | None:
    path = tables / f"{name}.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    if "setting_label" in frame:  # an empty label reads back as NaN
        frame["setting_label"] = frame.setting_label.astype(object).fillna("")
    return frame if len(frame) else None


def make_figures(tables: Path, out: Path) -> list[Path]:
    """Every figure the tables allow; returns the files written."""
    summary = read(tables, "summary")
    if summary is None:
        raise SystemExit(f"error: no runs in {tables / 'summary.csv'}; run scripts/collect.py first")
    vs_paper, kept = read(tables, "vs_paper"), read(tables, "kept_channels")
    gamma, mags = read(tables, "gamma_hist"), read(tables, "magnitude_hist")
    written: list[Path] = []
    for model, dataset in plots.panels(summary):
        tag = f"{model}_{dataset}"
        rows = summary[(summary.model == model) & (summary.dataset == dataset)]
        if rows.prune_ratio.notna().any():
            written += plots.save(plots.acc_vs_flops(summary, model, dataset, vs_paper), out, f"acc_vs_flops_{tag}")
            written += plots.save(plots.acc_vs_ratio(summary, model, dataset), out, f"acc_vs_ratio_{tag}")
        if kept is not None and len(plots._panel(kept, model, dataset)):
            written += plots.save(plots.kept_channels(kept, model, dataset), out, f"kept_channels_{tag}")
        if gamma is not None and len(plots._panel(gamma, model, dataset)):
            written += plots.save(plots.gamma_histograms(gamma, model, dataset), out, f"gamma_hist_{tag}")
        if mags is not None and len(plots._panel(mags, model, dataset)):
            written += plots.save(plots.magnitude_distributions(mags, model, dataset), out, f"magnitudes_{tag}")
    return written


def committed(results: Path) -> list[tuple[Path, Path]]:
    """(tables, figures) folder pairs of the committed results."""
    pairs = []
    for summary in sorted(results.rglob("summary.csv")):
        tables = summary.parent
        rel = tables.relative_to(results)
        figures = results / "figures" / Path(*rel.parts[1:]) if rel.parts[0] == "tables" else tables / "figures"
        pairs.append((tables, figures))
    return pairs


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=Path, default=ROOT / "outputs" / "tables")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "figures")
    parser.add_argument("--committed", action="store_true",
                        help="regenerate the committed figures in results/ from the committed tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    pairs = committed(ROOT / "results") if args.committed else [(args.tables, args.out)]
    for tables, out in pairs:
        written = make_figures(tables, out)
        print(f"{len(written)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
