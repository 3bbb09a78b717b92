"""Batches from uint8 tensors held once on the training device; crop/flip/normalise in batch.

The training set is zero-padded once at construction and kept as uint8. A crop is then a window of
the padded image: an ``as_strided`` view enumerates every window of every image without copying,
so one gather (``view[index, dy, dx]``) reads a whole batch of independently cropped images. A flip
and one fused multiply-add (ToTensor's /255 and Normalize) finish the batch. The same code runs on
CPU and CUDA; nothing is done per sample in Python.

Per epoch the order, the crop offsets and the flips are drawn from a generator seeded by
(seed, epoch), so an epoch is reproducible on its own (exact resume needs no loader state). In a run across
``world`` processes every rank draws the same plan and reads its own share of every global batch
(``regprune.distributed.shard_positions``): the ranks together see what one process would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..distributed import shard_positions

CHUNK = 4096  # images augmented at once (fp32: 50 MB at 3×32×32)


class Normalise:
    """ToTensor + Normalize of a uint8 batch already on ``device`` in one fused multiply-add:
    (x/255 − mean)/std = x·scale + shift, written in ``memory_format``."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format):
        std_t = torch.tensor(std, dtype=torch.float32, device=device)
        self.scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(mean, dtype=torch.float32, device=device) / std_t).view(1, -1, 1, 1)
        self.memory_format = memory_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # uint8 in, fp32 out: the cast happens inside the one kernel
        return torch.addcmul(self.shift, x, self.scale).contiguous(memory_format=self.memory_format)


@dataclass
class EpochPlan:
    """What one epoch draws: image order and, per position in that order, crop offset and flip."""

    order: torch.Tensor  # int64 [N], indices into the dataset
    dy: torch.Tensor  # int64 [N], crop row offset in the padded image, 0..2p
    dx: torch.Tensor  # int64 [N], crop column offset, 0..2p
    flip: torch.Tensor  # bool [N], horizontal flip after the crop


class BatchLoader:
    """Iterates (normalised float images, labels) batches on ``device``.

    With ``crop_padding`` p > 0, each image is zero-padded by p and cropped back to its size at a
    uniformly random offset (torchvision ``RandomCrop(size, padding=p)``); with ``flip``, it is
    mirrored with probability 1/2 (``RandomHorizontalFlip``). Padding happens in uint8 before the
    normalisation, so padded pixels are (0 − mean)/std, as in torchvision. With ``shard=(rank, world)``
    ``batch_size`` is the global batch and this rank yields its ``batch_size // world`` images of each.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], *, shuffle: bool = False,
                 crop_padding: int = 0, flip: bool = False, drop_last: bool = False,
                 device: str | torch.device = "cpu", seed: int = 0,
                 memory_format: torch.memory_format = torch.contiguous_format, shard: tuple[int, int] = (0, 1)):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"labels ({len(labels)}) and images ({len(images)}) differ in length")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be ≥ 1")
        if crop_padding < 0:
            raise ValueError(f"crop_padding={crop_padding} must be ≥ 0")
        if batch_size % shard[1]:
            raise ValueError(f"batch_size={batch_size} is not divisible by the {shard[1]} processes of the run")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"mean and std need {images.shape[1]} values, got {len(mean)} and {len(std)}")
        self.device = torch.device(device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.crop_padding, self.flip, self.seed, self.epoch = crop_padding, flip, seed, 0
        self.memory_format, self.shard = memory_format, shard
        self.size = tuple(images.shape[2:])
        self.labels = labels.to(self.device)
        p = crop_padding
        stored = F.pad(images, (p, p, p, p)) if p else images
        # channels_last storage makes the gathered batch channels_last with no extra copy
        self.images = stored.to(self.device).contiguous(memory_format=memory_format)
        self.windows = self._windows(self.images) if p else None
        self.normalise = Normalise(mean, std, self.device, memory_format)

    def _windows(self, padded: torch.Tensor) -> torch.Tensor:
        """A view [N, 2p+1, 2p+1, ...image dims in storage order] of every crop window, no copy."""
        n, c, _, _ = padded.shape
        h, w = self.size
        k = 2 * self.crop_padding + 1
        s_n, s_c, s_h, s_w = padded.stride()
        if self.memory_format == torch.channels_last:
            return padded.as_strided((n, k, k, h, w, c), (s_n, s_h, s_w, s_h, s_w, s_c))
        return padded.as_strided((n, k, k, c, h, w), (s_n, s_h, s_w, s_c, s_h, s_w))

    def __len__(self) -> int:
        n = len(self.labels)
        if self.shard[1] > 1 and n % self.batch_size < self.shard[1]:  # no share of a last batch this small
            return n // self.batch_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self) -> EpochPlan:
        """The current epoch's draws (deterministic in (seed, epoch))."""
        n, dev = len(self.labels), self.device
        g = torch.Generator(device=dev).manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, device=dev, generator=g) if self.shuffle else torch.arange(n, device=dev)
        k = 2 * self.crop_padding + 1
        if self.crop_padding:
            dy = torch.randint(0, k, (n,), device=dev, generator=g)
            dx = torch.randint(0, k, (n,), device=dev, generator=g)
        else:
            dy = dx = torch.zeros(n, dtype=torch.int64, device=dev)
        flip = (torch.rand(n, device=dev, generator=g) < 0.5) if self.flip else torch.zeros(n, dtype=torch.bool,
                                                                                           device=dev)
        return EpochPlan(order, dy, dx, flip)

    def crop_flip(self, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W]: images ``index`` cropped at (dy, dx) of the padded images, then flipped
        where ``flip``; both in storage order, so the result needs no layout change."""
        nhwc = self.memory_format == torch.channels_last
        x = self.windows[index, dy, dx] if self.windows is not None else self.images[index]
        if nhwc and self.windows is None:
            x = x.permute(0, 2, 3, 1)  # a view: [B, H, W, C] in storage order
        if self.flip:
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(2 if nhwc else 3), x)
        return x.permute(0, 3, 1, 2) if nhwc else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self) * self.batch_size if self.drop_last else len(self.labels)
        rank, world = self.shard
        bs = self.batch_size // world
        if not (self.shuffle or self.crop_padding or self.flip):  # evaluation: contiguous slices, no gather
            for start in range(0, n, bs):
                yield self.normalise(self.images[start:start + bs]), self.labels[start:start + bs]
            return
        plan = self.plan()
        positions = shard_positions(n, self.batch_size, rank, world).to(self.device)
        # CHUNK images per gather and normalisation: each kernel launch (and thread-pool barrier) serves many
        # batches, and a batch is a view
        chunk = max(1, CHUNK // bs) * bs
        for first in range(0, len(positions), chunk):
            sl = positions[first:first + chunk]
            index = plan.order[sl]
            x = self.normalise(self.crop_flip(index, plan.dy[sl], plan.dx[sl], plan.flip[sl]))
            y = self.labels[index]
            for start in range(0, len(index), bs):
                yield x[start:start + bs], y[start:start + bs]  # views: no work per batch
