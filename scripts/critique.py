"""The scale-invariance critique on trained runs: `python scripts/critique.py runs/<exp>/<run>... --out DIR`.

Rescales each run's trained model (trained.pt) at random without changing its function, prunes the same share of
channels by |gamma| and by scale-invariant importances, and writes rows.csv (every trial), summary.csv and
summary.md (mean and 95% interval over the runs) and critique.png/.pdf (docs/methods.md, Scale invariance).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from regprune.analysis import critique as C  # noqa: E402
from regprune.analysis.plots import save  # noqa: E402
from regprune.errors import UserError  # noqa: E402
from regprune.evaluate import load_split  # noqa: E402
from regprune.pruning.io import load_checkpoint, model_from_payload  # noqa: E402
from regprune.tracking.record import atomic_write_bytes  # noqa: E402


def rows_of_run(run: Path, args: argparse.Namespace) -> list[dict]:
    if not (run / "trained.pt").is_file():
        raise UserError(f"{run}: no trained.pt (not a finished training run)")
    model = model_from_payload(load_checkpoint(run / "trained.pt")).float()
    train, _, _ = load_split(run, "train", 0, torch.device("cpu"))
    test, _, _ = load_split(run, "test", 0, torch.device("cpu"))
    rows = C.critique(model, train, test, args.importances, args.ratio, args.spreads, args.trials, args.scope,
                      args.seed)
    return [{"run": run.name, **r} for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding trained.pt (one per seed)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "digits" / "critique")
    parser.add_argument("--importances", nargs="+", default=["bn_gamma", "taylor", "relu_prob"])
    parser.add_argument("--ratio", type=float, default=0.5, help="share of all channels pruned (global percentile)")
    parser.add_argument("--spreads", type=float, nargs="+", default=[2.0, 4.0, 10.0])
    parser.add_argument("--trials", type=int, default=10, help="random rescalings per run and spread")
    parser.add_argument("--scope", choices=C.SCOPES, default="layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if not 0 < args.ratio < 1 or args.trials < 1 or any(s < 1 for s in args.spreads):
            raise UserError("--ratio must be in (0, 1), --trials ≥ 1 and every spread ≥ 1")
        rows = pd.DataFrame([r for run in args.runs for r in rows_of_run(run, args)])
        summary = C.summarise(rows)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out / "rows.csv", rows.to_csv(index=False).encode())
        atomic_write_bytes(args.out / "summary.csv", summary.to_csv(index=False).encode())
        head = (f"{len(args.runs)} trained models, {100 * args.ratio:.0f}% of channels pruned (global percentile), "
                f"{args.trials} {args.scope}-wise rescalings per model and spread; mean ± 95% interval over models "
                "(each model's mean over its rescalings); worst trial = lowest accuracy of any single rescaling.\n\n")
        atomic_write_bytes(args.out / "summary.md", (head + C.markdown(summary)).encode())
        save(C.figure(summary, args.ratio, args.scope), args.out, "critique")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return UserError.exit_code
    print(f"{len(rows)} trials of {len(args.runs)} runs -> {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
