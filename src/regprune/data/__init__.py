from .base import DatasetSpec, ImageData, Loaders, stratified_split
from .cifar import Cifar10, Cifar100
from .digits import Digits
from .imagefolder import ImageFolderData
from .loader import BatchLoader
from .stream import StreamLoader
from .synthetic import Synthetic

__all__ = ["BatchLoader", "Cifar10", "Cifar100", "DatasetSpec", "Digits", "ImageData", "ImageFolderData", "Loaders",
           "StreamLoader", "Synthetic", "stratified_split"]
