"""Save and load (pruned) models as spec + state dict — never a pickled module."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from ..errors import UserError
from ..models.base import PrunableModel
from ..tracking.checksum import unseal
from .gates import restore_gates


def model_payload(model: PrunableModel) -> dict:
    return {"spec": model.spec(), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def model_from_spec(spec: dict) -> PrunableModel:
    """The architecture a spec describes (class, widths and any gates), freshly initialised."""
    module, _, cls = spec["class"].rpartition(".")
    if not module.startswith("regprune."):
        raise UserError(f"refusing to build model class {spec['class']!r} outside regprune")
    model = getattr(importlib.import_module(module), cls)(**spec["kwargs"])
    restore_gates(model, spec.get("gates", {}))
    return model


def model_from_payload(payload: dict) -> PrunableModel:
    model = model_from_spec(payload["spec"])
    model.load_state_dict(payload["state_dict"], strict=True)
    return model


def load_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True and the payload's checksum checked; an unreadable or corrupt file is
    a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupted or not a torch file
        raise UserError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return unseal(payload, path)


def load_newest(paths: list[Path]) -> tuple[Path, dict, dict[Path, str]] | None:
    """The first of ``paths`` (newest first) that loads intact, its payload, and the newer ones it skipped with
    their errors; None without paths. If none loads, the newest one's error is raised."""
    skipped: dict[Path, str] = {}
    for path in paths:
        try:
            return path, load_checkpoint(path), skipped
        except UserError as e:
            skipped[path] = str(e)
    if skipped:
        raise UserError(next(iter(skipped.values())))
    return None


def load_pruned(path: str | Path) -> PrunableModel:
    """Load a model saved by a run (``model.pt`` in its folder, or the folder itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    payload = load_checkpoint(path)
    try:
        return model_from_payload(payload)
    except UserError:
        raise
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise UserError(f"{path} is not a regprune model: {type(e).__name__}: {str(e).splitlines()[0]}") from None
