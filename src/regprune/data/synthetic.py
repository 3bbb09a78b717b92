"""Random CIFAR-shaped images with learnable labels, for smoke tests and benchmarks."""

from __future__ import annotations

import torch

from .base import DatasetSpec, ImageData


class Synthetic(DatasetSpec):
    """Class-dependent mean colour plus noise, so a network can learn something in one epoch."""

    name = "synthetic"

    def __init__(self, num_train: int = 512, num_test: int = 256, num_classes: int = 10,
                 image_size: int = 32, channels: int = 3, seed: int = 0, **loader):
        super().__init__(**loader)
        if min(num_train, num_test, num_classes, image_size, channels) < 1:
            raise ValueError("synthetic sizes must be ≥ 1")
        self.num_train, self.num_test, self.num_classes = num_train, num_test, num_classes
        self.image_size, self.channels, self.seed = image_size, channels, seed

    def _make(self, n: int, g: torch.Generator, centres: torch.Tensor):
        y = torch.randint(0, self.num_classes, (n,), generator=g)
        noise = torch.randn(n, self.channels, self.image_size, self.image_size, generator=g) * 40
        x = (centres[y][:, :, None, None] + noise).clamp(0, 255).to(torch.uint8)
        return x, y

    def load(self) -> ImageData:
        g = torch.Generator().manual_seed(self.seed)
        centres = torch.rand(self.num_classes, self.channels, generator=g) * 155 + 50
        train, test = self._make(self.num_train, g, centres), self._make(self.num_test, g, centres)
        val = None
        if self.val_fraction > 0:
            n_val = max(1, int(self.val_fraction * self.num_train))
            val, train = (train[0][:n_val], train[1][:n_val]), (train[0][n_val:], train[1][n_val:])
        c = self.channels
        return ImageData(train=train, val=val, test=test, num_classes=self.num_classes,
                         mean=(0.5,) * c, std=(0.25,) * c)
