"""W&B sink: offline runs inside the run folder, read back from wandb's own transaction log; failures never
stop training."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import FAST, compose, train
from regprune.tracking import WandbLogger, read_offline_run

pytest.importorskip("wandb")

TINY = [*FAST, "dataset.size=8"]  # 8×8 digits: a quarter of the default cost


def read_finished(folder: Path, timeout: float = 30.0) -> dict:
    """An offline run as written once complete: run.finish() can return a moment before wandb-core has
    flushed the file, so a run finished in this process is polled until its exit record is there."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_offline_run(folder)
        if run["exit_code"] is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def offline_run(run_dir: Path) -> dict:
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    return read_offline_run(folder)


@pytest.mark.slow
def test_three_job_multirun_gives_three_offline_runs_in_one_group(tmp_path):
    proc = train(["-m", *TINY, "schedule.finetune.epochs=0", "seed=0,1,2", "logger=wandb", "run.experiment=wbsweep",
                  f"run.root={tmp_path}"], cwd=tmp_path, env={"HOME": str(tmp_path)})
    runs = sorted((tmp_path / "wbsweep").iterdir())
    assert len(runs) == 3
    for run_dir in runs:  # each run says where its offline W&B run is and how to look at it without an account
        (folder,) = (run_dir / "wandb").glob("offline-run-*")
        assert f"W&B offline run: {folder}\n  look at it without an account: wandb leet {folder}\n" in proc.stdout
    assert not (tmp_path / "wandb").exists()  # W&B files stay in the run folders
    seen = []
    for run_dir in runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        wb = offline_run(run_dir)
        seen.append(wb["id"])
        assert wb["id"] == run_dir.name and wb["exit_code"] == 0
        assert (wb["project"], wb["group"], wb["job_type"]) == ("regprune", "wbsweep", "ns")
        assert wb["tags"] == ["vgg_tiny", "digits", "l1"]
        assert wb["config"]["seed"] == metrics["seed"] and wb["config"]["regularizer"]["lam"] == metrics["lam"]
        s = wb["summary"]
        assert "acc_finetuned_final" not in metrics  # no fine-tuning epoch: the final model is the pruned one
        assert s["final/acc"] == pytest.approx(metrics["acc_pruned"])
        assert (s["final/params"], s["final/macs"], s["final/flops"]) == (metrics["params"], metrics["macs"],
                                                                          metrics["flops"])
        assert s["prune/ratio"] == 0.5 and s["prune/acc_pruned"] == pytest.approx(metrics["acc_pruned"])
        history = wb["history"]
        assert [h["train/test_acc"] for h in history if "train/test_acc" in h] == [pytest.approx(
            metrics["acc_trained_final"])]
        # |γ| histogram (64 bins) after each train phase: every gate channel, then the kept ones
        for phase, n_channels in (("train", sum(metrics["total_channels"].values())),
                                  ("finetune", sum(metrics["kept_channels"].values()))):
            (hist,) = [h for h in history if f"{phase}/gamma_abs/values" in h]
            assert len(hist[f"{phase}/gamma_abs/bins"]) == 65
            assert sum(hist[f"{phase}/gamma_abs/values"]) == n_channels
        table = json.loads(next((run_dir / "wandb").glob("offline-run-*/files/media/table/kept_channels*.json"))
                           .read_text())
        assert {row[0]: row[1] for row in table["data"]} == metrics["kept_channels"]
    assert len(set(seen)) == 3


def test_resume_continues_the_same_wandb_run(tmp_path, monkeypatch):
    import regprune.engine.phases.prune as prune_phase
    from regprune.run import run

    args = [*TINY, "schedule.finetune.epochs=0", "logger=wandb", f"run.root={tmp_path}"]

    def crash(*a, **k):
        raise RuntimeError("crash during pruning")

    with monkeypatch.context() as m:
        m.setattr(prune_phase, "compact", crash)
        with pytest.raises(RuntimeError, match="crash during pruning"):
            run(compose(args))
    metrics = run(compose([*args, "resume=auto"]))
    run_dir = Path(metrics["run_dir"])
    first, second = (read_finished(p) for p in sorted((run_dir / "wandb").glob("offline-run-*")))
    assert first["id"] == second["id"] == run_dir.name
    assert first["exit_code"] == 1 and second["exit_code"] == 0
    assert any("train/test_acc" in h for h in first["history"]) and "final/acc" not in first["summary"]
    assert not any("train/test_acc" in h for h in second["history"])  # the resumed part only
    assert second["summary"]["final/acc"] == metrics["acc_pruned"] and "acc_finetuned_final" not in metrics


def test_broken_wandb_init_does_not_stop_the_run(tmp_path, monkeypatch, capsys):
    import wandb

    from regprune.run import run

    def broken_init(*args, **kwargs):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", broken_init)
    metrics = run(compose([*TINY, "schedule.finetune.epochs=0", "logger=wandb", f"run.root={tmp_path}"]))
    assert metrics["status"] == "complete"
    err = capsys.readouterr().err
    assert err.count("warning: W&B init failed (RuntimeError: no W&B today)") == 1
    run_dir = Path(metrics["run_dir"])
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "complete"
    assert (run_dir / "model.pt").is_file() and (run_dir / "history.csv").is_file()


class FailingRun:
    """Stands in for a wandb Run whose disk filled up after the first log call."""

    def __init__(self):
        self.calls, self.summary, self.finished = 0, {}, None

    def log(self, data, step=None):
        self.calls += 1
        if self.calls > 1:
            raise OSError(28, "No space left on device")

    def finish(self, exit_code=0):
        self.finished = exit_code


def test_disk_error_while_logging_warns_once_and_stops_mirroring(capsys):
    logger = WandbLogger()
    logger.run = fake = FailingRun()
    logger.log({"train/loss": 1.0}, step=1)
    logger.log({"train/loss": 0.5}, step=2)
    logger.histogram("train/gamma_abs", [0.1, 0.2], step=2)
    logger.table("kept_channels", ["layer", "kept", "total"], [["a", 1, 2]])
    logger.summary({"acc_trained_final": 90.0})
    logger.finish("complete")
    err = capsys.readouterr().err
    assert err.count("warning: W&B") == 1 and "No space left on device" in err
    assert fake.calls == 2 and fake.finished == 1 and logger.run is None


def test_summary_maps_metrics_to_dashboard_keys():
    from regprune.tracking.wandb_logger import summary_from_metrics

    s = summary_from_metrics({"acc_trained_final": 91.0, "acc_pruned": 40.0, "acc_finetuned_final": 92.5,
                              "params": 10, "macs": 100, "flops": 200, "prune_ratio": 0.7,
                              "kept_channels": {"a": 3}, "provenance": {"seed": 0}, "status": "complete"})
    assert s["final/acc"] == 92.5 and s["prune/acc_pruned"] == 40.0 and s["prune/ratio"] == 0.7
    assert (s["final/params"], s["final/macs"], s["final/flops"]) == (10, 100, 200)
    assert "kept_channels" not in s and "provenance" not in s and s["status"] == "complete"
    assert summary_from_metrics({"acc_trained_final": 91.0})["final/acc"] == 91.0  # schedule=train


def test_online_without_credentials_falls_back_to_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # a prompt would fail, not hang
    logger = WandbLogger(mode="online")
    logger.start(tmp_path / "run", "online-s0", {"seed": 0}, group="g", job_type="train", tags=[])
    assert logger.run is not None and logger.run.settings.mode == "offline"
    logger.finish("complete")
    assert "no W&B credentials" in capsys.readouterr().err
    assert len(list((tmp_path / "run" / "wandb").glob("offline-run-*-online-s0"))) == 1


@pytest.mark.parametrize("bad, message", [
    ("logger.wandb.mode=cloud", "logger.wandb.mode='cloud': choose from ['offline', 'online', 'disabled']"),
    ("logger.wandb.histogram_bins=0", "logger.wandb.histogram_bins=0 must be in [1, 512]"),
])
def test_bad_logger_settings_are_one_line_errors(bad, message, tmp_path):
    proc = train([*TINY, "logger=wandb", bad, f"run.root={tmp_path}"], check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
