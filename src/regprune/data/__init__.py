from .base import DatasetSpec, ImageData, stratified_split
from .digits import Digits
from .loader import BatchLoader
from .synthetic import Synthetic

__all__ = ["BatchLoader", "DatasetSpec", "Digits", "ImageData", "Synthetic", "stratified_split"]
