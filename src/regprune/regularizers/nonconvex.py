"""Non-convex penalties on BN scale factors γ (Bui et al. 2020/2021; docs/methods.md, Nonconvex network
slimming): ℓp, Tℓ1, MCP, SCAD.

``update=subgradient`` adds the penalty's derivative to γ's gradient after backward (as NS and Bui et
al. do); ``update=prox`` replaces γ by its proximal point with step lr after each optimizer step (closed
forms in ``prox``; exact zeros appear, so the default prune criterion becomes zero detection). All γ
tensors are handled as one flat vector.

MCP and SCAD are flat beyond a saturation point |γ| = a·λ. It is a setting of its own, ``gamma_sat``
(``a`` = gamma_sat/λ is derived), so that changing λ keeps the penalty acting on the same range of γ; and
``attach`` refuses a model on whose every gate γ the penalty's gradient is 0 (it would not act at all).
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from . import penalties as P
from . import prox
from .base import UPDATES, BNRegularizer, checked_update


class ElementwiseBN(BNRegularizer):
    """Σ_i ρ(γ_i) over every gate γ; subclasses define ``rho``, ``rho_grad`` and (optionally) ``prox``."""

    def __init__(self, lam: float, update: str = "subgradient"):
        super().__init__(lam)
        allowed = UPDATES if self.has_prox() else ("subgradient",)
        self.update = checked_update(update, allowed, f"{type(self).__name__}: a proximal step needs a closed form")

    @property
    def criterion(self) -> str:
        return "threshold" if self.update == "prox" else "percentile"

    def has_prox(self) -> bool:
        return True

    def check_acts(self) -> None:
        gammas = self.flat()
        if self.lam > 0 and not self.rho_grad(gammas).any():
            raise UserError(f"regularizer={self.name}: the penalty's gradient is 0 at every gate γ of "
                            f"{type(self.model).__name__} (|γ| in [{float(gammas.abs().min()):.3g}, "
                            f"{float(gammas.abs().max()):.3g}]), so it would not act{self.flat_hint()}")

    def flat_hint(self) -> str:
        """What to change when the penalty is flat at every γ (see ``attach``)."""
        return ""

    def rho(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rho_grad(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prox(self, y: torch.Tensor, lr: float) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self) -> torch.Tensor:
        return self.rho(self.flat(detach=False)).sum()

    @torch.no_grad()
    def after_backward(self) -> None:
        if self.update == "subgradient" and self.lam > 0:
            self.add_grad(self.rho_grad(self.flat()))

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self.update == "prox" and self.lam > 0:
            self.assign(self.prox(self.flat(), lr))


class BNLp(ElementwiseBN):
    """λΣ|γ|^p, 0 < p < 1. The subgradient λp·sign(γ)·max(|γ|, ε)^(p−1) is exact for |γ| ≥ ε and
    bounded by λp·ε^(p−1) below (ε = 1e-4 by default, ours; Bui et al.'s code divides by |γ|^(1−p) and
    gives NaN at 0); exactly-zero γ get no penalty gradient. ``update=prox`` exists for p = 1/2 (half
    thresholding) and p = 2/3."""

    def __init__(self, lam: float = 1e-4, p: float = 0.5, eps: float = 1e-4, update: str = "subgradient"):
        if not 0 < p < 1:
            raise ValueError(f"p={p} must be in (0, 1)")
        if not eps > 0:
            raise ValueError(f"eps={eps} must be > 0")
        self.p, self.eps = float(p), float(eps)
        super().__init__(lam, update)
        self.name = f"lp{self.p:.3g}"

    def has_prox(self) -> bool:
        return math.isclose(self.p, 0.5) or math.isclose(self.p, 2 / 3, rel_tol=1e-6)

    def rho(self, x):
        return self.lam * P.lp(x, self.p)

    def rho_grad(self, x):
        return self.lam * P.lp_grad(x, self.p, self.eps)

    def prox(self, y, lr):
        op = prox.half if math.isclose(self.p, 0.5) else prox.two_thirds
        return op(y, lr * self.lam)


class BNTL1(ElementwiseBN):
    """Transformed ℓ1: λΣ(a+1)|γ|/(a+|γ|), a > 0 (→ℓ1 as a→∞, →ℓ0 as a→0)."""

    name = "tl1"

    def __init__(self, lam: float = 1e-4, a: float = 1.0, update: str = "subgradient"):
        if not a > 0:
            raise ValueError(f"a={a} must be > 0")
        self.a = float(a)
        super().__init__(lam, update)

    def rho(self, x):
        return self.lam * P.tl1(x, self.a)

    def rho_grad(self, x):
        return self.lam * P.tl1_grad(x, self.a)

    def prox(self, y, lr):
        return prox.tl1(y, lr * self.lam, self.a)


class Saturating(ElementwiseBN):
    """A penalty flat beyond |γ| = ``gamma_sat`` = a·λ (MCP, SCAD): ``a`` is derived from λ and gamma_sat."""

    min_a = 1.0

    def __init__(self, lam: float, gamma_sat: float, update: str):
        if not lam > 0:
            raise ValueError(f"lam={lam} must be > 0 (the penalty's slope at 0)")
        if not gamma_sat > self.min_a * lam:
            raise ValueError(f"gamma_sat={gamma_sat} must be > {self.min_a:g}·lam = {self.min_a * lam:g} "
                             f"(a = gamma_sat/lam > {self.min_a:g})")
        self.gamma_sat, self.a = float(gamma_sat), float(gamma_sat) / float(lam)
        super().__init__(lam, update)

    def flat_hint(self) -> str:
        return (f": it is flat beyond |γ| = regularizer.gamma_sat = {self.gamma_sat:g}; set gamma_sat above the "
                f"model's γ (e.g. its bn_init)")


class BNMCP(Saturating):
    """Minimax concave penalty Σ ρ_{λ,a}(γ), a > 1: λ|γ| − γ²/(2a) up to |γ| = aλ = gamma_sat, then flat
    (aλ²/2)."""

    name = "mcp"

    def __init__(self, lam: float = 1e-4, gamma_sat: float = 1.0, update: str = "subgradient"):
        super().__init__(lam, gamma_sat, update)

    def rho(self, x):
        return P.mcp(x, self.lam, self.a)

    def rho_grad(self, x):
        return P.mcp_grad(x, self.lam, self.a)

    def prox(self, y, lr):
        return prox.firm(y, self.lam, self.a, step=lr)


class BNSCAD(Saturating):
    """SCAD Σ ρ_{λ,a}(γ), a > 2: ℓ1 up to λ, quadratic blend to aλ = gamma_sat, then flat (λ²(a+1)/2)."""

    name = "scad"
    min_a = 2.0

    def __init__(self, lam: float = 1e-4, gamma_sat: float = 1.0, update: str = "subgradient"):
        super().__init__(lam, gamma_sat, update)

    def rho(self, x):
        return P.scad(x, self.lam, self.a)

    def rho_grad(self, x):
        return P.scad_grad(x, self.lam, self.a)

    def prox(self, y, lr):
        return prox.scad(y, self.lam, self.a, step=lr)
