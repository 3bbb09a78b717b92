"""What the prune phase records: accuracy after adaptive BN on a copy, and validation accuracies."""

from __future__ import annotations

import hashlib
import json

from conftest import FAST, train


def test_adaptive_bn_accuracy_is_measured_on_a_copy(tmp_path):
    """Recording acc_pruned_recal leaves the fine-tuned model bit-identical to a run that does not."""
    common = [*FAST, "dataset.size=8", "regularizer.lam=1e-2", "threads=1", f"run.root={tmp_path}"]
    train([*common, "schedule.prune.recalibrate_batches=100", "run.id=with"])
    train([*common, "schedule.prune.recalibrate_batches=0", "run.id=without"])
    runs = {k: tmp_path / "default" / k for k in ("with", "without")}
    digest = {k: hashlib.sha256((r / "model.pt").read_bytes()).hexdigest() for k, r in runs.items()}
    assert digest["with"] == digest["without"]
    with_recal, without = (json.loads((runs[k] / "metrics.json").read_text()) for k in ("with", "without"))
    assert "acc_pruned_recal" in with_recal and "acc_pruned_recal" not in without
    assert with_recal["acc_finetuned_final"] == without["acc_finetuned_final"]
    for key in ("acc_pruned", "acc_pruned_masked", "acc_pruned_recal", "acc_trained_final", "acc_finetuned_final"):
        assert 0 <= with_recal[f"val_{key}"] <= 100, key  # the digits preset holds out a validation split
