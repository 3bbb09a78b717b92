"""`pip install .` gives a working `regprune-train` outside the checkout: the configs ship with the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import FAST, ROOT


def test_installed_command_trains_outside_the_checkout(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(ROOT)], check=True, capture_output=True, timeout=600)
    configs = site / "regprune" / "configs"
    assert (configs / "config.yaml").is_file() and not configs.is_symlink()  # copied, not a link to the checkout
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import regprune; print(regprune.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))  # the installed copy runs, not the checkout's
    proc = subprocess.run([str(site / "bin" / "regprune-train"), *FAST, "dataset.size=8", "threads=1"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    folder = work / proc.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    assert json.loads((folder / "metrics.json").read_text())["status"] == "complete"
    assert [p.name for p in work.iterdir()] == ["runs"]  # no log or output folder next to the runs
    bad = subprocess.run([str(site / "bin" / "regprune-train"), "model=vgg_tinny"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "vgg_tiny" in bad.stderr
