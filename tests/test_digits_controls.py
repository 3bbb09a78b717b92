"""The digits benchmark's controls: multi-pass slimming, scratch retraining and EagleEye point at the runs of the
final stages, run end to end on digits, and reach the tables (scratch column, EagleEye's median candidate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402

PLAN = reproduce.Calibrated()
FINAL_TRAIN, FINAL_PRUNE = PLAN.final
GlobalHydra.instance().clear()
compose = reproduce.compose


@pytest.fixture(autouse=True)
def _release_hydra():
    yield
    GlobalHydra.instance().clear()


def run_dir(spec: list[str]) -> str:
    return str(reproduce.job_status(spec)[0])


def stage(sweep: str, *want: str, extra: tuple[str, ...] = ()) -> list[list[str]]:
    """The jobs of a sweep that contain every override in ``want`` (full override lists)."""
    return [[f"sweep={sweep}", *job, *extra] for job in reproduce.sweep_jobs(sweep, list(extra))
            if set(want) <= set(job)]


def test_final_pruned_runs_have_predictable_ids():
    (spec,) = stage(FINAL_PRUNE, "experiment=digits/l1", "seed=2", "schedule.prune.ratio=0.7")
    lam = compose(["experiment=digits/l1"]).regularizer.lam
    assert run_dir(spec) == f"runs/digits/digits-l1-lam{lam}-p0.7-s2"


def test_multipass_and_eagleeye_start_from_the_final_trained_models():
    trained = {(compose(s).run.name, 1): run_dir(s) for e in ("l1", "baseline")
               for s in stage(FINAL_TRAIN, f"experiment=digits/{e}", "seed=1")}
    multipass = stage("digits_multipass", "seed=1")
    assert len(multipass) == 3 and len(stage("digits_multipass")) == 9
    for spec in multipass:
        cfg = compose(spec)
        assert cfg.schedule.start_from == trained[("digits-l1", 1)]
        assert cfg.regularizer == compose(["experiment=digits/l1"]).regularizer
        plan = [name for name, _ in instantiate(cfg.schedule).plan()]
        assert plan == ["pass1.prune", "pass1.finetune", "pass2.train", "pass2.prune", "pass2.finetune"]
        r = cfg.schedule["pass"].phases.prune.ratio
        assert round(1 - (1 - r) ** 2, 3) in (0.3, 0.5, 0.7)  # the total asked: the table's ratios
    eagleeye = stage("digits_eagleeye", "seed=1")
    assert sorted(compose(s).schedule.search.flops_target for s in eagleeye) == [0.13, 0.28]
    for spec in eagleeye:
        cfg = compose(spec)
        assert cfg.schedule.start_from == trained[("digits-baseline", 1)] and cfg.dataset.val_fraction > 0
        assert [name for name, _ in instantiate(cfg.schedule).plan()] == ["search", "finetune"]


def test_scratch_controls_point_at_every_final_l1_run():
    final = [[f"sweep={FINAL_PRUNE}", *job] for job in reproduce.sweep_jobs(FINAL_PRUNE)]
    specs, planned = reproduce.control_specs(PLAN, final, [], {})
    scratch = [s for s in specs if f"experiment={PLAN.scratch[1]}" in s]
    l1 = [s for s in final if "experiment=digits/l1" in s]
    assert len(scratch) == len(l1) == 9 and len(specs) == 9 + 6 + 9
    for control, source in zip(scratch, l1, strict=True):
        cfg = compose(control)
        assert cfg.schedule.retrain.source == run_dir(source) and cfg.seed == compose(source).seed
        assert planned[run_dir(source)] == 30 + 10  # the source's penalty training and fine-tuning
    (default,) = stage(FINAL_PRUNE, "experiment=digits/l1", "seed=0", "schedule.prune.ratio=0.5")
    assert compose(["experiment=digits/scratch_l1"]).schedule.retrain.source == run_dir(default)


def test_smoke_plan_runs_every_control_at_seed_0_and_counts_scratch_epochs(tmp_path):
    extra = [f"run.root={tmp_path}", "run.experiment=mini"]
    final = [[f"sweep={FINAL_PRUNE}", *job, *extra]
             for job in reproduce.replaced(reproduce.sweep_jobs(FINAL_PRUNE, extra), {"seed": "0"})]
    specs, planned = reproduce.control_specs(reproduce.CALIBRATED["mini"], final, extra, {"seed": "0"})
    assert len(specs) == 3 + 2 + 3 and all("seed=0" in s for s in specs)
    assert all(run_dir(s).startswith(f"{tmp_path}/mini/") for s in specs)
    scratch = [reproduce.job_config(s) for s in specs if "experiment=digits/scratch_l1" in s]
    assert reproduce.estimate(scratch, planned)[0].startswith(f"{3 * 40} epochs")
    assert reproduce.estimate(scratch)[0].startswith("0 epochs")  # without the plan the sources are unknown


# ---- end to end on digits (tiny: one epoch per phase, few candidates) ------------------------------------------

TINY = {"digits_train": ["schedule.train.epochs=1"], "digits": ["schedule.finetune.epochs=1"],
        "digits_multipass": ["schedule.pass.phases.train.epochs=1", "schedule.pass.phases.finetune.epochs=1"],
        "digits_eagleeye": ["schedule.finetune.epochs=1", "schedule.search.candidates=5",
                            "schedule.search.recal_batches=2"]}
CONTROLS = ("schedule.pass.phases.prune.ratio=0.2929", "schedule.search.flops_target=0.28",
            "experiment=digits/scratch_l1")  # one run of each control (multi-pass at 50%, EagleEye at 0.28)


def tiny(specs: list[list[str]]) -> list[list[str]]:
    return [[*s, *TINY.get(s[0].removeprefix("sweep="), []), "latency=false"] for s in specs]


def metrics(spec: list[str]) -> dict:
    return json.loads((Path(run_dir(spec)) / "metrics.json").read_text())


def test_controls_end_to_end_on_digits_and_in_the_tables(tmp_path):
    from regprune.analysis.collect import collect
    from regprune.analysis.runs import runs_frame
    from regprune.analysis.summary import summarize

    extra = (f"run.root={tmp_path}",)
    first = tiny([*stage(FINAL_TRAIN, "experiment=digits/l1", "seed=0", extra=extra),
                  *stage(FINAL_TRAIN, "experiment=digits/baseline", "seed=0", extra=extra)])
    second = tiny(stage(FINAL_PRUNE, "experiment=digits/l1", "seed=0", "schedule.prune.ratio=0.5", extra=extra))
    reproduce.run_local(first, 1)
    reproduce.run_local(second, 1)
    specs = reproduce.control_specs(PLAN, second, list(extra), {})[0]
    specs = tiny([s for s in specs if "seed=0" in s and set(CONTROLS) & set(s)])
    assert len(specs) == 3
    reproduce.run_local(specs, 1)
    multipass, eagleeye, scratch = (metrics(s) for s in specs)
    assert all(m["status"] == "complete" for m in (multipass, eagleeye, scratch))

    pruned = metrics(second[0])
    assert scratch["scratch_of"] == pruned["run_id"] == "digits-l1-lam0.02-p0.5-s0"
    assert scratch["epochs_retrain"] == pruned["epochs_total"] == 2 and scratch["macs"] == pruned["macs"]
    assert [p["phase"] for p in multipass["passes"]] == ["pass1.prune", "pass2.prune"]
    assert multipass["epochs_total"] == 1 + 3  # the source's training, then 1 + (1 + 1) epochs of its own
    assert 0.4 <= multipass["channels_pruned_ratio"] <= 0.51
    # EagleEye: the chosen candidate and the median one, both after adaptive BN, at equal FLOPs
    assert abs(eagleeye["flops"] / eagleeye["flops_unpruned"] - 0.28) <= 0.01
    assert eagleeye["search_candidates"] == 5
    assert eagleeye["val_acc_pruned_recal"] == pytest.approx(eagleeye["search_best_score"])  # the same model
    assert eagleeye["val_acc_search_median_recal"] == eagleeye["search_median_score"] <= eagleeye["search_best_score"]
    assert {"acc_pruned_recal", "acc_search_median_recal"} <= set(eagleeye)
    candidates = json.loads((Path(run_dir(specs[1])) / "search_candidates.json").read_text())["candidates"]
    assert sorted(c["score"] for c in candidates)[2] == eagleeye["search_median_score"]

    summary, _, notes = summarize(runs_frame(tmp_path / "digits"))
    assert not notes
    rows = {(r.method, r.prune_ratio if r.prune_ratio == r.prune_ratio else None): r for _, r in summary.iterrows()}
    assert rows[("ℓ1 (NS)", 0.5)].acc_scratch_mean == scratch["acc_scratch_final"]
    assert rows[("ℓ1 (NS) multi-pass", 0.5)].channels_pruned_ratio_mean == multipass["channels_pruned_ratio"]
    ee = rows[("EagleEye search from no penalty (baseline)", None)]
    assert ee.acc_search_median_recal_mean == eagleeye["acc_search_median_recal"]
    baseline = rows[("no penalty (baseline)", None)]
    assert ee.baseline_setting == baseline.setting and baseline.baseline_n == 0  # EagleEye is no baseline
    collect([tmp_path / "digits"], tmp_path / "tables")
    table = (tmp_path / "tables" / "summary.md").read_text()
    assert "median candidate + adaptive BN" in table and "| scratch |" in table
