"""regprune: regularization-based structured pruning of CNNs."""

__all__ = ["load_pruned"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load_pruned":  # imported on first use: the CLI answers --help and config errors without torch
        from .pruning.io import load_pruned

        return load_pruned
    raise AttributeError(f"module 'regprune' has no attribute {name!r}")
