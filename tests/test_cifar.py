"""CIFAR-10/100 loading, on tiny fake files written in the real on-disk format (torchvision's python
pickles). The fake files cannot match torchvision's MD5 sums, so these tests pass
``verify_checksums=False`` — the one documented switch that drops only that check."""

from __future__ import annotations

import pickle
import urllib.error

import numpy as np
import pytest
import torch

from conftest import compose, train
from regprune.data import Cifar10, Cifar100
from regprune.data.base import REPO_DATA, default_root
from regprune.errors import UserError

PER_FILE = 4  # images per fake file


def write_batch(path, images: np.ndarray, labels: list[int], hundred: bool) -> None:
    """One pickle as CIFAR ships it: rows of 3072 bytes (1024 R, 1024 G, 1024 B, row-major)."""
    entry = {"batch_label": path.name, "data": images.reshape(len(images), -1),
             "filenames": [f"img_{i}.png" for i in range(len(images))]}
    if hundred:
        entry.update(fine_labels=labels, coarse_labels=[lab // 5 for lab in labels])
    else:
        entry["labels"] = labels
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar(root, hundred: bool = False, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Fake CIFAR in torchvision's layout; returns the expected (NCHW uint8 images, labels) per split."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    classes = 100 if hundred else 10
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    per_train = 5 * PER_FILE if hundred else PER_FILE
    splits = {"train": ([], []), "test": ([], [])}
    test_files = ["test" if hundred else "test_batch"]
    for split, files, n in (("train", train_files, per_train), ("test", test_files, PER_FILE)):
        for name in files:
            start = len(splits[split][1])
            labels = [(start + j) * (7 if hundred else 1) % classes for j in range(n)]
            images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            write_batch(folder / name, images, labels, hundred)
            splits[split][0].append(images)
            splits[split][1].extend(labels)
    meta = ({"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
            if hundred else {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": PER_FILE})
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return {k: (np.concatenate(v[0]), v[1]) for k, v in splits.items()}


@pytest.mark.parametrize("cls,hundred", [(Cifar10, False), (Cifar100, True)])
def test_reads_real_format_as_uint8_nchw(tmp_path, cls, hundred):
    expected = write_cifar(tmp_path, hundred)
    data = cls(root=str(tmp_path), verify_checksums=False).load()
    for split in ("train", "test"):
        x, y = getattr(data, split)
        assert x.dtype == torch.uint8 and x.shape == (len(expected[split][1]), 3, 32, 32)
        assert torch.equal(x, torch.from_numpy(expected[split][0]))  # files in order, pixels in place
        assert y.dtype == torch.int64 and y.tolist() == expected[split][1]  # CIFAR-100: the fine labels
    assert data.val is None and data.num_classes == (100 if hundred else 10) and data.in_channels == 3
    assert (data.mean, data.std) == (cls.mean, cls.std)


def test_validation_split_is_stratified_and_seeded(tmp_path):
    write_cifar(tmp_path)  # 20 training images, every class twice
    full = Cifar10(root=str(tmp_path), verify_checksums=False).load()
    data = Cifar10(root=str(tmp_path), verify_checksums=False, val_fraction=0.5, split_seed=3).load()
    assert sorted(data.val[1].tolist()) == list(range(10)) and sorted(data.train[1].tolist()) == list(range(10))
    rows = {tuple(x.flatten()[:64].tolist()) for x in torch.cat([data.train[0], data.val[0]])}
    assert rows == {tuple(x.flatten()[:64].tolist()) for x in full.train[0]}  # a partition of train
    assert torch.equal(data.test[0], full.test[0])
    again = Cifar10(root=str(tmp_path), verify_checksums=False, val_fraction=0.5, split_seed=3).load()
    other = Cifar10(root=str(tmp_path), verify_checksums=False, val_fraction=0.5, split_seed=4).load()
    assert torch.equal(again.val[0], data.val[0]) and not torch.equal(other.val[0], data.val[0])


def test_checksums_are_verified_by_default(tmp_path):
    write_cifar(tmp_path)
    with pytest.raises(UserError, match=r"data_batch_1 is missing, corrupted .*delete .*dataset.download=true"):
        Cifar10(root=str(tmp_path)).load()


def test_missing_data_with_download_off(tmp_path):
    with pytest.raises(UserError, match=r"CIFAR-100 not found in .*cifar-100-python: set dataset.download=true"):
        Cifar100(root=str(tmp_path)).load()


@pytest.mark.parametrize("hundred,name", [(False, "data_batch_3"), (False, "test_batch"), (True, "train")])
def test_truncated_or_missing_file_names_the_file(tmp_path, hundred, name):
    write_cifar(tmp_path, hundred)
    path = tmp_path / ("cifar-100-python" if hundred else "cifar-10-batches-py") / name
    path.write_bytes(path.read_bytes()[:500])  # a truncated pickle
    cls = Cifar100 if hundred else Cifar10
    with pytest.raises(UserError, match=rf"{path} is missing, corrupted or not a CIFAR file \(\w+"):
        cls(root=str(tmp_path), verify_checksums=False).load()
    path.unlink()
    with pytest.raises(UserError, match=rf"{path} is missing"):
        cls(root=str(tmp_path), verify_checksums=False).load()


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv, "download_and_extract_archive", offline)
    with pytest.raises(UserError, match=r"could not download CIFAR-10 to .*: no network; download it elsewhere"):
        Cifar10(root=str(tmp_path), download=True).load()


def test_root_defaults_to_env_then_repo_data(tmp_path, monkeypatch):
    monkeypatch.setenv("REGPRUNE_DATA", str(tmp_path))
    assert Cifar10().root == tmp_path == default_root()
    monkeypatch.delenv("REGPRUNE_DATA")
    assert Cifar10().root == REPO_DATA and (REPO_DATA.parent / "pyproject.toml").is_file()
    assert Cifar10(root="~/somewhere").root.is_absolute()


def test_bad_normalisation_is_rejected():
    assert Cifar10(mean=[0.5, 0.5, 0.5], std=[0.2023, 0.1994, 0.2010]).std == (0.2023, 0.1994, 0.2010)
    with pytest.raises(ValueError, match=r"std=\[0.2, 0.0, 0.2\] must be 3 numbers"):
        Cifar10(std=[0.2, 0.0, 0.2])


def test_configs_and_a_one_epoch_run_on_fake_cifar(tmp_path):
    from hydra.utils import instantiate

    from regprune.run import run

    write_cifar(tmp_path / "data")
    spec = instantiate(compose(["dataset=cifar100"]).dataset)
    assert isinstance(spec, Cifar100) and (spec.crop_padding, spec.augment, spec.verify_checksums) == (4, True, True)
    metrics = run(compose(["model=vgg_tiny", "dataset=cifar10", f"dataset.root={tmp_path / 'data'}",
                           "dataset.verify_checksums=false", "dataset.val_fraction=0.5", "schedule=train",
                           "schedule.train.epochs=1", "regularizer=none", "progress=false", "latency=false",
                           f"run.root={tmp_path / 'runs'}"]))
    assert metrics["status"] == "complete" and metrics["dataset"] == "cifar10"
    assert metrics["macs"] == metrics["macs_unpruned"] > 0
    assert "acc_trained_at_best_val" in metrics  # the held-out split was evaluated


def test_cli_missing_cifar_is_one_line_error(tmp_path):
    proc = train(["dataset=cifar10", f"dataset.root={tmp_path}", f"run.root={tmp_path / 'runs'}"], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: CIFAR-10 not found in {tmp_path / 'cifar-10-batches-py'}: set dataset.download=true, or point "
        "dataset.root (or $REGPRUNE_DATA) at the folder containing cifar-10-batches-py/"]
