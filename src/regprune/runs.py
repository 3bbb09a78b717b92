"""List run folders: ``python -m regprune.runs runs/`` (or ``regprune-runs runs/``).

One line per run: its folder, its status (``interrupted``: recorded as running, but no job holds its lock —
killed, or stopped by a failure it could not record), the last training epoch it recorded, when it last wrote
a file, and what ``resume=auto`` would do with it. Checkpoints are read (and their checksums checked) only
for runs that ``resume=auto`` would continue.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime
from pathlib import Path

from .analysis.runs import find_run_dirs
from .errors import UserError
from .pruning.io import load_newest
from .tracking.record import CHECKPOINT, LOCK, RunRecord, run_status

COLUMNS = ("run", "status", "reached", "last write", "resume=auto")


def reached(history: list[dict]) -> str:
    """The last training epoch recorded, e.g. ``finetune 2``."""
    return f"{history[-1]['phase']} {history[-1]['epoch']}" if history else "–"


def resume_plan(record: RunRecord, status: str) -> tuple[str, str]:
    """(epoch reached, what ``resume=auto`` would do) for a run folder whose status is ``status``."""
    history_file = record.path / "history.csv"
    recorded = list(csv.DictReader(history_file.read_text().splitlines())) if history_file.exists() else []
    if status == "complete":
        return reached(recorded), "nothing (complete)"
    if status == "running":
        return reached(recorded), "refuse (in use by another job)"
    try:
        found = load_newest(record.versions(CHECKPOINT))
    except UserError as e:
        return reached(recorded), f"refuse ({e})"
    if found is None:
        return reached(recorded), "start over (no checkpoint)"
    path, ckpt, skipped = found
    plan = f"continue from {path.name} (step {ckpt['step']})"
    if skipped:
        plan += "; set aside corrupt " + ", ".join(p.name for p in skipped)
    return reached(ckpt["history"]), plan


def describe(run_dir: Path, root: Path | None) -> dict[str, str]:
    """One listing row; the run is named relative to ``root`` (None: by its path)."""
    try:
        status = run_status(run_dir, json.loads((run_dir / "metrics.json").read_text()).get("status"))
    except (OSError, ValueError) as e:
        status = f"unreadable ({type(e).__name__})"
    epoch, plan = resume_plan(RunRecord(run_dir), status)
    newest = max(p.stat().st_mtime for p in run_dir.iterdir() if p.is_file() and p.name != LOCK)
    return dict(zip(COLUMNS, (str(run_dir.relative_to(root) if root else run_dir), status, epoch,
                              datetime.fromtimestamp(newest).isoformat(sep=" ", timespec="seconds"), plan),
                    strict=True))


def table(rows: list[dict[str, str]]) -> str:
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS]
    lines = [dict(zip(COLUMNS, COLUMNS, strict=True)), *rows]
    return "\n".join("  ".join(r[c].ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()
                     for r in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regprune-runs", description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding run folders (e.g. runs/)")
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.roots if not r.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return UserError.exit_code
    single = args.roots[0] if len(args.roots) == 1 else None
    rows = [describe(run_dir, single) for root in args.roots for run_dir in find_run_dirs(root)]
    print(table(rows) if rows else f"no runs under {', '.join(map(str, args.roots))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
