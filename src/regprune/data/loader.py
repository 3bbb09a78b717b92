"""Batches from uint8 tensors held once on the training device; crop/flip/normalise in batch.

Per epoch the order is a seeded permutation and each image gets its own crop offset and flip;
seeds derive from (seed, epoch), so an epoch is reproducible on its own (exact resume needs no
loader state).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class BatchLoader:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], *, shuffle: bool = False,
                 crop_padding: int = 0, flip: bool = False, drop_last: bool = False,
                 device: str | torch.device = "cpu", seed: int = 0,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.crop_padding, self.flip, self.seed, self.epoch = crop_padding, flip, seed, 0
        self.memory_format = memory_format
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device)
        # (x/255 − mean)/std as one multiply-add
        self.scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(mean, dtype=torch.float32, device=self.device) / std_t).view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)

    def augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Random crop with zero padding and random horizontal flip, independently per image."""
        b, c, h, w = x.shape
        p = self.crop_padding
        if p > 0:
            x = torch.nn.functional.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (b, 1), device=x.device, generator=g)
            ox = torch.randint(0, 2 * p + 1, (b, 1), device=x.device, generator=g)
            rows = (oy + torch.arange(h, device=x.device)).view(b, 1, h, 1)
            cols = (ox + torch.arange(w, device=x.device)).view(b, 1, 1, w)
            x = x[torch.arange(b, device=x.device).view(b, 1, 1, 1),
                  torch.arange(c, device=x.device).view(1, c, 1, 1), rows, cols]
        if self.flip:
            flip = torch.rand(b, device=x.device, generator=g) < 0.5
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()
        n = len(self.labels)
        order = torch.randperm(n, device=self.device, generator=g) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
            idx = order[sl] if order is not None else None
            x = self.images[idx] if idx is not None else self.images[sl]
            y = self.labels[idx] if idx is not None else self.labels[sl]
            if self.crop_padding or self.flip:
                x = self.augment(x, g)
            x = (x.float() * self.scale + self.shift).contiguous(memory_format=self.memory_format)
            yield x, y
