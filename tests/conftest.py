"""Shared test helpers: compose configs in-process and run train.py as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from regprune.compose import compose  # noqa: F401 (re-exported for the tests)

ROOT = Path(__file__).resolve().parents[1]

# small, fast settings for end-to-end runs on digits
FAST = ["model=vgg_tiny", "dataset=digits", "optimizer.lr=0.05", "schedule.train.epochs=1",
        "schedule.finetune.epochs=1", "schedule.prune.ratio=0.5", "progress=false", "latency=false"]
# the same for schedule=train (no prune / finetune sections)
FAST_TRAIN = [a for a in FAST if not a.startswith(("schedule.finetune", "schedule.prune"))]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """Real tiny run folders (tests/tiny_runs.py), built once per session for the analysis and notebook tests."""
    from tiny_runs import make_tiny_runs

    return make_tiny_runs(tmp_path_factory.mktemp("analysis"))


@pytest.fixture
def one_thread():
    """Small tensors on a shared 2-core machine: two intra-op threads next to another busy process ran the
    model tests 4× slower than one thread (measured). Modules opt in with ``usefixtures``; restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def crash(**where) -> str:
    """The override that kills a run abruptly (regprune.testing.Crash) at ``at_step=N`` or ``after_phase=NAME``."""
    args = ",".join(f"{k}:{v}" for k, v in where.items())
    return f"+callbacks={{crash:{{_target_:regprune.testing.Crash,{args}}}}}"


def train_env(env: dict | None = None) -> dict:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), full_env.get("PYTHONPATH")]))
    return full_env


def train(args: list[str], cwd: Path | None = None, check: bool = True, env: dict | None = None,
          timeout: int = 600, launcher: tuple[str, ...] = (), script: str = "train.py") -> subprocess.CompletedProcess:
    """Run ``python [launcher] train.py args`` (or another entry ``script``) in a subprocess (a launcher script runs
    the entry itself, e.g. tests/disk_faults.py); returns the completed process."""
    proc = subprocess.run([sys.executable, *launcher, str(ROOT / script), *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=train_env(env), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def start_train(args: list[str], root: Path, ready: str = "default/*/ckpt.pt",
                timeout: float = 300) -> subprocess.Popen:
    """Start ``python train.py args`` in the background; return it once ``root`` holds a file matching ``ready``
    (a glob; the first checkpoint by default), or once it has ended."""
    job = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=train_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not list(root.glob(ready)) and time.time() < deadline and job.poll() is None:
        time.sleep(0.02)
    return job
