"""The prune phase: accuracy after adaptive BN on a copy, validation accuracies, ties at the percentile."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from conftest import FAST, train
from regprune.models import build_model
from regprune.pruning.criteria import Percentile, select
from regprune.pruning.importance import constant_outputs


@pytest.mark.slow
def test_adaptive_bn_accuracy_is_measured_on_a_copy(tmp_path):
    """Recording acc_pruned_recal leaves the fine-tuned model bit-identical to a run that does not."""
    common = [*FAST, "dataset.size=8", "regularizer.lam=1e-2", "threads=1", f"run.root={tmp_path}"]
    train([*common, "schedule.prune.recal_batches=100", "run.id=with"])
    train([*common, "schedule.prune.recal_batches=0", "run.id=without"])
    runs = {k: tmp_path / "default" / k for k in ("with", "without")}
    digest = {k: hashlib.sha256((r / "model.pt").read_bytes()).hexdigest() for k, r in runs.items()}
    assert digest["with"] == digest["without"]
    with_recal, without = (json.loads((runs[k] / "metrics.json").read_text()) for k in ("with", "without"))
    assert "acc_pruned_recal" in with_recal and "acc_pruned_recal" not in without
    assert with_recal["acc_finetuned_final"] == without["acc_finetuned_final"]
    for key in ("acc_pruned", "acc_pruned_masked", "acc_pruned_recal", "acc_trained_final", "acc_finetuned_final"):
        assert 0 <= with_recal[f"val_{key}"] <= 100, key  # the digits preset holds out a validation split


def test_tied_scores_prune_the_ratio_smallest_constant_first():
    """Exact zeros tie: NS's rule would prune all of them; with the tie-break, exactly ⌊N·r⌋ + 1 go, the channels
    whose constant output ReLU(β) is smallest first."""
    scores = {"a": torch.tensor([0.0, 0.0, 0.0, 0.5]), "b": torch.tensor([0.0, 0.0, 0.7, 0.9])}
    tiebreak = {"a": torch.tensor([0.2, 0.0, 0.1, 0.0]), "b": torch.tensor([0.05, 0.3, 0.0, 0.0])}
    ns = select(scores, Percentile(0.3))
    assert sum(int((~m).sum()) for m in ns.masks.values()) == 5  # every zero
    r = select(scores, Percentile(0.3, tiebreak=tiebreak))
    assert r.masks["a"].tolist() == [True, False, False, True] and r.masks["b"].tolist() == [False, True, True, True]
    assert r.threshold == 0.0
    unique = {"a": torch.tensor([0.1, 0.4, 0.3, 0.5]), "b": torch.tensor([0.2, 0.6, 0.7, 0.9])}
    for ratio in (0.0, 0.3, 0.5, 0.7):  # without ties the tie-break changes nothing
        for k in unique:
            assert torch.equal(select(unique, Percentile(ratio), on_empty="keep_min").masks[k],
                               select(unique, Percentile(ratio, tiebreak=tiebreak), on_empty="keep_min").masks[k])
    layer = select(scores, Percentile(0.5, "layer", tiebreak))
    assert layer.masks["a"].tolist() == [True, False, False, True]


def test_constant_outputs_are_relu_beta_of_the_gates():
    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    bn = model.features[1]
    with torch.no_grad():
        bn.bias.copy_(torch.linspace(-1, 1, len(bn.bias)))
    out = constant_outputs(model)["features.1"]
    assert torch.equal(out, bn.bias.detach().clamp_min(0))
