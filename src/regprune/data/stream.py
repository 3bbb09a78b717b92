"""Batches streamed from disk by DataLoader workers, for datasets too large to hold in memory (ImageNet).

Workers decode and transform images into uint8 tensors; the main process pins a batch (CUDA), moves it
to the device and normalises it there (``Normalise``, as ``BatchLoader`` does), so workers and the PCIe
bus carry a quarter of the bytes of float images.

Per epoch the order and one augmentation seed per sample are drawn from a generator seeded by
(seed, epoch); the dataset seeds the RNG with the sample's seed before its random transforms. A batch
therefore depends neither on the number of workers nor on earlier epochs, and a resumed run replays an
epoch exactly without loader state. In a run across processes each rank reads its share of every global batch
(as ``BatchLoader``), so each decodes only its own images.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..distributed import shard_positions
from ..errors import UserError
from .loader import Normalise


class StreamLoader:
    """Iterates (normalised float images, labels) batches on ``device`` from ``dataset``, a map-style dataset
    indexed by (index, augmentation seed or None) that returns (uint8 [C, H, W], label)."""

    def __init__(self, dataset: Dataset, batch_size: int, mean: tuple[float, ...], std: tuple[float, ...], *,
                 shuffle: bool = False, device: str | torch.device = "cpu", seed: int = 0, workers: int = 0,
                 memory_format: torch.memory_format = torch.contiguous_format, shard: tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be ≥ 1")
        if batch_size % shard[1]:
            raise ValueError(f"batch_size={batch_size} is not divisible by the {shard[1]} processes of the run")
        if workers < 0:
            raise ValueError(f"workers={workers} must be ≥ 0")
        self.dataset, self.batch_size, self.shuffle, self.shard = dataset, batch_size, shuffle, shard
        self.device, self.seed, self.workers, self.epoch = torch.device(device), seed, workers, 0
        self.normalise = Normalise(mean, std, self.device, memory_format)

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.shuffle:
            n = len(shard_positions(n, self.batch_size, *self.shard))
        return -(-n // (self.batch_size // self.shard[1]))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def keys(self) -> list[tuple[int, int | None]]:
        """This rank's (index, augmentation seed) of the epoch in reading order; in order and unseeded without
        shuffle."""
        n = len(self.dataset)
        if not self.shuffle:
            return [(i, None) for i in range(n)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g)
        seeds = torch.randint(0, 2**62, (n,), generator=g)
        mine = shard_positions(n, self.batch_size, *self.shard)
        return list(zip(order[mine].tolist(), seeds[mine].tolist(), strict=True))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # its own generator: DataLoader draws its workers' base seed from it, not from the global RNG
        loader = DataLoader(self.dataset, self.batch_size // self.shard[1], sampler=self.keys(),
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(self.seed))
        try:
            for x, y in loader:
                yield self.normalise(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)
        except UserError as e:  # from a worker it arrives with the worker's traceback: keep the error's own line
            last = str(e).strip().splitlines()[-1]
            raise type(e)(last.partition(f"{type(e).__name__}: ")[2] or last) from None
