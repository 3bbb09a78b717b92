"""A small set of real run folders (8×8 digits, one epoch per phase) shared by the analysis and notebook tests.

experiment ``fx``, seeds 0 and 1 of: a baseline, an l1 and a tl1 penalty-trained model (l1 seed 0 records
magnitudes.jsonl); each trained model pruned at 30% and fine-tuned (``schedule.start_from``, as the paper
sweeps do), l1 seed 0 also at 60% (its command carries ``schedule.train.epochs=160``, which a run that starts
from a trained model ignores); a second pruning of l1 seed 0 at 30% with ``seed=1`` (same trained model: no
independent replicate); and one run that failed in pruning (an emptied layer).
Built once per test session (the test modules share the folder through ``make_tiny_runs``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FAST, FAST_TRAIN, compose
from regprune.errors import UserError

SMALL = ["dataset.size=8", "progress=false", "run.experiment=fx"]
PENALTIES = {"l1": "1e-3", "tl1": "1e-3"}
# (penalty, ratio, seed of the trained model, seed of the run, extra overrides)
PRUNINGS = [("l1", 0.3, 0, 0, []), ("l1", 0.3, 1, 1, []), ("l1", 0.6, 0, 0, ["schedule.train.epochs=160"]),
            ("tl1", 0.3, 0, 0, []), ("tl1", 0.3, 1, 1, []), ("l1", 0.3, 0, 1, [])]
_BUILT: dict[str, Path] = {}


def make_tiny_runs(base: Path) -> Path:
    if "root" in _BUILT:
        return _BUILT["root"]
    from regprune.run import run

    root = base / "runs"
    common = [f"run.root={root}", *SMALL]
    train = [*[a for a in FAST_TRAIN if a != "latency=false"], *common, "schedule=train", "latency=false"]
    for seed in (0, 1):
        run(compose([*train, "regularizer=none", f"seed={seed}"]))
        for name, lam in PENALTIES.items():
            record = ["magnitude_every=1"] if (name, seed) == ("l1", 0) else []
            run(compose([*train, f"regularizer={name}", f"regularizer.lam={lam}", f"run.id={name}-trained-s{seed}",
                         f"seed={seed}", *record]))
    prune = [*[a for a in FAST if a not in ("latency=false", "schedule.prune.ratio=0.5")], *common]
    for name, ratio, source, seed, extra in PRUNINGS:
        run(compose([*prune, f"regularizer={name}", f"regularizer.lam={PENALTIES[name]}", f"seed={seed}",
                     f"schedule.prune.ratio={ratio}", f"schedule.start_from={root}/fx/{name}-trained-s{source}",
                     *extra]))

    # untrained γ are all equal, so a 50% global threshold empties every layer: a real failed run
    with pytest.raises(UserError, match="pruning would leave 0 channel"):
        run(compose([*prune, "schedule.train.epochs=0", "schedule.prune.ratio=0.5", "latency=false",
                     "run.name=doomed"]))
    _BUILT["root"] = root
    return root
