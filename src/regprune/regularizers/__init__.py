from .base import BNRegularizer, NoRegularizer, Regularizer
from .l1 import BNL1

__all__ = ["BNL1", "BNRegularizer", "NoRegularizer", "Regularizer"]
