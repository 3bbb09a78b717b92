"""CIFAR-10 / CIFAR-100 through torchvision, as uint8 NCHW tensors (augmentation runs in BatchLoader).

Data lives in ``root`` (default: $REGPRUNE_DATA, else ``data/`` in the repository), in torchvision's
layout: ``cifar-10-batches-py/`` or ``cifar-100-python/``. ``download=true`` fetches it once.
"""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import torch

from ..errors import UserError
from .base import DatasetSpec, ImageData, default_root, split_validation

TRAIN_IMAGES = 50_000  # CIFAR-10 and CIFAR-100 training sets (before a validation split)


def without_md5(cls: type) -> type:
    """``cls`` with its files' MD5 sums removed: torchvision's integrity checks (``_check_integrity``
    and the metadata check) then only test that each file exists. Used for ``verify_checksums=false``,
    which exists for the tests' small fake files written in the real on-disk format."""
    return type(f"{cls.__name__}NoMD5", (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


class CifarSpec(DatasetSpec):
    """Shared by CIFAR-10/100: ``tv_class`` is the torchvision dataset, ``mean``/``std`` its training-set
    channel statistics (override with ``mean``/``std``, e.g. NS's (0.2023, 0.1994, 0.2010) std)."""

    name = "cifar"
    title = "CIFAR"
    num_classes = 0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __init__(self, root: str | None = None, download: bool = False, verify_checksums: bool = True,
                 mean: list[float] | None = None, std: list[float] | None = None, **loader):
        super().__init__(**loader)
        self.root = Path(root).expanduser() if root else default_root()
        self.download, self.verify_checksums = bool(download), bool(verify_checksums)
        for key, value in (("mean", mean), ("std", std)):
            if value is not None:
                if len(value) != 3 or (key == "std" and min(value) <= 0):
                    raise ValueError(f"{key}={list(value)} must be 3 numbers (std > 0)")
                setattr(self, key, tuple(float(v) for v in value))

    @staticmethod
    def tv_class() -> type:
        raise NotImplementedError

    @property
    def folder(self) -> Path:
        return self.root / self.tv_class().base_folder

    def missing(self) -> str | None:
        if self.download or self.folder.is_dir():
            return None
        return (f"{self.title} not found in {self.folder}: set dataset.download=true, or point "
                f"dataset.root (or $REGPRUNE_DATA) at the folder containing {self.folder.name}/")

    def sizes(self) -> tuple[int, int, tuple[int, ...]]:
        return round(TRAIN_IMAGES * (1 - self.val_fraction)), self.num_classes, (3, 32, 32)

    def read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One split as (uint8 [N, 3, 32, 32], int64 [N]); every failure is a one-line UserError."""
        cls = self.tv_class() if self.verify_checksums else without_md5(self.tv_class())
        if self.missing():
            raise UserError(self.missing())
        try:
            ds = cls(str(self.root), train=train, download=self.download)
        except urllib.error.URLError as e:
            raise UserError(f"could not download {self.title} to {self.root}: {e.reason}; download it "
                            f"elsewhere and set dataset.root") from None
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as e:
            # torchvision raises RuntimeError for a missing file or an MD5 mismatch
            why = "missing or MD5 mismatch" if isinstance(e, RuntimeError) else f"{type(e).__name__}: {e}"
            raise UserError(f"{self.bad_file(cls)} is missing, corrupted or not a CIFAR file "
                            f"({why.splitlines()[0]}); delete {self.folder} and set dataset.download=true") from None
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor(ds.targets, dtype=torch.int64)

    def bad_file(self, cls: type) -> Path:
        """The first of ``cls``'s files that is missing, fails its MD5 (if checked) or does not unpickle."""
        from torchvision.datasets.utils import check_integrity

        for name, md5 in [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]:
            path = self.folder / name
            if not check_integrity(path, md5):
                return path
            try:
                with open(path, "rb") as f:
                    pickle.load(f, encoding="latin1")
            except Exception:
                return path
        return self.folder

    def load(self) -> ImageData:
        train, val = split_validation(self, *self.read(train=True))
        return ImageData(train=train, val=val, test=self.read(train=False), num_classes=self.num_classes,
                         mean=self.mean, std=self.std)


class Cifar10(CifarSpec):
    name, title, num_classes = "cifar10", "CIFAR-10", 10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    @staticmethod
    def tv_class() -> type:
        from torchvision.datasets import CIFAR10

        return CIFAR10


class Cifar100(CifarSpec):
    name, title, num_classes = "cifar100", "CIFAR-100", 100
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

    @staticmethod
    def tv_class() -> type:
        from torchvision.datasets import CIFAR100

        return CIFAR100
