"""Run folders as others see them: a killed run reads as ``interrupted`` (listing and collection), the lock
excludes a second job while a run is alive and is gone once it ends, files get the umask's mode."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path

import pytest

from conftest import FAST, ROOT, compose, start_train, train
from regprune.analysis.runs import runs_frame
from regprune.pruning.io import load_checkpoint
from regprune.runs import main as list_runs

ARGS = ["model=vgg_tiny", "dataset=digits", "dataset.size=8", "regularizer=l1", "regularizer.lam=1e-3",
        "optimizer.lr=0.05", "schedule.train.epochs=3", "schedule.finetune.epochs=1", "schedule.prune.ratio=0.5",
        "progress=false", "latency=false", "threads=1"]


def listing(root: Path, capsys) -> dict[str, str]:
    """The one run's row of ``python -m regprune.runs root``, column -> value."""
    assert list_runs([str(root)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    starts = [header.index(c) for c in ("run", "status", "reached", "last write", "resume=auto")]
    cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return dict(zip(("run", "status", "reached", "last write", "resume"), cells, strict=True))


@pytest.mark.slow
def test_killed_run_is_interrupted_and_resumable(tmp_path, capsys):
    job = start_train([*ARGS, f"run.root={tmp_path}"], tmp_path)
    job.send_signal(signal.SIGSTOP)  # alive and holding the lock for as long as the test needs
    (run_dir,) = (tmp_path / "default").iterdir()
    try:
        alive = listing(tmp_path, capsys)
        assert (alive["run"], alive["status"]) == (f"default/{run_dir.name}", "running")
        assert alive["resume"] == "refuse (in use by another job)"
        assert runs_frame(tmp_path).status.tolist() == ["running"]
        second = train([*ARGS, f"run.root={tmp_path}", "resume=auto"], check=False)
        assert second.returncode == 2
        assert second.stderr.strip() == f"error: run folder {run_dir} is in use by another job"
    finally:
        job.kill()
    assert job.wait() == -signal.SIGKILL

    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "running"
    assert (run_dir / ".lock").exists()  # a killed job cannot clean up; nobody holds it though
    ckpt = load_checkpoint(run_dir / "ckpt.pt")
    killed = listing(tmp_path, capsys)
    assert killed["status"] == "interrupted" and killed["reached"] == f"train {ckpt['epoch']}"
    assert killed["resume"] == f"continue from ckpt.pt (step {ckpt['step']})"
    assert time.strptime(killed["last write"], "%Y-%m-%d %H:%M:%S")
    assert runs_frame(tmp_path).status.tolist() == ["interrupted"]

    train([*ARGS, f"run.root={tmp_path}", "resume=auto"])
    done = listing(tmp_path, capsys)
    assert (done["status"], done["reached"], done["resume"]) == ("complete", "finetune 1", "nothing (complete)")
    assert not (run_dir / ".lock").exists()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_run_files_follow_the_umask(umask, tmp_path):
    from regprune.run import run

    old = os.umask(umask)
    try:
        metrics = run(compose([*FAST, "dataset.size=8", f"run.root={tmp_path}", "magnitude_every=1"]))
    finally:
        os.umask(old)
    run_dir = Path(metrics["run_dir"])
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run_dir.iterdir()}
    assert set(files) == {"config.yaml", "metrics.json", "history.csv", "magnitudes.jsonl", "trained.pt", "model.pt",
                          "ckpt.pt"}  # no .lock left
    assert set(files.values()) == {0o666 & ~umask}
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o777 & ~umask


def test_listing_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "regprune.runs", str(tmp_path / "missing")], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: not a folder: {tmp_path / 'missing'}"
    entry = re.search(r'^\[project\.scripts\]\n(?:.+\n)*?regprune-runs = "([\w.]+):(\w+)"$',
                      (ROOT / "pyproject.toml").read_text(), re.M)
    assert entry is not None and getattr(import_module(entry[1]), entry[2]) is list_runs
