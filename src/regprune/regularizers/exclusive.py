"""Li, Hu et al. (TSMC 2024) penalties on the ℓ1 magnitude m_g = ‖w_g‖₁ of filter groups (docs/methods.md,
Group sparsity on filters): L1,2 (exclusive sparsity) λΣ m_g², group L1/2 λΣ m_g^½, and their hybrid
HGL1,2&L1/2.

All are subgradient methods (the authors add the penalty to the loss and train with Adam). By default they
act on the filters of every conv but the first (``penalize=all_convs``, ``exclude_first``), whichever
channels the prune mode can remove. ``smooth`` = a replaces |t| inside m by −t⁴/(8a³) + 3t²/(4a) + 3a/8
for |t| < a (the second author's smoothed L1, a = 0.008), which also removes the singularity of m^½ at 0.
Without smoothing, group L1/2's derivative λ/(2√m) is evaluated at max(m, ε) (ε = 1e-6, ours), so an
all-zero group gets no NaN (and, as sign(0) = 0, no gradient).
"""

from __future__ import annotations

import torch

from .groups import GroupPenalty


class L12(GroupPenalty):
    """λ Σ_g ‖w_g‖₁²: ∂/∂w_i = 2λ‖w_g‖₁·sign(w_i)."""

    name = "l12"
    norm = "l1"

    def __init__(self, lam: float = 1e-4, groups: str = "filters", exclude_first: bool = True, score: str = "l2",
                 smooth: float = 0.0, bn: bool = False, penalize: str = "all_convs"):
        super().__init__(lam, groups, exclude_first, score, smooth, bn, penalize)

    def phi(self, m, i):
        return self.lam * m * m

    def dphi(self, m, i):
        return 2 * self.lam * m


class GroupLHalf(GroupPenalty):
    """λ Σ_g ‖w_g‖₁^½: ∂/∂w_i = λ·sign(w_i)/(2√max(‖w_g‖₁, ε))."""

    name = "gl_half"
    norm = "l1"

    def __init__(self, lam: float = 1e-4, groups: str = "filters", exclude_first: bool = True, score: str = "l2",
                 smooth: float = 0.0, bn: bool = False, penalize: str = "all_convs", eps: float = 1e-6):
        super().__init__(lam, groups, exclude_first, score, smooth, bn, penalize)
        if not eps > 0:
            raise ValueError(f"eps={eps} must be > 0")
        self.eps = float(eps)

    def phi(self, m, i):
        return self.lam * m.sqrt()

    def dphi(self, m, i):
        return self.lam / (2 * m.clamp_min(self.eps).sqrt())


class HGL(GroupPenalty):
    """HGL1,2&L1/2: per group, λ₁‖w_g‖₁² if ‖w_g‖₁ > m*, else λ₂‖w_g‖₁^½.

    Large groups get exclusive sparsity (sparsity inside the group), small ones are pushed to zero as a
    whole. The paper's critical magnitude is not published. Three ways to set it (all ours):

    - ``m_star_rel`` = r: per layer (penalised group), m* = r × the median ‖w_g‖₁ of that layer at the
      current step (a constant for the gradient). Filter norms followed by BN have no fixed scale (the loss
      does not depend on it, so weight decay and the penalty shrink whole layers): on digits, an m* fixed at
      0.5× the layer's median at the start had every filter below it after 3 epochs. Relative to the current
      median, "small" means small for its layer, and both branches act throughout.
    - ``m_star``: one absolute value for every layer.
    - neither: m* = (λ₂/(4λ₁))^(2/3), where the two per-weight gradients 2λ₁m and λ₂/(2√m) are equal
      (continuous gradient; the penalty value jumps there by a factor 4) — ≈ 0.4 for λ₁ = λ₂ = 1e-4, far below
      typical filter norms (≈ 27 for a He-initialised 3×3×64 filter), where HGL is L1,2 everywhere.

    ``lam`` = λ₁ (L1,2), ``lam_half`` = λ₂ (group L1/2). ``epoch_stats`` reports the share of penalised filters
    on each side of m*.
    """

    name = "hgl"
    norm = "l1"

    def __init__(self, lam: float = 1e-4, lam_half: float = 1e-4, m_star: float | None = None,
                 m_star_rel: float | None = None, groups: str = "filters", exclude_first: bool = True,
                 score: str = "l2", smooth: float = 0.0, bn: bool = False, penalize: str = "all_convs",
                 eps: float = 1e-6):
        super().__init__(lam, groups, exclude_first, score, smooth, bn, penalize)
        if not lam_half >= 0:
            raise ValueError(f"lam_half={lam_half} must be ≥ 0")
        if m_star is not None and m_star_rel is not None:
            raise ValueError("set m_star (absolute) or m_star_rel (× each layer's median filter norm), not both")
        if m_star is None and m_star_rel is None:
            if not (lam > 0 and lam_half > 0):
                raise ValueError("m_star=null (the gradient crossing) needs lam > 0 and lam_half > 0")
            m_star = (lam_half / (4 * lam)) ** (2 / 3)
        if m_star is not None and not m_star >= 0:
            raise ValueError(f"m_star={m_star} must be ≥ 0")
        if m_star_rel is not None and not m_star_rel > 0:
            raise ValueError(f"m_star_rel={m_star_rel} must be > 0")
        if not eps > 0:
            raise ValueError(f"eps={eps} must be > 0")
        self.lam_half, self.eps = float(lam_half), float(eps)
        self.m_star = None if m_star is None else float(m_star)
        self.m_star_rel = None if m_star_rel is None else float(m_star_rel)

    def above(self, m: torch.Tensor) -> torch.Tensor:
        """Which groups of one layer take the L1,2 branch."""
        return m > (self.m_star if self.m_star is not None else self.m_star_rel * m.detach().median())

    def phi(self, m, i):
        return torch.where(self.above(m), self.lam * m * m, self.lam_half * m.sqrt())

    def dphi(self, m, i):
        return torch.where(self.above(m), 2 * self.lam * m, self.lam_half / (2 * m.clamp_min(self.eps).sqrt()))

    @torch.no_grad()
    def epoch_stats(self) -> dict[str, float]:
        above = torch.cat([self.above(m) for m in self.magnitudes()])
        share = 100.0 * float(above.sum()) / above.numel()
        return {**super().epoch_stats(), "hgl_above_m_star_pct": share, "hgl_below_m_star_pct": 100.0 - share}
