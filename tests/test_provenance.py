"""Run provenance: a checkout is dirty when code differs from its commit, not when a reproduction has
rewritten its own outputs under results/."""

from __future__ import annotations

import subprocess

from regprune.tracking.record import git_state


def git(root, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_rewritten_results_do_not_make_the_checkout_dirty(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "results" / "mini").mkdir(parents=True)
    (tmp_path / "src" / "train.py").write_text("lr = 0.1\n")
    (tmp_path / "results" / "mini" / "summary.csv").write_text("acc\n93.5\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "x")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == {"git_commit": head, "git_dirty": False}
    (tmp_path / "results" / "mini" / "summary.csv").write_text("acc\n94.0\n")  # a reproduction's tables
    assert git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "src" / "train.py").write_text("lr = 0.2\n")  # code that changes what runs compute
    assert git_state(tmp_path)["git_dirty"] is True
