"""scikit-learn's bundled handwritten digits (1,797 8×8 images): the offline dataset for demos and tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DatasetSpec, ImageData, channel_stats, split_validation, stratified_split


class Digits(DatasetSpec):
    """Digits upsampled to ``size``×``size`` (bilinear), 1 channel, fixed stratified test split by seed."""

    name = "digits"

    def __init__(self, size: int = 16, test_fraction: float = 0.25, **loader):
        loader.setdefault("crop_padding", 2)
        loader.setdefault("val_fraction", 0.1)
        super().__init__(**loader)
        if size < 8:
            raise ValueError(f"size={size} must be ≥ 8")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction={test_fraction} is outside (0, 1)")
        self.size, self.test_fraction = size, test_fraction

    def load(self) -> ImageData:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        y = torch.tensor(d.target, dtype=torch.int64)
        rest, test = stratified_split(y, self.test_fraction, self.split_seed)
        train, val = split_validation(self, x[rest], y[rest])
        mean, std = channel_stats(train[0])
        return ImageData(train=train, val=val, test=(x[test], y[test]), num_classes=10, mean=mean, std=std)
