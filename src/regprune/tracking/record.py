"""A run is a folder: config, metrics.json, history.csv, model.pt, ckpt.pt — each written atomically.

Files get the mode the umask gives (like any file the user creates). A write that fails (full disk, quota,
I/O error, read-only file system, permission) leaves the earlier version of the file intact and raises a
one-line ``StorageError``. The folder's ``.lock`` is held while a run works in it and removed when it ends;
a folder whose status is ``running`` but whose lock nobody holds belongs to an interrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from ..errors import StorageError, UserError
from .checksum import seal

PACKAGES = ("regprune", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "wandb", "torch-pruning")
LOCK = ".lock"
CHECKPOINT = "ckpt.pt"
LOCK_WAIT_S = 1.0  # a listing may hold the lock for an instant to test it: a starting job retries this long


def human_bytes(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while n >= 1024 and power < len(units) - 1:
        n, power = n / 1024, power + 1
    return f"{n:.0f} B" if power == 0 else f"{n:.1f} {units[power]}"


def storage_error(path: Path, e: OSError) -> StorageError:
    """``cannot write <path>: <reason>``, with ``(<free> free)`` when the disk is full (not for a quota: the
    disk's free space says nothing about it)."""
    reason = os.strerror(e.errno).lower() if e.errno else str(e)
    if e.errno == errno.ENOSPC:
        existing = next(p for p in [path, *path.parents] if p.exists())
        reason += f" ({human_bytes(shutil.disk_usage(existing).free)} free)"
    return StorageError(path, f"cannot write {path}: {reason}")


def version(path: Path, age: int) -> Path:
    """The name of ``path``'s version ``age`` (0 = newest): ckpt.pt, ckpt-1.pt, ckpt-2.pt, ..."""
    return path if age == 0 else path.with_name(f"{path.stem}-{age}{path.suffix}")


def atomic_write_bytes(path: Path, data: bytes, keep: int = 1) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``; with ``keep`` > 1 the
    ``keep`` - 1 previous versions are kept (see ``version``). Any OSError becomes a ``StorageError``."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            for age in reversed(range(1, keep)):
                if version(path, age - 1).exists():
                    os.replace(version(path, age - 1), version(path, age))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
    except OSError as e:
        raise storage_error(path, e) from None


def atomic_torch_save(obj, path: Path, keep: int = 1) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue(), keep)


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
    """The folder of one run id. ``open`` creates it, or reopens it for ``resume=auto``. ``keep`` maps a file
    name to how many versions of it are kept (``{"ckpt.pt": 2}`` keeps ckpt.pt and ckpt-1.pt)."""

    def __init__(self, path: Path, keep: dict[str, int] | None = None):
        self.path = path
        self.keep = dict(keep or {})

    @classmethod
    def open(cls, root: str | Path, experiment: str, run_id: str, resume: str,
             keep: dict[str, int] | None = None) -> RunRecord:
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
        return cls(path, keep)

    @contextlib.contextmanager
    def lock(self):
        """Hold an exclusive lock on the folder for the run's duration: two jobs never share a run. The lock
        file is removed when the run ends; temporary files a killed run left behind are removed on entry."""
        path = self.path / LOCK
        f = self._acquire(path)
        try:
            for tmp in self.path.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            yield self
        finally:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)  # before unlocking: a job waiting on this file sees it is gone
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    def _acquire(self, path: Path):
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                f = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+b")
            except OSError as e:
                raise storage_error(path, e) from None
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                if time.monotonic() > deadline:
                    raise UserError(f"run folder {self.path} is in use by another job") from None
                time.sleep(0.02)
                continue
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                    return f
            f.close()  # the run that held it ended and removed the file meanwhile: lock the current one

    @contextlib.contextmanager
    def discard_if_left_empty(self):
        """Remove the folder again if the run fails before writing anything into it."""
        try:
            yield self
        except BaseException:
            if {p.name for p in self.path.iterdir()} <= {LOCK}:
                (self.path / LOCK).unlink(missing_ok=True)
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

    def save(self, name: str, obj: dict) -> None:
        """A torch file holding ``obj`` and its checksum (``tracking.checksum``)."""
        atomic_torch_save(seal(obj), self.path / name, self.keep.get(name, 1))

    def versions(self, name: str) -> list[Path]:
        """The versions of ``name`` on disk, newest first (older ones kept by ``keep``, now or in an earlier
        session of the run)."""
        newest = self.path / name
        suffixes = (p.stem.removeprefix(f"{newest.stem}-") for p in self.path.glob(f"{newest.stem}-*{newest.suffix}"))
        ages = sorted(int(a) for a in suffixes if a.isdigit())
        return [p for p in [newest, *(version(newest, a) for a in ages)] if p.exists()]

    def set_aside(self, name: str) -> Path:
        """Rename a file a run cannot use (a corrupt checkpoint) to ``<name>.corrupt``, out of every version
        list, and return the new path."""
        aside = self.path / f"{name}.corrupt"
        try:
            os.replace(self.path / name, aside)
        except OSError as e:
            raise storage_error(aside, e) from None
        return aside


def lock_held(run_dir: Path) -> bool:
    """Whether a live job holds ``run_dir``'s lock (tested with a shared lock taken and dropped at once)."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # unreadable (another user's run): it cannot be told interrupted, so it is not
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def run_status(run_dir: Path, recorded: str | None) -> str:
    """The status a run folder records, with ``running`` told apart: ``interrupted`` if no job holds its lock
    (killed, or stopped by a failure it could not record)."""
    return "interrupted" if recorded == "running" and not lock_held(run_dir) else recorded


class ReadOnlyRecord(RunRecord):
    """The run folder as the ranks other than 0 of a run across processes see it: rank 0 locks it and writes
    every file (one folder, one checkpoint), the others only read."""

    @contextlib.contextmanager
    def lock(self):
        yield self

    @contextlib.contextmanager
    def discard_if_left_empty(self):
        yield self

    def write_text(self, name: str, text: str) -> None:
        pass

    def write_json(self, name: str, obj: dict) -> None:
        pass

    def save(self, name: str, obj: dict) -> None:
        pass
