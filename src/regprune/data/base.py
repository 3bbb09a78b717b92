"""What a dataset gives a run: ``DatasetSpec.loaders`` -> ``Loaders`` (train/val/test batches on the training
device, plus the input shape and class count the model is built for).

Datasets that fit in memory implement ``load`` (uint8 image tensors) and are batched on the device by
``BatchLoader`` without per-sample Python; streaming datasets (``ImageFolderData``) override ``loaders``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from .loader import BatchLoader

REPO_DATA = Path(__file__).resolve().parents[3] / "data"


def default_root() -> Path:
    """Where datasets live unless ``dataset.root`` says otherwise: $REGPRUNE_DATA, else ``data/`` in the repo."""
    return Path(os.environ.get("REGPRUNE_DATA") or REPO_DATA)


@dataclass
class ImageData:
    """Splits as (images uint8 [N, C, H, W], labels int64 [N]); ``val`` may be None."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])

    @property
    def in_channels(self) -> int:
        return self.train[0].shape[1]


class Batches(Protocol):
    """An epoch of (normalised float images, int64 labels) batches on the training device."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None:
        """Order and augmentation of the next pass are drawn from (seed, epoch) alone (exact resume)."""


@dataclass
class Loaders:
    """The batches of one run and what the model is built for."""

    train: Batches
    val: Batches | None
    test: Batches
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one batch element
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]


class DatasetSpec:
    """Base of dataset configs: loader settings shared by every dataset; subclasses implement ``load``
    (in memory) or override ``loaders`` (streaming)."""

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 1000, augment: bool = True,
                 crop_padding: int = 4, val_fraction: float = 0.0, split_seed: int = 0, epochs: int = 160):
        if epochs < 1:
            raise ValueError(f"epochs={epochs} must be ≥ 1")
        self.epochs = epochs  # the usual length of a training phase on this dataset (schedules default to it)
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch sizes must be ≥ 1, got {batch_size}, {eval_batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction} is outside [0, 1)")
        if crop_padding < 0:
            raise ValueError(f"crop_padding={crop_padding} must be ≥ 0")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.augment, self.crop_padding = augment, crop_padding
        self.val_fraction, self.split_seed = val_fraction, split_seed

    name = "dataset"

    def load(self) -> ImageData:
        raise NotImplementedError

    def loaders(self, device: str | torch.device, seed: int,
                memory_format: torch.memory_format = torch.contiguous_format,
                shard: tuple[int, int] = (0, 1)) -> Loaders:
        """The run's batches: ``load()``'s images held once on ``device``, training batches shuffled, cropped
        and flipped per (seed, epoch) (this rank's share of them with ``shard=(rank, world)``), evaluation
        batches in order (every rank evaluates the whole split)."""
        data = self.load()
        stats = {"mean": data.mean, "std": data.std, "device": device, "memory_format": memory_format}
        train = BatchLoader(*data.train, self.batch_size, shuffle=True, crop_padding=self.crop_padding if self.augment
                            else 0, flip=self.augment, seed=seed, shard=shard, **stats)
        val, test = (None if split is None else BatchLoader(*split, self.eval_batch_size, **stats)
                     for split in (data.val, data.test))
        return Loaders(train=train, val=val, test=test, num_classes=data.num_classes, input_shape=data.input_shape,
                       mean=data.mean, std=data.std)

    def missing(self) -> str | None:
        """Why the data is not on disk to load (None: it is, or it is bundled or generated)."""
        return None

    def sizes(self) -> tuple[int, int, tuple[int, ...]]:
        """(training images, classes, input shape C×H×W) for estimates, without loading data that may be absent."""
        data = self.load()
        return len(data.train[1]), data.num_classes, data.input_shape


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (rest, held_out): ``fraction`` of every class held out, chosen by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    rest, held = [], []
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n = int(round(fraction * len(idx)))
        held.append(idx[:n])
        rest.append(idx[n:])
    return torch.cat(rest).sort().values, torch.cat(held).sort().values


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.double() / 255.0
    return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).tolist())


def split_validation(spec: DatasetSpec, x: torch.Tensor, y: torch.Tensor):
    """(train, val or None) from a training set, by the spec's val_fraction and split_seed."""
    if spec.val_fraction <= 0:
        return (x, y), None
    rest, held = stratified_split(y, spec.val_fraction, spec.split_seed)
    return (x[rest], y[rest]), (x[held], y[held])
