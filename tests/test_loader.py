"""BatchLoader: torchvision RandomCrop/RandomHorizontalFlip semantics, reachability, independence, determinism."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from regprune.data.loader import BatchLoader

H = W = 8
P = 4
MEAN, STD = (0.3, 0.5), (0.2, 0.25)


def coded_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel 0 encodes the pixel position (1 + y·W + x, never 0), channel 1 the image id; label = id."""
    pos = (1 + torch.arange(H * W)).view(H, W).to(torch.uint8)
    ids = torch.arange(n)
    x = torch.stack([pos.expand(n, H, W), (1 + ids % 250).view(n, 1, 1).expand(n, H, W).to(torch.uint8)], 1)
    return x.contiguous(), ids


def loader(n: int = 64, batch_size: int = 16, memory_format=torch.contiguous_format, **kw) -> BatchLoader:
    x, y = coded_images(n)
    return BatchLoader(x, y, batch_size, MEAN, STD, **{"shuffle": True, "crop_padding": P, "flip": True,
                                                        "memory_format": memory_format, **kw})


def denormalise(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
    return (x * std * 255 + mean * 255).round().to(torch.int64)


def decode(crop: torch.Tensor) -> tuple[int, int, bool]:
    """(dy, dx, flip) of one denormalised crop [C, H, W], read from its position-coded pixels alone."""
    code = crop[0]
    rows, cols = (code > 0).nonzero(as_tuple=True)
    assert len(rows) > 0, "every window of an 8×8 image padded by 4 contains real pixels"
    i, (j0, j1) = int(rows[0]), cols[rows == rows[0]][:2].tolist()  # ≥ W − P real pixels per row
    flip = bool(code[i, j1] < code[i, j0])
    y, x = divmod(int(code[i, j0]) - 1, W)
    j = W - 1 - j0 if flip else j0  # column before the flip
    return y + P - i, x + P - j, flip


def reference(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """torchvision: RandomCrop(H, padding=P) at (dy, dx), RandomHorizontalFlip, ToTensor, Normalize."""
    out = TF.crop(TF.pad(image, [P], fill=0), dy, dx, H, W)
    if flip:
        out = TF.hflip(out)
    return TF.normalize(out.float() / 255.0, list(MEAN), list(STD))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_batches_equal_torchvision_for_the_drawn_crop(memory_format):
    data, _ = coded_images(64)
    bl = loader(memory_format=memory_format)
    plan = bl.plan()
    x, y = (torch.cat(t) for t in zip(*bl, strict=True))
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=memory_format)
    assert torch.equal(y, plan.order)
    for k, (img, label, raw) in enumerate(zip(x, y, denormalise(x), strict=True)):
        dy, dx, flip = decode(raw)
        assert (dy, dx, flip) == (plan.dy[k], plan.dx[k], plan.flip[k])  # the plan says what was drawn
        torch.testing.assert_close(img, reference(data[label], dy, dx, flip), rtol=0, atol=1e-5)


def test_every_offset_and_both_flips_are_reachable():
    bl = loader(n=512, batch_size=128)
    seen = set()
    for epoch in range(4):
        bl.set_epoch(epoch)
        for x, _ in bl:
            seen.update(decode(raw) for raw in denormalise(x))
    assert seen == {(dy, dx, f) for dy in range(2 * P + 1) for dx in range(2 * P + 1) for f in (False, True)}


def test_images_in_a_batch_are_augmented_independently():
    x, _ = next(iter(loader(batch_size=64)))
    draws = [decode(raw) for raw in denormalise(x)]
    assert len({d[:2] for d in draws}) > 20
    assert 10 < sum(d[2] for d in draws) < 54


def test_each_epoch_is_a_permutation_with_matching_images():
    bl = loader(n=70, batch_size=16)
    for epoch in range(2):
        bl.set_epoch(epoch)
        labels = []
        for x, y in bl:
            raw = denormalise(x)
            assert all(int(r[1][r[0] > 0][0]) == 1 + int(label) % 250 for r, label in zip(raw, y, strict=True))
            labels.append(y)
        assert torch.equal(torch.cat(labels).sort().values, torch.arange(70))
    assert len(bl) == 5 and len(loader(n=70, batch_size=16, drop_last=True)) == 4


def test_deterministic_per_seed_and_epoch_and_different_across_epochs():
    def epoch_batches(seed, epoch):
        bl = loader(seed=seed)
        bl.set_epoch(epoch)
        return [b for b, _ in bl]

    a, b = epoch_batches(0, 3), epoch_batches(0, 3)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(torch.cat(a), torch.cat(epoch_batches(0, 4)))
    assert not torch.equal(torch.cat(a), torch.cat(epoch_batches(1, 3)))


def test_plain_loader_keeps_order_and_pixels():
    data, labels = coded_images(10)
    bl = BatchLoader(data, labels, 4, MEAN, STD)
    x = torch.cat([b for b, _ in bl])
    y = torch.cat([y for _, y in bl])
    assert torch.equal(y, labels)
    torch.testing.assert_close(x, TF.normalize(data.float() / 255, list(MEAN), list(STD)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"images": torch.zeros(4, 2, 8, 8)}, "uint8"),
    ({"labels": torch.zeros(3, dtype=torch.int64)}, "length"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"crop_padding": -1}, "crop_padding=-1"),
    ({"mean": (0.5,)}, "mean and std"),
])
def test_bad_arguments_raise_one_line_errors(kwargs, match):
    args = {"images": torch.zeros(4, 2, 8, 8, dtype=torch.uint8), "labels": torch.zeros(4, dtype=torch.int64),
            "batch_size": 2, "mean": MEAN, "std": STD, **kwargs}
    crop = {"crop_padding": args.pop("crop_padding")} if "crop_padding" in args else {}
    with pytest.raises(ValueError, match=match):
        BatchLoader(**args, **crop)
