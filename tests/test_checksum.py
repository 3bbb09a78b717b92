"""The payload checksum of checkpoints: stable through torch.save/load, sensitive to any changed value or type."""

from __future__ import annotations

import io
import math
from collections import OrderedDict

import pytest
import torch

from regprune.errors import UserError
from regprune.tracking.checksum import CHECKSUM_KEY, payload_digest, seal, unseal


def payload() -> dict:
    """Every kind of value a checkpoint holds: tensors of several dtypes and layouts, numbers, RNG tuples."""
    conv = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)).to(memory_format=torch.channels_last)
    return {"model": {"spec": {"class": "regprune.models.vgg.VGG", "kwargs": {"widths": [4, 8], "depth": "tiny"}},
                      "state_dict": OrderedDict(w=conv, b=torch.zeros(4, dtype=torch.bfloat16),
                                                n=torch.tensor(3), mask=torch.tensor([True, False]))},
            "optimizer": {"state": {0: {"momentum_buffer": torch.ones(2)}},
                          "param_groups": [{"lr": 0.1, "nesterov": False, "foreach": None, "params": [0]}]},
            "rng": {"python": (3, tuple(range(5)), None), "torch": torch.arange(8, dtype=torch.uint8)},
            "metrics": {"acc": 97.5, "nan": math.nan, "name": "l1", "kept": {"features.0": 3}},
            "phase": 1, "epoch": 0, "step": 19}


def roundtrip(obj: dict) -> dict:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_checksum_survives_save_and_load():
    sealed = seal(payload())
    loaded = roundtrip(sealed)
    assert loaded[CHECKSUM_KEY] == sealed[CHECKSUM_KEY] == payload_digest(payload())
    assert CHECKSUM_KEY not in unseal(loaded, "ckpt.pt")


def test_files_without_a_checksum_load_unchecked():
    assert unseal(roundtrip(payload()), "old.pt")["step"] == 19


@pytest.mark.parametrize("change", ["one weight", "dtype", "shape", "list to tuple", "int to float", "a string",
                                    "a key", "a nested number"])
def test_any_change_is_refused(change):
    sealed = roundtrip(seal(payload()))
    sd, rng = sealed["model"]["state_dict"], sealed["rng"]
    if change == "one weight":
        sd["w"][1, 2, 0, 1] += 2 ** -20
    elif change == "dtype":
        sd["b"] = sd["b"].float()
    elif change == "shape":
        sd["mask"] = sd["mask"].reshape(2, 1)
    elif change == "list to tuple":
        sealed["model"]["spec"]["kwargs"]["widths"] = (4, 8)
    elif change == "int to float":
        sealed["step"] = 19.0
    elif change == "a string":
        sealed["metrics"]["name"] = "l2"
    elif change == "a key":
        sealed["metrics"]["kept"] = {"features.1": 3}
    else:
        rng["python"] = (3, (0, 1, 2, 3, 5), None)
    with pytest.raises(UserError, match=r"^checkpoint ckpt.pt is corrupt: its content does not match its recorded "
                                        r"checksum \(sha256 [0-9a-f]{12}…\)$"):
        unseal(sealed, "ckpt.pt")


def test_unknown_types_are_not_hashed_silently():
    with pytest.raises(TypeError, match="cannot checksum a set"):
        payload_digest({"x": {1, 2}})
