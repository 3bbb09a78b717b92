from .base import DatasetSpec, ImageData, stratified_split
from .cifar import Cifar10, Cifar100
from .digits import Digits
from .loader import BatchLoader
from .synthetic import Synthetic

__all__ = ["BatchLoader", "Cifar10", "Cifar100", "DatasetSpec", "Digits", "ImageData", "Synthetic", "stratified_split"]
