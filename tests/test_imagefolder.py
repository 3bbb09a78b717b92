"""dataset=imagefolder / imagenet: a tiny ImageFolder written here (JPEGs and a PNG per class), streamed by
DataLoader workers; epochs fixed by (seed, epoch) whatever the worker count; bad folders are one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import compose, train
from regprune.data import ImageFolderData
from regprune.errors import UserError

CLASSES = ("ant", "bee", "cat")
SIZE = 16  # image_size of the tests; resize 18 (= 16 / 0.875)


def write_images(folder: Path, per_class: int, seed: int, classes=CLASSES) -> None:
    """Class-coloured noise of varying sizes: JPEGs, one PNG and one greyscale JPEG per class."""
    g = torch.Generator().manual_seed(seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        colour = torch.tensor([60.0, 60.0, 60.0])
        colour[c % 3] = 200.0
        for i in range(per_class):
            h, w = torch.randint(18, 30, (2,), generator=g).tolist()
            pixels = (colour.view(1, 1, 3) + 30 * torch.randn(h, w, 3, generator=g)).clamp(0, 255).to(torch.uint8)
            img = Image.fromarray(pixels.numpy())
            if i == 0:
                img.save(folder / name / f"{i}.png")
            elif i == 1:
                img.convert("L").save(folder / name / f"{i}.jpg")
            else:
                img.save(folder / name / f"{i}.jpg", quality=90)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_images(root / "train", per_class=6, seed=0)
    write_images(root / "val", per_class=2, seed=1)
    return root


def spec(root: Path, **kw) -> ImageFolderData:
    return ImageFolderData(**{"root": str(root), "image_size": SIZE, "workers": 0, "batch_size": 4,
                              "eval_batch_size": 4, **kw})


def epoch(batches, e: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    batches.set_epoch(e)
    return list(batches)


def test_loaders_shapes_labels_and_the_standard_eval_transform(folder):
    from torchvision.transforms import v2

    data = spec(folder).loaders("cpu", seed=0, memory_format=torch.channels_last)
    assert data.num_classes == 3 and data.input_shape == (3, SIZE, SIZE) and data.in_channels == 3
    assert (len(data.train), len(data.test), data.val) == (5, 2, None)  # 18 / 4, 6 / 4 batches
    x, y = next(iter(data.train))
    assert x.dtype == torch.float32 and x.shape == (4, 3, SIZE, SIZE)
    assert x.is_contiguous(memory_format=torch.channels_last)
    test = epoch(data.test, 0)
    labels = torch.cat([y for _, y in test])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]  # sorted classes, files in order
    first = v2.Compose([v2.Resize(18), v2.CenterCrop(SIZE), v2.PILToTensor()])(
        Image.open(folder / "val" / "ant" / "0.png").convert("RGB"))
    mean, std = torch.tensor(data.mean).view(3, 1, 1), torch.tensor(data.std).view(3, 1, 1)
    torch.testing.assert_close(test[0][0][0], (first / 255.0 - mean) / std, rtol=0, atol=1e-5)


def test_an_epoch_is_fixed_by_seed_and_epoch_not_by_the_workers(folder):
    """Order and RandomResizedCrop/flip draws per (seed, epoch): 0 and 2 workers give the same batches,
    another epoch or seed other ones; reading does not touch the global RNG."""
    one = spec(folder).loaders("cpu", seed=3).train
    two = spec(folder, workers=2).loaders("cpu", seed=3).train
    rng = torch.get_rng_state()
    a, b = epoch(one, 1), epoch(two, 1)
    assert torch.equal(torch.get_rng_state(), rng)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sorted(torch.cat([y for _, y in a]).tolist()) == [0] * 6 + [1] * 6 + [2] * 6
    assert not torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in epoch(one, 2)]))
    other = spec(folder).loaders("cpu", seed=4).train
    assert not torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in epoch(other, 1)]))
    # the same image under two augmentation seeds: crops differ (the draws are random, not fixed per image)
    images = one.dataset
    assert not torch.equal(images[(0, 1)][0], images[(0, 2)][0]) and torch.equal(images[(0, 1)][0], images[(0, 1)][0])


def test_class_folders_in_root_get_held_out_test_and_validation_splits(tmp_path):
    write_images(tmp_path, per_class=10, seed=2)
    data = spec(tmp_path, test_fraction=0.2, val_fraction=0.25).loaders("cpu", seed=0)
    sets = {name: {p for p, _ in getattr(data, name).dataset.samples} for name in ("train", "val", "test")}
    assert [len(sets[k]) for k in ("train", "val", "test")] == [18, 6, 6]  # per class: 6 / 2 / 2
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert sorted(y for _, y in data.test.dataset.samples) == [0, 0, 1, 1, 2, 2]
    again = spec(tmp_path, test_fraction=0.2, val_fraction=0.25).loaders("cpu", seed=5)
    assert {p for p, _ in again.test.dataset.samples} == sets["test"]  # fixed by split_seed, not the run seed


@pytest.mark.parametrize("layout,match", [
    ("missing", "not found; set dataset.root"),
    ("one class", "needs at least 2 class folders, found 1 (ant)"),
    ("no images", "no images (.jpg"),
    ("unknown test class", "has classes not in"),
    ("no test folder", "no test folder"),
])
def test_bad_folders_are_one_line_errors(tmp_path, layout, match):
    root = tmp_path / "data"
    if layout == "one class":
        write_images(root / "train", 3, 0, classes=("ant",))
        write_images(root / "val", 1, 0, classes=("ant",))
    elif layout == "no images":
        for c in CLASSES:
            (root / "train" / c).mkdir(parents=True)
            (root / "train" / c / "notes.txt").write_text("not an image")
        write_images(root / "val", 1, 0)
    elif layout == "unknown test class":
        write_images(root / "train", 2, 0)
        write_images(root / "val", 1, 0, classes=("ant", "dog"))
    elif layout == "no test folder":
        write_images(root / "train", 2, 0)
    with pytest.raises(UserError, match=re.escape(match)) as e:
        spec(root).loaders("cpu", seed=0)
    assert "\n" not in str(e.value)


def test_configs_compose_for_imagenet_and_imagefolder():
    from hydra.utils import instantiate

    imagenet = instantiate(compose(["dataset=imagenet"]).dataset)
    assert imagenet.name == "imagenet" and imagenet.root.name == "imagenet" and imagenet.test_fraction == 0
    assert (imagenet.image_size, imagenet.resize_size, imagenet.batch_size) == (224, 256, 256)
    own = instantiate(compose(["dataset=imagefolder", "dataset.root=/some/where", "dataset.image_size=64"]).dataset)
    assert own.name == "imagefolder" and str(own.root) == "/some/where" and own.resize_size == 73


RUN = ["dataset=imagefolder", f"dataset.image_size={SIZE}", "dataset.workers=0", "dataset.batch_size=6",
       "model=vgg_tiny", "regularizer=l1", "schedule=ns", "schedule.train.epochs=1", "schedule.finetune.epochs=1",
       "schedule.prune.ratio=0.3", "optimizer.lr=0.05", "progress=false", "latency=false", "threads=1"]


def test_one_epoch_ns_run_on_an_image_folder(folder, tmp_path):
    train([*RUN, f"dataset.root={folder}", f"run.root={tmp_path}"])
    (run_dir,) = (tmp_path / "default").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["dataset"] == "imagefolder"
    assert metrics["params"] < metrics["params_unpruned"] and 0 <= metrics["acc_finetuned_final"] <= 100
    from regprune.cost import count_macs
    from regprune.pruning.io import load_pruned

    assert count_macs(load_pruned(run_dir), (3, SIZE, SIZE)) == metrics["macs"]


@pytest.mark.parametrize("case", ["one class", "unreadable image"])
def test_train_py_reports_bad_image_folders_in_one_line(folder, tmp_path, case):
    root = tmp_path / "data"
    if case == "one class":
        write_images(root / "train", 2, 0, classes=("ant",))
        write_images(root / "val", 1, 0, classes=("ant",))
        message = "needs at least 2 class folders, found 1 (ant)"
    else:  # found while training, by a DataLoader worker
        shutil.copytree(folder, root)
        (root / "train" / "bee" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        message = f"cannot read image {root / 'train' / 'bee' / 'broken.jpg'}: UnidentifiedImageError"
    proc = train([*RUN, f"dataset.root={root}", f"run.root={tmp_path / 'runs'}", "dataset.workers=2"], check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], proc.stderr
    runs = list((tmp_path / "runs").glob("default/*"))
    if case == "one class":  # refused before a run folder exists
        assert runs == []
    else:  # the run folder records the failure
        (run_dir,) = runs
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"
