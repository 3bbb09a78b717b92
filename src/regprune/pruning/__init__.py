from .compact import compact
from .criteria import CRITERIA, Percentile, Threshold, Valley, build_criterion, select, valley_threshold
from .importance import (
    IMPORTANCES,
    BNScale,
    Importance,
    ReluSurvival,
    Taylor,
    WeightNorm,
    build_importance,
    register_importance,
    scores_of,
)
from .io import load_pruned, model_from_payload, model_payload
from .masks import PruneResult, apply_masks, guard, widths_after
from .zero_invariant import ZeroInvariantGroups, ZeroInvariantNorm

register_importance(ZeroInvariantNorm.name, ZeroInvariantNorm)

__all__ = ["CRITERIA", "IMPORTANCES", "BNScale", "Importance", "Percentile", "PruneResult", "ReluSurvival", "Taylor",
           "Threshold", "Valley", "WeightNorm", "ZeroInvariantGroups", "ZeroInvariantNorm", "apply_masks",
           "build_criterion", "build_importance", "compact", "guard", "load_pruned", "model_from_payload",
           "model_payload", "scores_of", "select", "valley_threshold", "widths_after"]
