from .compact import compact
from .io import load_pruned, model_from_payload, model_payload
from .masks import PruneResult, apply_masks, group_scores, masks_from_scores

__all__ = ["PruneResult", "apply_masks", "compact", "group_scores", "load_pruned", "masks_from_scores",
           "model_from_payload", "model_payload"]
