"""Growing L2 regularization (GReg-1, Wang et al., ICLR 2021; papers.md §1, §4).

At the start, the ``ratio`` share of filters with the smallest ℓ1 norm is selected for removal (per layer
by default, as GReg prunes a fixed ratio per layer; or globally). Only the selected filters get the
penalty (λ/2)‖w_j‖₂² (gradient λ·w_j, as in the authors' update; with ``bn``, the default, w_j also holds
the channel's BN γ_j and β_j, since BN would otherwise renormalise the shrinking filter and keep the channel
alive — the defect papers.md §6 reports in Torch-Pruning's version); λ starts at 0 and grows by ``delta``
every ``every`` iterations up to ``lam_max``. Pruning then removes exactly the selected filters (their
score is 0, criterion threshold). λ, the selection and the iteration count are in ``state_dict`` so a
resumed run continues the schedule.
"""

from __future__ import annotations

import torch

from ..models.base import PrunableModel
from ..pruning.importance import Importance, Scores
from .groups import GroupPenalty, group_scores


class GrowingL2(GroupPenalty):
    name = "greg"
    norm = "sq"
    criterion = "threshold"

    def __init__(self, ratio: float = 0.5, delta: float = 1e-4, every: int = 10, lam_max: float = 1.0,
                 scope: str = "layer", groups: str = "filters", exclude_first: bool = False, score: str = "l1",
                 bn: bool = True):
        super().__init__(lam_max, groups, exclude_first, score, bn=bn)
        if not 0 < ratio < 1:
            raise ValueError(f"ratio={ratio} must be in (0, 1)")
        if not delta > 0:
            raise ValueError(f"delta={delta} must be > 0")
        if not every >= 1:
            raise ValueError(f"every={every} must be ≥ 1")
        if scope not in ("layer", "global"):
            raise ValueError(f"scope={scope!r}: choose layer or global")
        self.ratio, self.delta, self.every, self.scope = float(ratio), float(delta), int(every), scope
        self.current, self.iteration = 0.0, 0
        self.selected: dict[str, list[int]] | None = None

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        widths = {g.name: model.widths[g.width] for g in model.channel_groups()}
        if self.selected is None or any(max(v, default=-1) >= widths.get(k, 0) for k, v in self.selected.items()):
            self.selected = self.select(model)

    def select(self, model: PrunableModel) -> dict[str, list[int]]:
        """The ``ratio`` share of lowest-ℓ1 filters, per layer or over all layers."""
        norms = group_scores(model, self.groups, self.exclude_first, "l1")  # filters only, without BN
        norms = {k: v for k, v in norms.items() if torch.isfinite(v).all()}
        if self.scope == "layer":
            return {k: sorted(v.argsort()[:int(len(v) * self.ratio)].tolist()) for k, v in norms.items()}
        flat = torch.cat(list(norms.values()))
        cut = flat.sort().values[int(len(flat) * self.ratio) - 1] if int(len(flat) * self.ratio) else -1.0
        return {k: sorted((v <= cut).nonzero().flatten().tolist()) for k, v in norms.items()}

    def selection(self, i: int, like: torch.Tensor) -> torch.Tensor:
        m = torch.zeros_like(like)
        m[self.selected.get(self.wg.names[i], [])] = 1.0
        return m

    def phi(self, m, i):
        return 0.5 * self.current * self.selection(i, m) * m

    def dphi(self, m, i):
        return 0.5 * self.current * self.selection(i, m)

    def after_backward(self) -> None:
        if self.current > 0:
            super().after_backward()

    def on_iteration(self, step: int) -> None:
        self.iteration += 1
        if self.iteration % self.every == 0 and self.current < self.lam:
            self.current = min(self.current + self.delta, self.lam)

    def importance(self) -> Importance:
        return SelectedFilters(self)

    def state_dict(self) -> dict:
        return {"lam": self.current, "iteration": self.iteration, "selected": self.selected}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.current, self.iteration = float(state["lam"]), int(state["iteration"])
            self.selected = {k: list(v) for k, v in state["selected"].items()}


class SelectedFilters(Importance):
    """GReg's own importance: the filter norms, with the filters selected for removal scored 0."""

    name = "greg_selected"

    def __init__(self, greg: GrowingL2):
        self.greg = greg

    def __call__(self, model: PrunableModel) -> Scores:
        scores = GroupPenalty.importance(self.greg)(model)
        selected = self.greg.selected if self.greg.selected is not None else self.greg.select(model)
        for k, idx in selected.items():
            scores[k][idx] = 0.0
        return scores
