"""End to end through train.py on digits: records, start-at-prune, resume, determinism, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

import regprune
from conftest import FAST, FAST_TRAIN, train
from regprune.cost import count_macs, count_params


def metrics_of(proc) -> dict:
    run_dir = proc.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    return json.loads(open(f"{run_dir}/metrics.json").read())


@pytest.fixture(scope="module")
def ns_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, metrics_of(train([*FAST, "regularizer=l1", "schedule=ns", f"run.root={root}"]))


def test_ns_run_writes_a_complete_record(ns_run):
    root, m = ns_run
    assert m["status"] == "complete"
    for key in ("acc_trained_final", "acc_trained_best", "acc_pruned", "acc_finetuned_final",
                "acc_finetuned_best", "params", "macs", "flops", "channels_pruned_ratio", "kept_channels",
                "wall_time_s"):
        assert key in m, key
    assert m["flops"] == 2 * m["macs"] < m["flops_unpruned"]
    assert 0.5 <= m["channels_pruned_ratio"] < 0.6
    assert m["acc_pruned"] == m["acc_pruned_masked"]  # masking and compaction agree
    prov = m["provenance"]
    assert {"git_commit", "git_dirty", "packages", "device", "threads", "seed", "command"} <= set(prov)
    run_dir = root / "default" / m["run_id"]
    for f in ("config.yaml", "history.csv", "model.pt", "trained.pt", "ckpt.pt"):
        assert (run_dir / f).is_file(), f
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("phase,epoch,lr") and len(history) == 3  # header + train + finetune


def test_saved_pruned_model_loads_and_matches_recorded_cost(ns_run):
    root, m = ns_run
    model = regprune.load_pruned(root / "default" / m["run_id"])
    assert count_params(model) == m["params"]
    assert count_macs(model, (1, 16, 16)) == m["macs"]
    assert model.widths == [m["kept_channels"][g.name] for g in model.channel_groups()]
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)


def test_start_from_prunes_a_trained_run_without_retraining(ns_run, tmp_path):
    root, m = ns_run
    src = root / "default" / m["run_id"]
    m2 = metrics_of(train([*FAST, "regularizer=l1", f"schedule.start_from={src}", "schedule.prune.ratio=0.3",
                           f"run.root={tmp_path}"]))
    assert m2["acc_trained_final"] == m["acc_trained_final"]
    assert m2["started_from"] == str(src.resolve())
    assert m2["channels_pruned_ratio"] < m["channels_pruned_ratio"]
    history = (tmp_path / "default" / m2["run_id"] / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["finetune"]


def test_existing_run_folder_is_refused_then_resumed(ns_run):
    root, m = ns_run
    args = [*FAST, "regularizer=l1", "schedule=ns", f"run.root={root}"]
    before = (root / "default" / m["run_id"] / "metrics.json").read_bytes()
    refused = train(args, check=False)
    assert refused.returncode == 2 and "already exists" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    again = train([*args, "resume=auto"])
    assert "complete; nothing to do" in again.stderr
    assert (root / "default" / m["run_id"] / "metrics.json").read_bytes() == before


@pytest.mark.slow
@pytest.mark.ci
def test_same_seed_gives_identical_metrics_on_cpu(tmp_path):
    a = metrics_of(train([*FAST_TRAIN, "schedule=train", "regularizer=l1", f"run.root={tmp_path}/a"]))
    b = metrics_of(train([*FAST_TRAIN, "schedule=train", "regularizer=l1", f"run.root={tmp_path}/b"]))
    keys = ["acc_trained_final", "acc_trained_best", "params", "macs"]
    assert [a[k] for k in keys] == [b[k] for k in keys]
    ha = (tmp_path / "a/default" / a["run_id"] / "history.csv").read_text().split("\n")[1].split(",")[:6]
    hb = (tmp_path / "b/default" / b["run_id"] / "history.csv").read_text().split("\n")[1].split(",")[:6]
    assert ha == hb


@pytest.mark.parametrize("override, message", [
    ("model=resnet9000", "Could not find 'model/resnet9000'"),
    ("dataset=imagenet22k", "Could not find 'dataset/imagenet22k'"),
    ("schedule.prune.ratio=1.0", "schedule.prune.ratio=1.0 is outside [0, 1)"),
    ("schedule.prune.ratio=-0.1", "schedule.prune.ratio=-0.1 is outside [0, 1)"),
    ("regularizer.lam=-1e-4", "regularizer.lam=-0.0001 must be ≥ 0"),
    ("seed=abc", "seed=abc"),
])
def test_bad_input_is_one_line_error(override, message, tmp_path):
    proc = train([*FAST, override, f"run.root={tmp_path}"], check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "default").exists()
