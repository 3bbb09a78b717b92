"""A small set of real run folders (8×8 digits, one epoch per phase) shared by the analysis and notebook tests.

experiment ``fx``: a baseline, an l1 penalty-trained model (recording magnitudes.jsonl), that model pruned
at 30% (seeds 0 and 1) and 60% and fine-tuned (``schedule.start_from``, as the paper sweeps do), and one
run that failed in pruning (an emptied layer).
Built once per test session (the two test modules share the folder through ``make_tiny_runs``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FAST, FAST_TRAIN, compose
from regprune.errors import UserError

SMALL = ["dataset.size=8", "progress=false", "run.experiment=fx"]
_BUILT: dict[str, Path] = {}


def make_tiny_runs(base: Path) -> Path:
    if "root" in _BUILT:
        return _BUILT["root"]
    from regprune.run import run

    root = base / "runs"
    common = [f"run.root={root}", *SMALL]
    fast_train = [a for a in FAST_TRAIN if a != "latency=false"]
    run(compose([*fast_train, *common, "regularizer=none", "schedule=train", "latency=false"]))
    run(compose([*fast_train, *common, "regularizer=l1", "regularizer.lam=1e-3", "schedule=train",
                 "run.id=l1-trained-s0", "latency=false", "magnitude_every=1"]))
    prune = [a for a in FAST if a not in ("latency=false", "schedule.prune.ratio=0.5")]
    for ratio, seed in ((0.3, 0), (0.3, 1), (0.6, 0)):
        run(compose([*prune, *common, "regularizer=l1", "regularizer.lam=1e-3", f"schedule.prune.ratio={ratio}",
                     f"schedule.start_from={root}/fx/l1-trained-s0", f"seed={seed}"]))

    # untrained γ are all equal, so a 50% global threshold empties every layer: a real failed run
    with pytest.raises(UserError, match="pruning would leave 0 channel"):
        run(compose([*prune, *common, "schedule.train.epochs=0", "schedule.prune.ratio=0.5", "latency=false",
                     "run.name=doomed"]))
    _BUILT["root"] = root
    return root
