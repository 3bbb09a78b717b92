"""regprune: regularization-based structured pruning of CNNs."""

from .pruning.io import load_pruned

__all__ = ["load_pruned"]
__version__ = "0.1.0"
