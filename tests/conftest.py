"""Shared test helpers: compose configs in-process and run train.py as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def compose(overrides: list[str]):
    """The config ``python train.py <overrides>`` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from regprune.config import register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def train(args: list[str], cwd: Path | None = None, check: bool = True, env: dict | None = None,
          timeout: int = 600, script: str = "train.py") -> subprocess.CompletedProcess:
    """Run ``python train.py args`` (or another entry ``script``) in a subprocess; returns the completed process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), full_env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc
