"""`make demo`: a baseline and a network-slimming run of vgg_tiny on digits, then a comparison table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(experiment: str) -> dict:
    """Run (or find complete) one demo run and return its metrics."""
    cmd = [sys.executable, str(ROOT / "train.py"), f"experiment={experiment}", "resume=auto", *sys.argv[1:]]
    print("$", " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    run_dir = Path(done.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    base, ns = train("demo_baseline"), train("demo")
    rows = [
        ("baseline (no penalty)", base["acc_trained_final"], base["params"], base["flops"]),
        ("trained with l1 on gamma", ns["acc_trained_final"], ns["params_unpruned"], ns["flops_unpruned"]),
        (f"pruned {ns['channels_pruned_ratio']:.0%} of channels", ns["acc_pruned"], ns["params"], ns["flops"]),
        ("fine-tuned", ns["acc_finetuned_final"], ns["params"], ns["flops"]),
    ]
    print(f"\nvgg_tiny on digits (test accuracy, final epoch) — run folders under {ROOT / 'runs' / 'demo'}")
    print(f"{'stage':<30}{'test acc %':>11}{'params':>10}{'FLOPs':>12}")
    for stage, acc, params, flops in rows:
        print(f"{stage:<30}{acc:>11.2f}{params:>10,}{flops:>12,}")
    print(f"\nFLOPs reduced by {ns['flops_reduction']:.1%}, parameters by {ns['params_reduction']:.1%}.")


if __name__ == "__main__":
    main()
