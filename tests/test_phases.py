"""Schedules as phases; pruning as importance → criterion → guards; the FLOPs target; EagleEye's search."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from conftest import FAST, compose, train
from regprune.cost import count_macs, macs_at_widths
from regprune.engine.phases import Finetune, Prune, RecalibrateBN, Repeat, SearchPrune, Train
from regprune.engine.schedule import Schedule
from regprune.errors import UserError
from regprune.models import build_model
from regprune.pruning import BNScale, Percentile, WeightNorm, build_importance, compact, select, widths_after

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (3, 32, 32)


# ---- schedules -------------------------------------------------------------------------------------------

def ns(**kw) -> Schedule:
    return Schedule(train=Train(epochs=2), prune=Prune(), recalibrate_bn=RecalibrateBN(batches=0),
                    finetune=Finetune(epochs=1), **kw)


def names(schedule: Schedule) -> list[str]:
    return [n for n, _ in schedule.plan()]


def test_plan_order_start_from_start_at_stop_after():
    assert names(ns()) == ["train", "prune", "finetune"]  # recalibration with 0 batches is off
    assert names(ns(start_from="runs/x")) == ["prune", "finetune"]
    assert names(ns(start_from="runs/x", start_at="train")) == ["train", "prune", "finetune"]
    assert names(ns(stop_after="train")) == ["train"]
    assert ns(stop_after="train").skipped() == ["prune", "recalibrate_bn", "finetune"]
    with pytest.raises(ValueError, match="stop_after='lunch' is not a phase"):
        ns(stop_after="lunch")
    with pytest.raises(ValueError, match="start_at needs start_from"):
        ns(start_at="prune")
    with pytest.raises(UserError, match="no phase after"):
        Schedule(train=Train(epochs=1), start_from="runs/x")


def test_repeat_unrolls_named_passes():
    s = Schedule(name="m", **{"pass": Repeat(2, {"train": Train(epochs=1), "prune": Prune(max_layer_ratio=0.5)})})
    assert names(s) == ["pass1.train", "pass1.prune", "pass2.train", "pass2.prune"]
    assert names(Schedule(**{"pass": s.phases["pass"]}, stop_after="pass2.train"))[-1] == "pass2.train"


@pytest.mark.parametrize("schedule", ["ns", "train", "ns_multipass", "eagleeye", "greg"])
def test_schedule_yamls_instantiate_phase_objects(schedule):
    s = instantiate(compose([f"schedule={schedule}"]).schedule)
    assert s.plan() and all(hasattr(p, "run") for _, p in s.plan())


def test_epochs_default_to_the_datasets():
    assert compose(["dataset=cifar10"]).schedule.train.epochs == 160
    assert compose(["dataset=digits"]).schedule.finetune.epochs == compose([]).dataset.epochs == 40


# ---- importance and criteria -----------------------------------------------------------------------------

def test_importance_registry():
    model = build_model("vgg11", 10, 3)
    with torch.no_grad():
        model.features[1].weight.copy_(torch.linspace(-1, 1, 64))
    scores = build_importance("bn_gamma")(model)
    torch.testing.assert_close(scores["features.1"], torch.linspace(-1, 1, 64).abs())
    l1 = build_importance("filter_l1")(model)
    torch.testing.assert_close(l1["features.0"] if "features.0" in l1 else l1["features.1"],
                               model.features[0].weight.detach().abs().sum((1, 2, 3)))
    with pytest.raises(UserError, match="importance='taylorr'"):
        build_importance("taylorr")


def test_max_layer_ratio_caps_each_layer_and_is_recorded():
    scores = {"a": torch.tensor([0.1, 0.2, 0.3, 0.4]), "b": torch.tensor([0.5, 0.6, 0.7, 0.8])}
    r = select(scores, Percentile(0.5), max_layer_ratio=0.5)  # the global cut (> 0.5) would take all of a
    assert r.kept() == {"a": 2, "b": 3} and r.capped == {"a": 2}


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_flops_target_is_met_by_the_smallest_ratio(scope):
    model = build_model("vgg11", 10, 3)
    with torch.no_grad():
        for bn in model.gate_modules().values():
            bn.weight.copy_(torch.rand(bn.weight.shape))
    full = count_macs(model, SHAPE)
    phase = Prune(flops_target=0.4, scope=scope)
    result = phase.select(model, BNScale(), "percentile", SHAPE)
    small = compact(model, result.masks)
    macs = count_macs(small, SHAPE)
    assert macs <= 0.4 * full
    # a slightly lower ratio (more channels kept) exceeds the target: the ratio found is the smallest one
    looser = Prune(ratio=result.ratio - 0.01, scope=scope).select(model, BNScale(), "percentile", SHAPE)
    assert macs_at_widths(model, widths_after(model, looser.masks), SHAPE) > 0.4 * full
    with pytest.raises(UserError, match="needs criterion=percentile"):
        phase.select(model, WeightNorm(), "threshold", SHAPE)


def test_search_candidates_meet_the_flops_target():
    model = build_model("vgg11", 10, 3)
    phase = SearchPrune(flops_target=0.5, tolerance=0.01)
    scores = build_importance("filter_l1")(model)
    full = count_macs(model, SHAPE)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        direction = dict(zip(scores, torch.rand(len(scores), generator=gen).tolist(), strict=True))
        result = phase.structure(model, scores, direction, full, SHAPE)
        assert result is not None
        assert abs(count_macs(compact(model, result.masks), SHAPE) / full - 0.5) <= 0.01


# ---- end to end on digits --------------------------------------------------------------------------------

TINY = [a for a in FAST if not a.startswith("schedule.")] + ["dataset.size=8"]


def metrics(root) -> dict:
    (run,) = [p for p in root.glob("*/*") if p.is_dir()]
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.ci
def test_multipass_scratch_and_eagleeye_end_to_end(tmp_path):
    mp = tmp_path / "mp"
    train([*TINY, "regularizer.lam=1e-3", "schedule=ns_multipass", "schedule.pass.times=2",
           "schedule.pass.phases.train.epochs=1", "schedule.pass.phases.finetune.epochs=1", f"run.root={mp}"])
    m = metrics(mp)
    assert [p["phase"] for p in m["passes"]] == ["pass1.prune", "pass2.prune"]
    first, second = (p["kept_channels"] for p in m["passes"])
    total = m["total_channels"]
    assert all(first[k] >= total[k] / 2 and second[k] >= first[k] / 2 for k in total)  # the 50% cap per pass
    assert m["channels_pruned_ratio"] == pytest.approx(1 - sum(second.values()) / sum(total.values()))
    assert m["epochs_total"] == 4

    sc = tmp_path / "scratch"
    train([*TINY, "schedule=scratch", f"schedule.retrain.source={next(mp.glob('*/*'))}", f"run.root={sc}"])
    s = metrics(sc)
    assert s["scratch_of"] == m["run_id"] and s["epochs_retrain"] == 4 and s["macs"] == m["macs"]
    assert "acc_scratch_final" in s

    ee = tmp_path / "ee"
    train([*TINY, "regularizer=none", "schedule=eagleeye", "schedule.train.epochs=1", "schedule.finetune.epochs=1",
           "schedule.search.candidates=4", "schedule.search.recal_batches=3", f"run.root={ee}"])
    e = metrics(ee)
    assert abs(e["flops"] / e["flops_unpruned"] - 0.5) <= 0.01
    assert e["search_candidates"] == 4 and e["search_best_score"] >= e["search_median_score"]
    candidates = json.loads(next(ee.glob("*/*/search_candidates.json")).read_text())["candidates"]
    assert len(candidates) == 4 and all(abs(c["macs_ratio"] - 0.5) <= 0.01 for c in candidates)


@pytest.mark.slow
def test_finetune_with_zero_epochs_records_no_finetuned_accuracy(tmp_path):
    from regprune.run import run

    m = run(compose([*TINY, "schedule.finetune.epochs=0", f"run.root={tmp_path}"]))
    assert "acc_pruned" in m and not any(k.startswith("acc_finetuned") for k in m)
