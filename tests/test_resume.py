"""Killed-and-resumed runs end exactly where uninterrupted ones do (CPU), in every phase."""

from __future__ import annotations

import csv
import json
import os
import signal

import pytest

from conftest import crash, start_train, train
from regprune.testing import CRASH_EXIT_CODE

ARGS = ["model=vgg_tiny", "dataset=digits", "regularizer=l1", "regularizer.lam=1e-3", "optimizer.lr=0.05",
        "schedule.train.epochs=3", "schedule.finetune.epochs=2", "schedule.prune.ratio=0.5",
        "schedule.recalibrate_bn.batches=2", "progress=false", "latency=false"]
COMPARED = ("acc_trained_final", "acc_trained_best", "acc_pruned", "acc_recalibrated", "acc_finetuned_final",
            "acc_finetuned_best", "params", "macs", "flops", "kept_channels", "channels_pruned_ratio")


def outcome(root) -> tuple[dict, list[dict]]:
    (run_dir,) = (root / "default").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "history.csv") as f:
        history = [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]
    return {k: metrics[k] for k in COMPARED}, history


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    train([*ARGS, f"run.root={root}"])
    return outcome(root)


@pytest.mark.parametrize("fault", [
    crash(at_step=30),  # penalty training, epoch 2
    pytest.param(crash(after_phase="train"), marks=[pytest.mark.slow, pytest.mark.ci]),  # trained, not checkpointed
    pytest.param(crash(after_phase="prune"), marks=pytest.mark.slow),  # pruned and compacted, not yet checkpointed
    pytest.param(crash(after_phase="recalibrate_bn"), marks=[pytest.mark.slow, pytest.mark.ci]),
    pytest.param(crash(at_step=70), marks=pytest.mark.slow),  # fine-tuning, epoch 2 (19 steps per epoch)
])
def test_fault_then_resume_matches_uninterrupted(fault, reference, tmp_path):
    crashed = train([*ARGS, fault, f"run.root={tmp_path}"], check=False)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    (run_dir,) = (tmp_path / "default").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "running"
    train([*ARGS, "resume=auto", f"run.root={tmp_path}"])
    assert outcome(tmp_path) == reference


def test_sigkill_then_resume_matches_uninterrupted(reference, tmp_path):
    proc = start_train([*ARGS, f"run.root={tmp_path}"], tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    (run_dir,) = (tmp_path / "default").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "running"
    train([*ARGS, "resume=auto", f"run.root={tmp_path}"])
    assert outcome(tmp_path) == reference


def test_checkpoint_holds_every_rng_and_loads_weights_only(reference, tmp_path):
    import torch

    train([*ARGS, crash(at_step=25), f"run.root={tmp_path}"], check=False)
    (ckpt,) = tmp_path.glob("default/*/ckpt.pt")
    state = torch.load(ckpt, weights_only=True)
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    assert state["phase"] == 0 and state["epoch"] == 1 and state["step"] == 19
    assert state["optimizer"]["state"] and state["model"]["spec"]["kwargs"]["widths"]


MULTIPASS = ["model=vgg_tiny", "dataset=digits", "dataset.size=8", "regularizer=l1", "regularizer.lam=1e-3",
             "optimizer.lr=0.05", "schedule=ns_multipass", "schedule.pass.times=2",
             "schedule.pass.phases.train.epochs=2", "schedule.pass.phases.finetune.epochs=1", "progress=false",
             "latency=false"]


@pytest.mark.slow
@pytest.mark.ci
def test_crash_inside_a_repeated_pass_then_resume_matches_uninterrupted(tmp_path):
    """SIGKILL in pass 2's penalty training (19 steps per epoch, 57 per pass), then after pass 2's pruning."""
    train([*MULTIPASS, f"run.root={tmp_path / 'ref'}"])
    for i, fault in enumerate((crash(at_step=70, how="sigkill"), crash(after_phase="pass2.prune", how="sigkill"))):
        root = tmp_path / f"killed{i}"
        crashed = train([*MULTIPASS, fault, f"run.root={root}"], check=False)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        train([*MULTIPASS, "resume=auto", f"run.root={root}"])
        ((ref_dir,), (run_dir,)) = ((tmp_path / "ref/default").iterdir(), (root / "default").iterdir())
        want, got = (json.loads((d / "metrics.json").read_text()) for d in (ref_dir, run_dir))
        for key in ("passes", "acc_finetuned_final", "kept_channels", "macs", "channels_pruned_ratio"):
            assert got[key] == want[key], key
        drop = {"epoch_time_s"}
        rows = [[{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(open(d / "history.csv"))]
                for d in (ref_dir, run_dir)]
        assert rows[0] == rows[1]
