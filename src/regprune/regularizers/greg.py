"""Growing L2 regularization (GReg-1, Wang et al., ICLR 2021; docs/methods.md, GReg), as the authors' code
runs it (Regularization-Pruning, ``pruner/reg_pruner.py``):

1. When the penalty phase starts (``attach`` to a *trained* model; the run refuses a penalty phase that is
   the first phase, so the preset needs a plain pre-training phase before it), the ``ratio`` share of
   filters with the smallest ℓ1 norm is selected for removal in every layer: min(⌈ratio·n⌉, n − 1) of its
   n filters (``scope=global``, ours: one ranking over all layers).
2. Only the selected filters get the penalty (λ_l/2)‖w_j‖₂², gradient λ_l·w_j. Every ``every`` (K_u)
   iterations, starting at the first, each layer that has not finished grows its λ_l by ``delta``.
   With ``bn`` (ours) w_j also holds the channel's BN γ_j and β_j: BN would otherwise renormalise the
   shrinking filter, and a zero filter still emits ReLU(β_j), so removing it would change the output.
3. A layer stops growing once λ_l reaches ``lam_max``, or once every layer's magnitude ratio (mean filter
   ℓ1 of the kept over the selected filters, smoothed as r ← 0.9·r + 0.1·ratio at each update) reaches
   ``mag_ratio_limit``. When every layer has stopped, λ stays fixed for ``stabilize`` more iterations;
   then ``finished()`` ends the penalty phase (at that epoch's end; the phase's ``epochs`` is a maximum).
4. Pruning removes exactly the selected filters (score 0, criterion threshold 0). In a run that starts
   from the trained model of another (``schedule.start_from``), the selection is taken again as the
   lowest-ℓ1 filters, which the penalty has driven to ~0.

λ_l, the selection, the smoothed ratios and the iteration counts are in ``state_dict``, so a resumed run
continues the schedule exactly.
"""

from __future__ import annotations

import math

import torch

from ..models.base import PrunableModel
from ..pruning.importance import Importance, Scores
from .groups import GroupPenalty, magnitude


class GrowingL2(GroupPenalty):
    name = "greg"
    norm = "sq"
    criterion = "threshold"
    needs_trained_model = True  # selects what to remove from the weights it attaches to

    def __init__(self, ratio: float = 0.5, delta: float = 1e-4, every: int = 10, lam_max: float = 1.0,
                 mag_ratio_limit: float = 1000.0, stabilize: int = 10000, scope: str = "layer",
                 groups: str = "filters", exclude_first: bool = True, score: str = "l1", bn: bool = True):
        super().__init__(lam_max, groups, exclude_first, score, bn=bn, penalize="prunable")
        if not 0 < ratio < 1:
            raise ValueError(f"ratio={ratio} must be in (0, 1)")
        if not delta > 0:
            raise ValueError(f"delta={delta} must be > 0")
        if not every >= 1:
            raise ValueError(f"every={every} must be ≥ 1")
        if not mag_ratio_limit > 1:
            raise ValueError(f"mag_ratio_limit={mag_ratio_limit} must be > 1")
        if not stabilize >= 0:
            raise ValueError(f"stabilize={stabilize} must be ≥ 0")
        if scope not in ("layer", "global"):
            raise ValueError(f"scope={scope!r}: choose layer or global")
        self.ratio, self.delta, self.every, self.scope = float(ratio), float(delta), int(every), scope
        self.mag_ratio_limit, self.stabilize = float(mag_ratio_limit), int(stabilize)
        self.selected: dict[str, list[int]] | None = None
        self.lams: dict[str, float] = {}  # λ_l of every layer with selected filters
        self.ratios: dict[str, float] = {}  # smoothed magnitude ratio kept / selected
        self.done: list[str] = []  # layers whose λ has stopped growing
        self.iteration, self.stabilize_from = 0, None

    def attach(self, model: PrunableModel) -> None:
        super().attach(model)
        widths = {g.name: model.widths[g.width] for g in model.channel_groups()}
        if self.selected is None or any(max(v, default=-1) >= widths.get(k, 0) for k, v in self.selected.items()):
            self.selected = self.select()
            self.lams = {k: 0.0 for k, v in self.selected.items() if v}

    def filter_norms(self) -> dict[str, torch.Tensor]:
        """ℓ1 norm of every penalised group's filters (conv/linear slices only, without its BN)."""
        weights = [[(w, d) for w, d in s if w.dim() > 1] for s in self.wg.slices]
        return {n: magnitude(s, "l1").detach() for n, s in zip(self.wg.names, weights, strict=True)}

    def select(self) -> dict[str, list[int]]:
        """The ``ratio`` share of lowest-ℓ1 filters, per layer (never all of a layer) or over all layers."""
        norms = self.filter_norms()
        if self.scope == "layer":
            counts = {k: min(math.ceil(self.ratio * len(v)), len(v) - 1) for k, v in norms.items()}
            return {k: sorted(v.argsort()[:counts[k]].tolist()) for k, v in norms.items()}
        flat = torch.cat(list(norms.values()))
        cut = flat.sort().values[math.ceil(self.ratio * len(flat)) - 1]
        return {k: sorted((v <= cut).nonzero().flatten().tolist()) for k, v in norms.items()}

    def selection(self, i: int, like: torch.Tensor) -> torch.Tensor:
        m = torch.zeros_like(like)
        m[self.selected.get(self.wg.names[i], [])] = 1.0
        return m

    def phi(self, m, i):
        return 0.5 * self.lams.get(self.wg.names[i], 0.0) * self.selection(i, m) * m

    def dphi(self, m, i):
        return 0.5 * self.lams.get(self.wg.names[i], 0.0) * self.selection(i, m)

    @torch.no_grad()
    def grow(self) -> None:
        """One λ update (every K_u iterations): grow the unfinished layers, then apply the stopping rule."""
        norms = self.filter_norms()
        for k in self.lams:
            if k in self.done:
                continue
            kept = torch.ones(len(norms[k]), dtype=torch.bool)
            kept[self.selected[k]] = False
            ratio = float(norms[k][kept].mean() / norms[k][~kept].mean().clamp_min(torch.finfo(norms[k].dtype).tiny))
            self.ratios[k] = ratio if k not in self.ratios else 0.9 * self.ratios[k] + 0.1 * ratio
            self.lams[k] = min(self.lams[k] + self.delta, self.lam)
        separated = all(r >= self.mag_ratio_limit for r in self.ratios.values())
        self.done += [k for k in self.lams if k not in self.done and (separated or self.lams[k] >= self.lam)]
        if self.stabilize_from is None and len(self.done) == len(self.lams):
            self.stabilize_from = self.iteration

    def after_backward(self) -> None:
        if self.iteration % self.every == 0 and self.stabilize_from is None:
            self.grow()
        super().after_backward()

    def on_iteration(self, step: int) -> None:
        self.iteration += 1

    def finished(self) -> bool:
        return self.stabilize_from is not None and self.iteration - self.stabilize_from >= self.stabilize

    def epoch_stats(self) -> dict[str, float]:
        lams = list(self.lams.values()) or [0.0]
        return {"greg_lam_max": max(lams), "greg_lam_min": min(lams), "greg_layers_done": len(self.done),
                "greg_mag_ratio_min": min(self.ratios.values(), default=0.0),
                "greg_stabilizing": float(self.stabilize_from is not None)}

    def importance(self) -> Importance:
        return SelectedFilters(self)

    def state_dict(self) -> dict:
        return {"lams": dict(self.lams), "ratios": dict(self.ratios), "done": list(self.done),
                "iteration": self.iteration, "stabilize_from": self.stabilize_from, "selected": self.selected}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.lams = {k: float(v) for k, v in state["lams"].items()}
            self.ratios = {k: float(v) for k, v in state["ratios"].items()}
            self.done, self.iteration = list(state["done"]), int(state["iteration"])
            self.stabilize_from = state["stabilize_from"]
            self.selected = {k: list(v) for k, v in state["selected"].items()}


class SelectedFilters(Importance):
    """GReg's own importance: the filter norms, with the filters selected for removal scored 0."""

    name = "greg_selected"

    def __init__(self, greg: GrowingL2):
        self.greg = greg

    def __call__(self, model: PrunableModel) -> Scores:
        scores = GroupPenalty.importance(self.greg)(model)
        for k, idx in self.greg.selected.items():  # attach selected them (or its state restored them)
            scores[k][idx] = 0.0
        return scores
