"""Schedule phases: each a ``_target_`` component with ``run(runner, state, name)``."""

from .base import Phase
from .prune import Prune
from .recalibrate import RecalibrateBN
from .repeat import Repeat
from .scratch import ScratchRetrain
from .search import SearchPrune
from .tick import Tick
from .train import Finetune, Train

__all__ = ["Finetune", "Phase", "Prune", "RecalibrateBN", "Repeat", "ScratchRetrain", "SearchPrune", "Tick", "Train"]
