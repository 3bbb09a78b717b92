"""Image folders in torchvision's ``ImageFolder`` layout (ImageNet, or a user's own data), streamed from disk.

    root/train/<class>/<image>   training images (or the class folders directly in ``root``)
    root/val/<class>/<image>     the test split if present; otherwise a stratified, seeded ``test_fraction``
                                 of the training images is held out (ImageNet: val/ is required)

Training images get the standard ImageNet augmentation, RandomResizedCrop(image_size) + horizontal flip;
test (and held-out validation) images Resize(resize_size) + CenterCrop(image_size). Labels are the
training classes in sorted order; a test folder may hold a subset of them. Batching: ``StreamLoader``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import UserError
from .base import DatasetSpec, Loaders, default_root, stratified_split
from .stream import StreamLoader

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class UnreadableImage(UserError):
    """An image file that PIL cannot decode."""


class SeededImages(Dataset):
    """(path, label) samples read as RGB and transformed to uint8 [3, H, W]; indexed by (index, seed): a seed
    fixes the random transforms of that one read (see ``StreamLoader``), None leaves the RNG alone."""

    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, int]:
        from PIL import Image

        index, seed = key
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
            raise UnreadableImage(f"cannot read image {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        if seed is None:
            return self.transform(rgb), label
        # the CPU generator alone: torch.manual_seed (and fork_rng) also visit every accelerator, 65× the cost here
        rng = torch.default_generator
        state = rng.get_state()
        rng.manual_seed(seed)
        try:
            return self.transform(rgb), label
        finally:
            rng.set_state(state)


class ImageFolderData(DatasetSpec):
    """An ImageFolder tree at ``root`` (None: $REGPRUNE_DATA/<name>, else data/<name> in the repo)."""

    def __init__(self, root: str | None = None, name: str = "imagefolder", train_dir: str = "train",
                 test_dir: str = "val", test_fraction: float = 0.0, image_size: int = 224,
                 resize_size: int | None = None, workers: int = 8, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, **loader):
        super().__init__(**loader)
        if image_size < 1:
            raise ValueError(f"image_size={image_size} must be ≥ 1")
        if resize_size is not None and resize_size < image_size:
            raise ValueError(f"resize_size={resize_size} must be ≥ image_size ({image_size})")
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction={test_fraction} is outside [0, 1)")
        if workers < 0:
            raise ValueError(f"workers={workers} must be ≥ 0")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean={list(mean)} and std={list(std)} must be 3 numbers each (std > 0)")
        self.name = name
        self.root = Path(root).expanduser() if root else default_root() / name
        self.train_dir, self.test_dir, self.test_fraction = train_dir, test_dir, test_fraction
        # the usual 0.875 centre-crop ratio: 224 of 256
        self.image_size, self.resize_size = image_size, resize_size or round(image_size / 0.875)
        self.workers = workers
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)

    def transforms(self):
        """(train, eval) transforms from a PIL image to uint8 [3, image_size, image_size]."""
        from torchvision.transforms import v2

        evaluation = v2.Compose([v2.Resize(self.resize_size), v2.CenterCrop(self.image_size), v2.PILToTensor()])
        if not self.augment:
            return evaluation, evaluation
        train = v2.Compose([v2.RandomResizedCrop(self.image_size), v2.RandomHorizontalFlip(), v2.PILToTensor()])
        return train, evaluation

    def folders(self) -> tuple[Path, Path | None]:
        """(training folder, test folder or None for a held-out test split)."""
        if not self.root.is_dir():
            raise UserError(f"dataset {self.name}: folder {self.root} not found; set dataset.root to a folder "
                            f"with {self.train_dir}/ and {self.test_dir}/ (ImageFolder layout) or class folders")
        train = self.root / self.train_dir
        if not train.is_dir():
            train = self.root
        test = self.root / self.test_dir
        if train != self.root and test.is_dir():
            return train, test
        if self.test_fraction <= 0:
            raise UserError(f"dataset {self.name}: no test folder {test}; add it or set dataset.test_fraction "
                            f"to hold out a share of {train}")
        return train, None

    def samples(self) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]] | None]:
        """(class names, training samples, test samples or None), every folder problem a one-line error."""
        from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

        train_folder, test_folder = self.folders()
        classes = sorted(d.name for d in train_folder.iterdir() if d.is_dir())
        if len(classes) < 2:
            raise UserError(f"dataset {self.name}: {train_folder} needs at least 2 class folders, found "
                            f"{len(classes)}{' (' + classes[0] + ')' if classes else ''}")
        index = {c: i for i, c in enumerate(classes)}
        train = make_dataset(str(train_folder), index, IMG_EXTENSIONS, allow_empty=True)
        counts = torch.bincount(torch.tensor([y for _, y in train], dtype=torch.int64), minlength=len(classes))
        if int(counts.min()) == 0:
            empty = [c for c, n in zip(classes, counts.tolist(), strict=True) if n == 0]
            raise UserError(f"dataset {self.name}: no images ({', '.join(IMG_EXTENSIONS)}) in {len(empty)} class "
                            f"folder(s) of {train_folder}, e.g. {empty[0]}/")
        if test_folder is None:
            return classes, train, None
        extra = sorted(d.name for d in test_folder.iterdir() if d.is_dir() and d.name not in index)
        if extra:
            raise UserError(f"dataset {self.name}: {test_folder} has classes not in {train_folder}: {extra[:5]}")
        test = make_dataset(str(test_folder), index, IMG_EXTENSIONS, allow_empty=True)
        if not test:
            raise UserError(f"dataset {self.name}: no images in {test_folder}")
        return classes, train, test

    def loaders(self, device: str | torch.device, seed: int,
                memory_format: torch.memory_format = torch.contiguous_format,
                shard: tuple[int, int] = (0, 1)) -> Loaders:
        classes, train, test = self.samples()
        labels = torch.tensor([y for _, y in train], dtype=torch.int64)
        rest = torch.arange(len(train))
        if test is None:  # hold out the test split first, then validation from the rest (as dataset=digits)
            rest, held = stratified_split(labels, self.test_fraction, self.split_seed)
            test = [train[i] for i in held.tolist()]
        val = None
        if self.val_fraction > 0:
            keep, held = stratified_split(labels[rest], self.val_fraction, self.split_seed)
            val, rest = [train[i] for i in rest[held].tolist()], rest[keep]
        train = [train[i] for i in rest.tolist()]
        train_tf, eval_tf = self.transforms()
        common = {"mean": self.mean, "std": self.std, "device": device, "workers": self.workers,
                  "memory_format": memory_format}
        evaluation = {"batch_size": self.eval_batch_size, **common}
        return Loaders(
            train=StreamLoader(SeededImages(train, train_tf), self.batch_size, shuffle=True, seed=seed, shard=shard,
                               **common),
            val=None if val is None else StreamLoader(SeededImages(val, eval_tf), **evaluation),
            test=StreamLoader(SeededImages(test, eval_tf), **evaluation),
            num_classes=len(classes), input_shape=(3, self.image_size, self.image_size), mean=self.mean,
            std=self.std)
