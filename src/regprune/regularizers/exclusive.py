"""Li, Hu et al. (TSMC 2024) penalties on the ℓ1 magnitude m_g = ‖w_g‖₁ of filter groups (papers.md §1):
L1,2 (exclusive sparsity) λΣ m_g², group L1/2 λΣ m_g^½, and their hybrid HGL1,2&L1/2.

All are subgradient methods (the authors add the penalty to the loss and train with Adam). ``smooth`` = a
replaces |t| inside m by −t⁴/(8a³) + 3t²/(4a) + 3a/8 for |t| < a (the second author's smoothed L1,
a = 0.008), which also removes the singularity of m^½ at 0. Without smoothing, group L1/2's derivative
λ/(2√m) is evaluated at max(m, ε) (ε = 1e-6, ours), so an all-zero group gets no NaN (and, as sign(0) = 0,
no gradient).
"""

from __future__ import annotations

import torch

from .groups import GroupPenalty


class L12(GroupPenalty):
    """λ Σ_g ‖w_g‖₁²: ∂/∂w_i = 2λ‖w_g‖₁·sign(w_i)."""

    name = "l12"
    norm = "l1"

    def __init__(self, lam: float = 1e-4, groups: str = "filters", exclude_first: bool = True, score: str = "l2",
                 smooth: float = 0.0):
        super().__init__(lam, groups, exclude_first, score, smooth)

    def phi(self, m, i):
        return self.lam * m * m

    def dphi(self, m, i):
        return 2 * self.lam * m


class GroupLHalf(GroupPenalty):
    """λ Σ_g ‖w_g‖₁^½: ∂/∂w_i = λ·sign(w_i)/(2√max(‖w_g‖₁, ε))."""

    name = "gl_half"
    norm = "l1"

    def __init__(self, lam: float = 1e-4, groups: str = "filters", exclude_first: bool = True, score: str = "l2",
                 smooth: float = 0.0, eps: float = 1e-6):
        super().__init__(lam, groups, exclude_first, score, smooth)
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
    whole. The paper's critical magnitude is not published; the default m* = (λ₂/(4λ₁))^(2/3) is where the
    two per-weight gradients 2λ₁m and λ₂/(2√m) are equal, so the gradient is continuous across the switch
    (our derivation, papers.md §1; the penalty value itself jumps there by a factor 4).
    ``lam`` = λ₁ (L1,2), ``lam_half`` = λ₂ (group L1/2).
    """

    name = "hgl"
    norm = "l1"

    def __init__(self, lam: float = 1e-4, lam_half: float = 1e-4, m_star: float | None = None,
                 groups: str = "filters", exclude_first: bool = True, score: str = "l2", smooth: float = 0.0,
                 eps: float = 1e-6):
        super().__init__(lam, groups, exclude_first, score, smooth)
        if not lam_half >= 0:
            raise ValueError(f"lam_half={lam_half} must be ≥ 0")
        if m_star is None:
            if not (lam > 0 and lam_half > 0):
                raise ValueError("m_star=null (the gradient crossing) needs lam > 0 and lam_half > 0")
            m_star = (lam_half / (4 * lam)) ** (2 / 3)
        if not m_star >= 0:
            raise ValueError(f"m_star={m_star} must be ≥ 0")
        if not eps > 0:
            raise ValueError(f"eps={eps} must be > 0")
        self.lam_half, self.m_star, self.eps = float(lam_half), float(m_star), float(eps)

    def phi(self, m, i):
        return torch.where(m > self.m_star, self.lam * m * m, self.lam_half * m.sqrt())

    def dphi(self, m, i):
        return torch.where(m > self.m_star, 2 * self.lam * m, self.lam_half / (2 * m.clamp_min(self.eps).sqrt()))
