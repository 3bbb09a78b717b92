"""`make demo`: the digits benchmark's baseline, l1 and transformed l1 (both at their calibrated λ) on vgg_tiny,
each penalty-trained model pruned at 70% of its channels, then a comparison table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATIO = 0.7
RUNS = [  # (label, overrides): the presets of `make reproduce-digits`
    ("baseline (no penalty)", ["experiment=digits/baseline"]),
    ("l1 on BN scales (NS)", ["experiment=digits/l1", f"schedule.prune.ratio={RATIO}"]),
    ("transformed l1 on BN scales", ["experiment=digits/tl1", f"schedule.prune.ratio={RATIO}"]),
]


def train(overrides: list[str]) -> dict:
    """Run (or find complete) one demo run and return its metrics."""
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, "run.experiment=demo", *sys.argv[1:]]
    print("$", " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    run_dir = Path(done.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    return json.loads((run_dir / "metrics.json").read_text())


def cell(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.2f}" if metrics.get(key) is not None else "–"


def main() -> None:
    runs = [(label, train(overrides)) for label, overrides in RUNS]
    print(f"\nvgg_tiny on digits (8x8, 450 test images: one image = 0.22 points), seed 0, test accuracy % — "
          f"run folders under {ROOT / 'runs' / 'demo'}")
    print(f"{'':<30}{'λ':>7}{'trained':>9}{f'pruned {RATIO:.0%}':>11}{'+adapt. BN':>11}{'fine-tuned':>11}"
          f"{'params':>9}{'FLOPs':>11}")
    for label, m in runs:
        lam = f"{m['lam']:g}" if m.get("lam") else "–"
        print(f"{label:<30}{lam:>7}{cell(m, 'acc_trained_final'):>9}{cell(m, 'acc_pruned'):>11}"
              f"{cell(m, 'acc_pruned_recal'):>11}{cell(m, 'acc_finetuned_final'):>11}{m['params']:>9,}"
              f"{m['flops']:>11,}")
    print("\npruned = right after removing the channels (masked and compacted agree); +adapt. BN = the same pruned "
          "network after re-estimating BN statistics on training batches. λ was chosen on the validation split "
          "(make reproduce-digits); results/digits/ has 3 seeds, intervals and every method.")


if __name__ == "__main__":
    main()
