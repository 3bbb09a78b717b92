"""Independent implementations of the repo's methods, run through the same loop for comparison."""

from .torch_pruning_ns import TorchPruningNS, torch_pruning_prune

__all__ = ["TorchPruningNS", "torch_pruning_prune"]
