"""Model registry: ``build_model(name, ...)``; each family registers its names here."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .base import ChannelGroup, ChannelSelect, PrunableModel
from .vgg import LAYOUTS as VGG_LAYOUTS
from .vgg import VGG

MODELS: dict[str, Callable[..., PrunableModel]] = {}


def register_model(name: str, factory: Callable[..., PrunableModel]) -> None:
    MODELS[name] = factory


for _name in VGG_LAYOUTS:
    register_model(_name, partial(VGG, depth=_name))


def build_model(name: str, num_classes: int, in_channels: int, **kwargs) -> PrunableModel:
    """Build a registered model; ``kwargs`` are the family's own options (widths, bn_init, ...)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)


__all__ = ["MODELS", "ChannelGroup", "ChannelSelect", "PrunableModel", "build_model", "register_model"]
