"""The digits benchmark protocol: presets, λ grids, calibration and final sweeps, the local job pool."""

from __future__ import annotations

import json
import math
import sys

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402

FINAL_TRAIN, FINAL_PRUNE = reproduce.Calibrated().final
CAL_TRAIN, CAL_PRUNE = reproduce.Calibrated().calibration
EXPERIMENTS = reproduce.grid_methods(FINAL_TRAIN)
CALIBRATED = [e for e in EXPERIMENTS if reproduce.has_grid(e)]
OWN_RATIO = reproduce.grid_methods(reproduce.Calibrated().own_ratio)  # OTO, Gate Decorator: one stage, own pruning
GlobalHydra.instance().clear()  # reproduce.compose initialises Hydra once per process; other tests do it their way
compose = reproduce.compose


@pytest.fixture(autouse=True)
def _release_hydra():
    yield
    GlobalHydra.instance().clear()


def grid(experiment: str) -> list[float]:
    params = compose([f"experiment={experiment}"], hydra=True).hydra.sweeper.params
    return [float(v) for v in str(params["regularizer.lam"]).split(",")]


def test_every_method_is_in_the_benchmark_with_a_grid_or_a_reason():
    presets = sorted(p.stem for p in (ROOT / "configs/experiment/digits").glob("*.yaml"))
    plan = reproduce.Calibrated()
    controls = [str(compose([f"sweep={s}"], hydra=True).hydra.sweeper.params.experiment) for s in plan.controls]
    per_ratio = reproduce.grid_methods(plan.per_ratio)  # GReg: one stage per ratio
    assert sorted(e.rpartition("/")[2] for e in [*EXPERIMENTS, *OWN_RATIO, *per_ratio, *controls,
                                                 plan.scratch[1]]) == presets
    # no penalty; l1's λ; SCOP has no penalty weight (its knockoff control has no λ)
    assert set(EXPERIMENTS) - set(CALIBRATED) == {"digits/baseline", "digits/tp_ns", "digits/scop"}
    assert len(CALIBRATED) >= 20


@pytest.mark.parametrize("experiment", CALIBRATED + OWN_RATIO)
def test_grid_is_a_small_log_grid_around_the_chosen_lambda(experiment):
    values = grid(experiment)
    assert 3 <= len(values) <= 4 and values == sorted(values)
    ratios = [b / a for a, b in zip(values, values[1:], strict=False)]
    assert all(math.isclose(r, ratios[0], rel_tol=0.15) and 1.5 <= r <= 10 for r in ratios)  # log (1-3-10 too)
    chosen = compose([f"experiment={experiment}"]).regularizer.lam
    assert any(math.isclose(chosen, v) for v in values)


def test_protocol_settings():
    cfg = compose(["experiment=digits/tl1"])
    assert cfg.dataset.val_fraction > 0 and cfg.threads == 1 and cfg.resume == "auto"
    assert cfg.schedule.prune.criterion == "percentile" and cfg.schedule.prune.recal_batches == 100
    baseline = compose(["experiment=digits/baseline"])
    assert [name for name, _ in instantiate(baseline.schedule).plan()] == ["train"]
    for key in ("dataset", "optimizer", "model"):
        assert baseline[key] == cfg[key], key
    assert baseline.schedule.train == cfg.schedule.train
    peer = compose(["experiment=digits/tp_ns"])
    assert peer.regularizer.lam == compose(["experiment=digits/l1"]).regularizer.lam
    assert peer.schedule == OmegaConf.merge(compose(["experiment=digits/l1"]).schedule,
                                            {"prune": {"pruner": "torch_pruning"}})


def run_dir(overrides: list[str]) -> str:
    cfg = compose(overrides)
    return f"{cfg.run.root}/{cfg.run.experiment}/{cfg.run.id}"


def test_final_stage_two_prunes_what_stage_one_trained():
    sample = {"experiment=digits/baseline", "experiment=digits/tl1", "experiment=digits/tp_ns"}  # composing is slow
    train_jobs = reproduce.sweep_jobs(FINAL_TRAIN, [])
    assert len(train_jobs) == 3 * len(EXPERIMENTS)
    trained = {}
    for job in [j for j in train_jobs if sample & set(j)]:
        cfg = compose([f"sweep={FINAL_TRAIN}", *job])
        assert [n for n, _ in instantiate(cfg.schedule).plan()] == ["train"]
        trained[(cfg.run.name, cfg.seed)] = run_dir([f"sweep={FINAL_TRAIN}", *job])
    assert {s for _, s in trained} == {0, 1, 2}
    jobs = reproduce.sweep_jobs(FINAL_PRUNE, [])
    assert len(jobs) == 3 * 3 * (len(EXPERIMENTS) - 1)  # every method but the baseline, 3 ratios, 3 seeds
    for job in [j for j in jobs if sample & set(j)]:
        cfg = compose([f"sweep={FINAL_PRUNE}", *job])
        assert cfg.schedule.start_from == trained[(cfg.run.name, cfg.seed)]
        assert cfg.schedule.prune.ratio in (0.3, 0.5, 0.7)


@pytest.mark.parametrize("experiment", ["digits/tl1", "digits/group_lasso"])
def test_calibration_prunes_every_grid_point_at_a_seed_the_final_does_not_use(experiment):
    extra = [f"experiment={experiment}"]
    trained = {compose([f"sweep={CAL_TRAIN}", *job, *extra]).regularizer.lam: run_dir([f"sweep={CAL_TRAIN}", *job,
                                                                                       *extra])
               for job in reproduce.sweep_jobs(CAL_TRAIN, extra)}
    assert sorted(trained) == grid(experiment)
    pruned = [compose([f"sweep={CAL_PRUNE}", *job, *extra]) for job in reproduce.sweep_jobs(CAL_PRUNE, extra)]
    assert sorted((c.regularizer.lam, c.schedule.prune.ratio) for c in pruned) == \
        sorted((lam, r) for lam in grid(experiment) for r in (0.5, 0.7))
    for cfg in pruned:
        assert cfg.schedule.start_from == trained[cfg.regularizer.lam]
        assert cfg.seed not in (0, 1, 2) and cfg.run.experiment != "digits"


def test_a_new_lambda_is_a_new_trained_run():
    a = run_dir([f"sweep={FINAL_TRAIN}", "experiment=digits/tl1", "seed=0"])
    b = run_dir([f"sweep={FINAL_TRAIN}", "experiment=digits/tl1", "seed=0", "regularizer.lam=0.123"])
    assert a != b and b.endswith("digits-tl1-lam0.123-trained-s0")


def test_replaced_sets_a_key_and_drops_duplicates():
    jobs = [["a=1", "seed=0"], ["a=1", "seed=1"], ["a=2", "seed=0"]]
    assert reproduce.replaced(jobs, {"seed": "5"}) == [["a=1", "seed=5"], ["a=2", "seed=5"]]


def test_local_pool_runs_jobs_in_parallel_processes(tmp_path, capsys):
    tiny = ["dataset=synthetic", "dataset.num_train=32", "dataset.num_test=16", "dataset.batch_size=16",
            "schedule.train.epochs=1", "schedule.finetune.epochs=1", "progress=false", "latency=false", "threads=1",
            f"run.root={tmp_path}"]
    jobs = [[*tiny, "seed=0"], [*tiny, "seed=1"], [*tiny, "regularizer.lam=-1"]]
    reproduce.run_local(jobs, workers=2)
    out = capsys.readouterr().out
    assert out.count(" done in ") == 2 and "failed" in out and "regularizer.lam=-1" in out  # one bad job: reported
    statuses = [json.loads(p.read_text())["status"] for p in tmp_path.rglob("metrics.json")]
    assert statuses == ["complete", "complete"]


def test_own_ratio_methods_run_in_one_stage_with_three_seeds_and_no_ratio():
    jobs = reproduce.sweep_jobs(reproduce.Calibrated().own_ratio, [])
    assert len(jobs) == 3 * len(OWN_RATIO) and set(OWN_RATIO) == {"digits/oto", "digits/gate_decorator"}
    for experiment in OWN_RATIO:
        cfg = compose([f"sweep={reproduce.Calibrated().own_ratio}", f"experiment={experiment}", "seed=1"])
        phases = [name for name, _ in instantiate(cfg.schedule).plan()]
        assert cfg.schedule.start_from is None and phases[0] == "train" and cfg.run.experiment == "digits"
        assert cfg.regularizer.lam == compose([f"experiment={experiment}"]).regularizer.lam
    oto, gd = compose(["experiment=digits/oto"]), compose(["experiment=digits/gate_decorator"])
    assert [n for n, _ in instantiate(oto.schedule).plan()] == ["train", "prune"]  # no fine-tuning
    assert oto.schedule.prune.criterion == "threshold"
    l1 = compose(["experiment=digits/l1"])
    assert oto.schedule.train.epochs == gd.schedule.train.epochs == l1.schedule.train.epochs
    assert [n for n, _ in instantiate(gd.schedule).plan()][:3] == ["train", "pass1.tick", "pass1.tock"]
    assert gd.schedule["pass"].phases.tick.flops_target == 0.5 and gd.schedule.get("prune") is None
