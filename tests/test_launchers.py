"""Scale-out: the Slurm launcher config composes; a digits sweep runs through submitit's local executor."""

from __future__ import annotations

import json

import pytest

from conftest import FAST, ROOT, train


def compose_with_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from regprune.config import register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_slurm_launcher_composes_with_requeue():
    cfg = compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    from hydra.utils import get_class

    # submitit's Slurm launcher with the sweep report (by name: Hydra's plugin scan may load modules twice)
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in [
        f"{c.__module__}.{c.__name__}" for c in get_class(launcher._target_).__mro__]
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.max_num_timeout > 0
    assert launcher.array_parallelism > 0 and launcher.timeout_min > 0 and launcher.mem_gb > 0


@pytest.mark.slow
@pytest.mark.ci
def test_two_job_sweep_through_local_submitit(tmp_path):
    proc = train(["-m", "hydra/launcher=local", *FAST, "seed=0,1", f"run.root={tmp_path}"])
    runs = sorted((tmp_path / "default").iterdir())
    assert len(runs) == 2, proc.stdout
    for run_dir in runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] == "complete"
        for f in ("config.yaml", "history.csv", "model.pt", "trained.pt", "ckpt.pt"):
            assert (run_dir / f).is_file()
    assert sorted(json.loads((r / "metrics.json").read_text())["seed"] for r in runs) == [0, 1]


def test_imagenet_sweeps_go_to_slurm_with_one_rank_per_gpu():
    for sweep in ("imagenet_resnet50_train", "imagenet_resnet50"):
        cfg = compose_with_hydra([f"sweep={sweep}", "hydra/launcher=slurm_imagenet", "hydra.launcher.partition=gpu"])
        launcher = cfg.hydra.launcher
        assert launcher._target_.endswith("SlurmSubmititLauncher") and launcher.partition == "gpu"
        assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (1, 8, 8)
        assert launcher.max_num_timeout > 0 and cfg.resume == "auto"


@pytest.mark.slow
def test_failed_local_job_is_one_line_naming_job_and_folder(tmp_path):
    """A job that fails on the local launcher: its cause first, the job and its run folder, exit 2; the other
    job completes, and the sweep says where both runs went."""
    proc = train(["-m", "hydra/launcher=local", *FAST, "schedule.prune.ratio=0.3,0.99", f"run.root={tmp_path}"],
                 check=False)
    failed = next(p for p in (tmp_path / "default").iterdir() if "ratio0.99" in p.name)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        "error: job #1 (schedule.prune.ratio=0.99) failed: pruning would leave 0 channel(s) in features.11 "
        "(minimum 1); lower schedule.prune.ratio or set schedule.prune.on_empty=keep_min; "
        f"run folder: {failed}")
    assert f"[sweep] 2 runs in {tmp_path / 'default'}, 1 complete, 1 failed:" in proc.stdout
    assert json.loads((failed / "metrics.json").read_text())["status"] == "failed"
