"""Injected storage faults: the n-th write of one run file fails with an OSError, as a full disk, a quota, an
I/O error, a read-only file system or a permission would make it fail.

In this process: ``with WriteFault("ckpt.pt", nth=2, err=errno.ENOSPC) as fault: ...``. In a train.py
subprocess: ``train(args, launcher=(str(FAULTS), "ckpt.pt", "2", "ENOSPC"))`` runs
``python tests/disk_faults.py ckpt.pt 2 ENOSPC train.py args``.

Files are written as ``.<name>.<random>.tmp`` then renamed (``regprune.tracking.record.atomic_write_bytes``);
``at="create"`` fails creating that file (read-only, permission, quota), ``at="sync"`` fails its fsync after
the bytes went in (a full disk, an I/O error), ``persistent`` keeps failing every later write of the file.
"""

from __future__ import annotations

import errno
import os
import runpy
import sys
from fnmatch import fnmatch
from pathlib import Path

FAULTS = Path(__file__).resolve()


class WriteFault:
    def __init__(self, name: str, nth: int = 1, err: int = errno.ENOSPC, at: str = "sync",
                 persistent: bool = False):
        assert at in ("create", "sync")
        self.name, self.nth, self.err, self.at, self.persistent = name, nth, err, at, persistent
        self.writes = 0  # writes of ``name`` seen so far
        self.fired: Path | None = None  # the file whose write failed first
        self.before: bytes | None = None  # its content at that moment (None: it did not exist)
        self.doomed: dict[int, Path] = {}  # open descriptors whose fsync will fail

    def matches(self, path) -> bool:
        name = Path(os.fsdecode(path)).name
        return name == self.name or fnmatch(name, f".{self.name}.*.tmp")

    def fail(self, target: Path):
        if self.fired is None:
            self.fired = target
            self.before = target.read_bytes() if target.exists() else None
        raise OSError(self.err, os.strerror(self.err), str(target))

    def open(self, path, flags, mode=0o777, *, dir_fd=None):
        if not (flags & os.O_CREAT and self.matches(path)):
            return self._open(path, flags, mode, dir_fd=dir_fd)
        self.writes += 1
        due = self.writes == self.nth or (self.persistent and self.writes > self.nth)
        target = Path(os.fsdecode(path)).with_name(self.name)
        if due and self.at == "create":
            self.fail(target)
        fd = self._open(path, flags, mode, dir_fd=dir_fd)
        if due:
            self.doomed[fd] = target
        return fd

    def fsync(self, fd):
        target = self.doomed.pop(fd, None)
        if target is not None:
            self.fail(target)
        return self._fsync(fd)

    def __enter__(self) -> WriteFault:
        self._open, self._fsync = os.open, os.fsync
        os.open, os.fsync = self.open, self.fsync
        return self

    def __exit__(self, *exc) -> None:
        os.open, os.fsync = self._open, self._fsync


if __name__ == "__main__":  # disk_faults.py NAME NTH ERRNO train.py ARGS...
    name, nth, err, script, *args = sys.argv[1:]
    with WriteFault(name, int(nth), getattr(errno, err)):
        sys.argv = [script, *args]
        runpy.run_path(script, run_name="__main__")
