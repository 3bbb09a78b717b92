"""A run is a folder: config, metrics.json, history.csv, model.pt, ckpt.pt — each written atomically."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import torch

from ..errors import UserError

PACKAGES = ("regprune", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "wandb", "torch-pruning")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


REPO = Path(__file__).resolve().parents[3]
# written by reproductions and analysis, never read by a run: a reproduction that has already rewritten some
# tables does not make its later runs "dirty"
OUTPUTS = ("results",)


def git_state(root: Path = REPO) -> dict:
    """The checkout's commit and whether tracked files outside OUTPUTS differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        commit = head.stdout.strip() if head.returncode == 0 else ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){p}" for p in OUTPUTS)], cwd=root, capture_output=True, text=True,
                               timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": dirty if commit else None}


def provenance(seed: int, device: torch.device) -> dict:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {**git_state(), "packages": versions, "python": platform.python_version(), "device": str(device),
            "device_name": dev, "threads": torch.get_num_threads(), "seed": seed, "host": socket.gethostname(),
            "command": " ".join(sys.argv)}


class RunRecord:
    """The folder of one run id. ``open`` creates it, or reopens it for ``resume=auto``."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def open(cls, root: str | Path, experiment: str, run_id: str, resume: str) -> RunRecord:
        root = Path(root)
        path = root / experiment / run_id
        for parent in [root, *root.parents]:
            if parent.exists() and not parent.is_dir():
                raise UserError(f"cannot create run folder {path}: {parent} is not a directory")
        if path.exists() and resume != "auto":
            raise UserError(f"run folder {path} already exists; pass resume=auto to continue it, "
                            "or choose another run.name")
        try:
            path.mkdir(parents=True, exist_ok=resume == "auto")
        except FileExistsError:
            raise UserError(f"run folder {path} was created by another job; choose another run.name") from None
        except OSError as e:
            raise UserError(f"cannot create run folder {path}: {e.strerror}") from None
        return cls(path)

    @contextlib.contextmanager
    def lock(self):
        """Hold an exclusive lock on the folder for the run's duration: two jobs never share a run."""
        with open(self.path / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"run folder {self.path} is in use by another job") from None
            try:
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def discard_if_left_empty(self):
        """Remove the folder again if the run fails before writing anything into it."""
        try:
            yield self
        except BaseException:
            if {p.name for p in self.path.iterdir()} <= {".lock"}:
                (self.path / ".lock").unlink(missing_ok=True)
                self.path.rmdir()
            raise

    def write_json(self, name: str, obj: dict) -> None:
        atomic_write_bytes(self.path / name, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())

    def read_json(self, name: str) -> dict | None:
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else None

    def write_text(self, name: str, text: str) -> None:
        atomic_write_bytes(self.path / name, text.encode())

    def write_history(self, rows: list[dict]) -> None:
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
        self.write_text("history.csv", buf.getvalue())

    def save(self, name: str, obj) -> None:
        atomic_torch_save(obj, self.path / name)

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()
