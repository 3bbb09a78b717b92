"""A write that fails (full disk, quota, I/O error, read-only file system, permission) at any write site: one
line ``error: cannot write <path>: <reason>; the last good checkpoint is <path>``, exit code 2, the earlier
version of the file intact, ``status: failed`` when that can still be written, and ``resume=auto`` (space
back) ends exactly where an uninterrupted run does. Injected faults (tests/disk_faults.py) and, where a user
namespace can mount one, a real 4 MiB tmpfs."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compose, train
from disk_faults import FAULTS, WriteFault
from regprune.pruning.io import load_checkpoint
from regprune.tracking.record import run_status

pytestmark = pytest.mark.usefixtures("one_thread")

# vgg_tiny on 8×8 digits: train 2 epochs (a checkpoint after each), prune, fine-tune 1 epoch, magnitudes
ARGS = ["model=vgg_tiny", "dataset=digits", "dataset.size=8", "regularizer=l1", "regularizer.lam=1e-3",
        "optimizer.lr=0.05", "schedule.train.epochs=2", "schedule.finetune.epochs=1", "schedule.prune.ratio=0.5",
        "magnitude_every=1", "progress=false", "latency=false", "threads=1"]
VOLATILE = ("wall_time_s", "provenance", "run_dir")  # where and how long, not what was computed


def outcome(run_dir: Path) -> dict:
    """Everything a finished run computed: metrics, history (epoch times left out), final and trained models."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "history.csv") as f:
        history = [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]
    models = {name: load_checkpoint(run_dir / name) for name in ("model.pt", "trained.pt")}
    return {"metrics": {k: v for k, v in metrics.items() if k not in VOLATILE}, "history": history,
            "magnitudes": (run_dir / "magnitudes.jsonl").read_text(),
            "models": {name: (m["spec"], {k: v.tolist() for k, v in m["state_dict"].items()})
                       for name, m in models.items()}}


def run_dir_of(root: Path) -> Path:
    (run_dir,) = (root / "default").iterdir()
    return run_dir


def cli_run(overrides: list[str]):
    """``train.py overrides`` in this process: the metrics, or the exit code of a one-line error."""
    from regprune.cli import execute

    try:
        return execute(compose(overrides), overrides)
    except SystemExit as e:
        return e.code


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    metrics = cli_run([*ARGS, f"run.root={root}"])
    assert metrics["status"] == "complete"
    return run_dir_of(root)


@pytest.fixture(scope="module")
def reference(uninterrupted) -> dict:
    return outcome(uninterrupted)


def no_leftovers(run_dir: Path) -> None:
    assert not list(run_dir.glob(".*.tmp")), "a temporary file was left behind"
    assert not (run_dir / ".lock").exists()


# name, nth write, errno, where it fails, persistent
SITES = {
    "checkpoint": ("ckpt.pt", 2, errno.ENOSPC, "sync", False),  # end of the train phase; epoch 1's stays
    "history": ("history.csv", 2, errno.EIO, "sync", False),
    "trained model": ("trained.pt", 1, errno.EACCES, "create", False),
    "final model": ("model.pt", 1, errno.EROFS, "create", False),
    "config": ("config.yaml", 1, errno.EROFS, "create", False),
    "magnitudes": ("magnitudes.jsonl", 2, errno.EDQUOT, "sync", False),
    "metrics, status cannot be recorded": ("metrics.json", 2, errno.ENOSPC, "sync", True),
}
REASONS = {errno.ENOSPC: r"no space left on device \(\d+(\.\d)? [KMGT]?i?B free\)",
           errno.EDQUOT: "disk quota exceeded", errno.EIO: "input/output error",
           errno.EACCES: "permission denied", errno.EROFS: "read-only file system"}


@pytest.mark.parametrize("site", list(SITES))
def test_write_fault_is_one_line_then_resume_matches_uninterrupted(site, reference, tmp_path, capsys):
    name, nth, err, at, persistent = SITES[site]
    with WriteFault(name, nth, err, at, persistent) as fault:
        code = cli_run([*ARGS, f"run.root={tmp_path}"])
    run_dir = run_dir_of(tmp_path)
    assert code == 2 and fault.fired == run_dir / name
    (line,) = capsys.readouterr().err.strip().splitlines()
    checkpoint = "no checkpoint yet \\(resume=auto starts over\\)" if name == "config.yaml" else \
        f"the last good checkpoint is {re.escape(str(run_dir / 'ckpt.pt'))}"
    assert re.fullmatch(f"error: cannot write {re.escape(str(run_dir / name))}: {REASONS[err]}; {checkpoint}", line)
    after = (run_dir / name).read_bytes() if (run_dir / name).exists() else None
    assert after == fault.before  # the earlier version, untouched (or still no file)
    if name == "ckpt.pt":
        assert load_checkpoint(run_dir / name)["epoch"] == 1
    if (run_dir / "ckpt.pt").exists():
        load_checkpoint(run_dir / "ckpt.pt")  # the last good checkpoint loads, its checksum intact
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if persistent:  # the failure could not be recorded either: a listing shows the run as interrupted
        assert metrics["status"] == "running" and run_status(run_dir, "running") == "interrupted"
    else:
        assert metrics["status"] == "failed" and metrics["reason"] == f"StorageError: {line.removeprefix('error: ')}"
    no_leftovers(run_dir)

    assert cli_run([*ARGS, f"run.root={tmp_path}", "resume=auto"])["status"] == "complete"
    assert outcome(run_dir) == reference
    no_leftovers(run_dir)


def test_wandb_disk_error_only_warns(reference, tmp_path, monkeypatch, capsys):
    """W&B mirrors the run folder: its disk error is one warning, and the run completes as without W&B."""
    pytest.importorskip("wandb")
    from wandb.sdk.wandb_run import Run

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Run, "log", full_disk)
    assert cli_run([*ARGS, "logger=wandb", f"run.root={tmp_path}"])["status"] == "complete"
    (warning,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert re.fullmatch(r"warning: W&B \w+ failed \(OSError: \[Errno 28\] No space left on device\); continuing "
                        r"with local records only", warning)
    assert outcome(run_dir_of(tmp_path)) == reference


def test_lock_file_that_cannot_be_created(tmp_path, capsys):
    with WriteFault(".lock", 1, errno.EROFS, "create"):
        code = cli_run([*ARGS, f"run.root={tmp_path}"])
    run_dir = run_dir_of(tmp_path)
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: cannot write {run_dir / '.lock'}: read-only file system"
    assert list(run_dir.iterdir()) == []


@pytest.mark.slow
def test_fault_in_a_subprocess_then_resume(reference, tmp_path):
    crashed = train([*ARGS, f"run.root={tmp_path}"], check=False, launcher=(str(FAULTS), "ckpt.pt", "3", "ENOSPC"))
    run_dir = run_dir_of(tmp_path)
    assert crashed.returncode == 2, crashed.stderr
    (line,) = crashed.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write {run_dir / 'ckpt.pt'}: no space left on device (")
    assert line.endswith(f" free); the last good checkpoint is {run_dir / 'ckpt.pt'}")
    assert load_checkpoint(run_dir / "ckpt.pt")["phase"] == 1  # the one after training; pruning's failed
    train([*ARGS, f"run.root={tmp_path}", "resume=auto"])
    assert outcome(run_dir) == reference


def user_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not user_namespaces(), reason="cannot mount a tmpfs here (no unprivileged user namespaces)")
@pytest.mark.slow
def test_real_full_disk_then_space_back(reference, tmp_path):
    """A 4 MiB tmpfs holds the first checkpoint (2.3 MB with momentum) but not, next to it, the one after
    training: the real ENOSPC. Then the tmpfs grows and resume=auto finishes the run."""
    disk, saved = tmp_path / "disk", tmp_path / "saved"
    disk.mkdir()
    train_py = f"{sys.executable} {ROOT / 'train.py'} {' '.join(ARGS)} run.root={disk}"
    script = f"""
        mount -t tmpfs -o size=4m tmpfs {disk}
        rc=0; {train_py} 2> {tmp_path}/first.err || rc=$?; echo $rc > {tmp_path}/first.rc
        cp -a {disk} {saved}
        mount -o remount,size=64m {disk}
        rc=0; {train_py} resume=auto 2> {tmp_path}/second.err || rc=$?; echo $rc > {tmp_path}/second.rc
        cp -a {disk}/default {tmp_path}/final
    """
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(["unshare", "-rm", "bash", "-ec", script], env=env, check=True, timeout=900)
    assert (tmp_path / "first.rc").read_text().strip() == "2"
    run_dir = run_dir_of(saved)
    (line,) = (tmp_path / "first.err").read_text().strip().splitlines()
    assert re.fullmatch(f"error: cannot write {re.escape(str(disk / 'default' / run_dir.name / 'ckpt.pt'))}: "
                        f"{REASONS[errno.ENOSPC]}; the last good checkpoint is .*/ckpt.pt", line)
    kept = load_checkpoint(run_dir / "ckpt.pt")
    assert (kept["phase"], kept["epoch"]) == (0, 1)  # the first checkpoint, intact
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "no space left on device" in metrics["reason"]
    no_leftovers(run_dir)
    assert (tmp_path / "second.rc").read_text().strip() == "0", (tmp_path / "second.err").read_text()
    final = tmp_path / "final" / run_dir.name
    assert outcome(final) == reference
    no_leftovers(final)


def test_collect_outputs_on_a_full_disk(uninterrupted, tmp_path):
    """collect.py: one line, exit 2, the tables of the previous collection intact, no temporary file left."""
    out = tmp_path / "tables"
    collect = [str(ROOT / "scripts" / "collect.py"), str(uninterrupted.parent.parent), "--out", str(out)]
    first = subprocess.run([sys.executable, *collect], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = subprocess.run([sys.executable, str(FAULTS), "summary.csv", "1", "ENOSPC", *collect],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert re.fullmatch(f"error: cannot write {re.escape(str(out / 'summary.csv'))}: {REASONS[errno.ENOSPC]}", line)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# -- checkpoint integrity ------------------------------------------------------------------------------
def flip_a_weight_bit(path: Path) -> None:
    """Bit rot: one bit of the largest stored weight flips; the file still loads with plain torch.load."""
    payload = torch.load(path, weights_only=True)
    weight = max(payload.get("model", payload)["state_dict"].values(), key=torch.Tensor.numel)
    data, raw = path.read_bytes(), bytes(weight.untyped_storage())
    at = data.index(raw) + len(raw) // 2
    path.write_bytes(data[:at] + bytes([data[at] ^ 0x04]) + data[at + 1:])
    torch.load(path, weights_only=True)


def test_corrupt_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, capsys):
    """checkpoint_keep=2: a run stopped after pruning (a failed write) keeps the checkpoints after training and
    after pruning; the newer one rots. resume=auto sets it aside and continues from the older one, exactly;
    without an older one it refuses, naming the file."""
    from regprune.runs import main as list_runs

    with WriteFault("history.csv", 3, errno.EIO):  # the 3rd checkpoint: after pruning
        assert cli_run([*ARGS, f"run.root={tmp_path}/a", "checkpoint_keep=2"]) == 2
    run_dir = run_dir_of(tmp_path / "a")
    assert [load_checkpoint(run_dir / f)["phase"] for f in ("ckpt.pt", "ckpt-1.pt")] == [2, 1]
    flip_a_weight_bit(run_dir / "ckpt.pt")
    capsys.readouterr()

    alone = tmp_path / "b" / "default" / run_dir.name  # the same run without the older checkpoint
    shutil.copytree(run_dir, alone)
    (alone / "ckpt-1.pt").unlink()
    before = {p.name: p.read_bytes() for p in alone.iterdir()}
    recorded = torch.load(alone / "ckpt.pt", weights_only=True)["payload_sha256"]
    assert cli_run([*ARGS, f"run.root={tmp_path}/b", "resume=auto"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: checkpoint {alone / 'ckpt.pt'} is corrupt: its content does "
                                               f"not match its recorded checksum (sha256 {recorded[:12]}…)")
    assert {p.name: p.read_bytes() for p in alone.iterdir()} == before

    assert list_runs([str(tmp_path / "a")]) == 0
    step = load_checkpoint(run_dir / "ckpt-1.pt")["step"]
    assert f"continue from ckpt-1.pt (step {step}); set aside corrupt ckpt.pt" in capsys.readouterr().out
    assert cli_run([*ARGS, f"run.root={tmp_path}/a", "resume=auto", "checkpoint_keep=2"])["status"] == "complete"
    (note,) = capsys.readouterr().err.strip().splitlines()
    assert note.startswith(f"note: checkpoint {run_dir / 'ckpt.pt'} is corrupt: ") and note.endswith(
        "renamed it ckpt.pt.corrupt, resuming from ckpt-1.pt")
    assert outcome(run_dir) == reference
    assert (run_dir / "ckpt.pt.corrupt").is_file()
    assert [load_checkpoint(run_dir / f)["phase"] for f in ("ckpt.pt", "ckpt-1.pt")] == [3, 2]


@pytest.mark.parametrize("name", ["model.pt", "trained.pt"])
def test_corrupt_model_files_are_refused(name, uninterrupted, tmp_path, capsys):
    from regprune import load_pruned
    from regprune.errors import UserError

    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted, copy)
    flip_a_weight_bit(copy / name)
    if name == "model.pt":
        with pytest.raises(UserError, match=f"^checkpoint {re.escape(str(copy / name))} is corrupt: "):
            load_pruned(copy)
        return
    assert cli_run([*ARGS, f"run.root={tmp_path}/other", f"schedule.start_from={copy}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: checkpoint {copy / name} is corrupt: ")
