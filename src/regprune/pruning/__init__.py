from .compact import compact
from .criteria import CRITERIA, Percentile, Threshold, Valley, build_criterion, select, valley_threshold
from .importance import IMPORTANCES, BNScale, Importance, WeightNorm, build_importance
from .io import load_pruned, model_from_payload, model_payload
from .masks import PruneResult, apply_masks, guard, widths_after

__all__ = ["CRITERIA", "IMPORTANCES", "BNScale", "Importance", "Percentile", "PruneResult", "Threshold", "Valley",
           "WeightNorm", "apply_masks", "build_criterion", "build_importance", "compact", "guard", "load_pruned",
           "model_from_payload", "model_payload", "select", "valley_threshold", "widths_after"]
