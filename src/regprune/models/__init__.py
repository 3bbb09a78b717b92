"""Model registry: ``build_model(name, ...)``; each family registers its names here."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..typecheck import check_arguments
from .base import ChannelGroup, ChannelSelect, PrunableModel
from .bottleneck_resnet import BottleneckResNet
from .densenet import DenseNet
from .mobilenet import MobileNetV2
from .preresnet import PreResNet
from .resnet import ResNet
from .vgg import LAYOUTS as VGG_LAYOUTS
from .vgg import VGG

MODELS: dict[str, Callable[..., PrunableModel]] = {}


def register_model(name: str, factory: Callable[..., PrunableModel]) -> None:
    MODELS[name] = factory


for _name in VGG_LAYOUTS:
    register_model(_name, partial(VGG, depth=_name))
for _depth in (20, 56, 110):
    register_model(f"resnet{_depth}", partial(ResNet, depth=_depth))
register_model("preresnet164", partial(PreResNet, depth=164))
register_model("densenet40", partial(DenseNet, depth=40))
register_model("resnet50", partial(BottleneckResNet, layers=[3, 4, 6, 3]))
register_model("mobilenet_v2", MobileNetV2)


def build_model(name: str, num_classes: int, in_channels: int, **kwargs) -> PrunableModel:
    """Build a registered model; ``kwargs`` are the family's own options (widths, bn_init, ...)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    check_arguments(MODELS[name], kwargs)
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)


__all__ = ["MODELS", "BottleneckResNet", "ChannelGroup", "ChannelSelect", "DenseNet", "MobileNetV2", "PreResNet",
           "PrunableModel", "ResNet", "VGG", "build_model", "register_model"]
