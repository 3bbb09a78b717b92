"""A checksum of a checkpoint's payload, stored in the checkpoint itself.

``torch.load`` does not check its zip members' CRCs: a flipped bit in a tensor (bit rot, a half-copied file
padded with old bytes) loads silently with a wrong value. ``seal`` records a SHA-256 of the payload's
content (every tensor's dtype, shape and bytes, every number and string, in a canonical order) under
``CHECKSUM_KEY``; ``unseal`` recomputes it after loading and refuses a mismatch. The file stays a plain
``torch.load(weights_only=True)`` dict.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import UserError

CHECKSUM_KEY = "payload_sha256"


def _feed(h, obj) -> None:
    """Hash ``obj`` with a type tag per node, so e.g. [1, 2] and (1, 2) or "1" and 1 differ."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, list | tuple):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)};".encode())
        for item in obj:
            _feed(h, item)
    elif obj is None or isinstance(obj, bool):
        h.update(f"B{obj};".encode())
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(f"F{float.hex(float(obj))};".encode())
    elif isinstance(obj, str | bytes):
        data = obj.encode() if isinstance(obj, str) else obj
        h.update(f"{'S' if isinstance(obj, str) else 'Y'}{len(data)};".encode())
        h.update(data)
    elif isinstance(obj, torch.dtype | torch.device):
        h.update(f"O{obj};".encode())
    else:
        raise TypeError(f"cannot checksum a {type(obj).__name__} in a checkpoint payload")


def payload_digest(payload: dict) -> str:
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return h.hexdigest()


def seal(payload: dict) -> dict:
    """``payload`` with its checksum added (a shallow copy)."""
    return {**payload, CHECKSUM_KEY: payload_digest(payload)}


def unseal(payload: dict, path: str | Path) -> dict:
    """``payload`` without its checksum, after checking it; files written before checksums pass unchecked."""
    if not isinstance(payload, dict) or CHECKSUM_KEY not in payload:
        return payload
    recorded = payload.pop(CHECKSUM_KEY)
    if payload_digest(payload) != recorded:
        raise UserError(f"checkpoint {path} is corrupt: its content does not match its recorded checksum "
                        f"(sha256 {recorded[:12]}…)")
    return payload
