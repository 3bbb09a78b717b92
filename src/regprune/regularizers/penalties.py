"""Element-wise penalty functions ρ and their derivatives (docs/methods.md, one section per method), shared
by the regularizers, the proximal-operator tests and the analysis code. ℓ1, ℓp and Tℓ1 are without λ (the regularizer
multiplies); MCP and SCAD carry their own λ, which also sets where they flatten out.

Derivatives use sign(0) = 0, so an exact zero never receives a penalty gradient, and are finite
everywhere: ℓp's |x|^(p−1) is evaluated at max(|x|, ε).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def lp(x: Tensor, p: float) -> Tensor:
    return x.abs().pow(p)


def lp_grad(x: Tensor, p: float, eps: float) -> Tensor:
    """p·sign(x)·max(|x|, ε)^(p−1): the exact derivative for |x| ≥ ε, bounded by p·ε^(p−1) below."""
    return p * x.sign() * x.abs().clamp_min(eps).pow(p - 1)


def tl1(x: Tensor, a: float) -> Tensor:
    """Transformed ℓ1: (a+1)|x|/(a+|x|)."""
    return (a + 1) * x.abs() / (a + x.abs())


def tl1_grad(x: Tensor, a: float) -> Tensor:
    return a * (a + 1) * x.sign() / (a + x.abs()) ** 2


def mcp(x: Tensor, lam: float, a: float) -> Tensor:
    """MCP: λ|x| − x²/(2a) for |x| ≤ aλ, aλ²/2 beyond."""
    ax = x.abs()
    return torch.where(ax <= a * lam, lam * ax - x * x / (2 * a), torch.full_like(x, a * lam * lam / 2))


def mcp_grad(x: Tensor, lam: float, a: float) -> Tensor:
    return x.sign() * (lam - x.abs() / a).clamp_min(0)


def scad(x: Tensor, lam: float, a: float) -> Tensor:
    """SCAD: λ|x| (|x| ≤ λ); (2aλ|x| − x² − λ²)/(2(a−1)) (λ < |x| ≤ aλ); λ²(a+1)/2 beyond."""
    ax = x.abs()
    mid = (2 * a * lam * ax - x * x - lam * lam) / (2 * (a - 1))
    flat = torch.full_like(x, lam * lam * (a + 1) / 2)
    return torch.where(ax <= lam, lam * ax, torch.where(ax <= a * lam, mid, flat))


def scad_grad(x: Tensor, lam: float, a: float) -> Tensor:
    ax = x.abs()
    return x.sign() * torch.where(ax <= lam, torch.full_like(x, lam), ((a * lam - ax) / (a - 1)).clamp_min(0))


def smooth_abs(x: Tensor, a: float) -> Tensor:
    """|x|, replaced for |x| < a by −x⁴/(8a³) + 3x²/(4a) + 3a/8 (C¹ at ±a; Li, Hu et al.'s smoothed L1)."""
    if a == 0:
        return x.abs()
    x2 = x * x
    return torch.where(x.abs() < a, -x2 * x2 / (8 * a**3) + 3 * x2 / (4 * a) + 3 * a / 8, x.abs())


def smooth_abs_grad(x: Tensor, a: float) -> Tensor:
    if a == 0:
        return x.sign()
    return torch.where(x.abs() < a, -x**3 / (2 * a**3) + 3 * x / (2 * a), x.sign())
