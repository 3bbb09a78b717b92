"""Gaussian model-X knockoffs of the inputs (Candès et al.'s second-order construction; ours as SCOP's knockoff
data, docs/methods.md, SCOP).

The flattened inputs x ∈ R^d are modelled as N(μ, Σ), estimated from every batch seen so far (float64 running
sums), Σ shrunk towards its diagonal, Σ_ρ = (1 − ρ)S + ρ·diag(S) + δI (ρ = ``shrinkage``, δ a ridge of 10⁻⁶ of the
mean variance, so constant pixels are handled). In standardised units z = (x − μ)/σ with correlation C = UΛUᵀ, the
equicorrelated knockoff has s = min(1, 2λ_min) and

    z̃ = z(I − sC⁻¹) + e·Lᵀ,   LLᵀ = 2sI − s²C⁻¹ = U·diag(2s − s²/λ)·Uᵀ,   e ~ N(0, I)

so that (z, z̃) is Gaussian with Cov(z̃) = C and Cov(z, z̃) = C − sI: swapping any feature with its knockoff
leaves the joint law unchanged, and z̃ carries no information about the label beyond z. The generator is refitted
from the running sums every ``refit`` batches (and at the first).
"""

from __future__ import annotations

import torch

from ..errors import UserError

RIDGE = 1e-6


class GaussianKnockoffs:
    def __init__(self, shrinkage: float = 0.1, refit: int = 100, max_features: int = 4096):
        if not 0 < shrinkage <= 1:
            raise ValueError(f"knockoff shrinkage={shrinkage} is outside (0, 1]")
        if refit < 1:
            raise ValueError(f"knockoff refit={refit} must be ≥ 1 batch")
        self.shrinkage, self.refit, self.max_features = float(shrinkage), int(refit), int(max_features)
        self.count = self.batches = 0
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None
        self.fitted: dict | None = None  # mean, scale, mix and s: x̃ = mean + scale·([z, e] @ mix)
        self.working: dict[torch.dtype, tuple[torch.Tensor, ...]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Knockoffs of the batch ``x`` (after adding it to the estimate; refitted every ``refit`` batches)."""
        flat = x.detach().flatten(1)
        self.update(flat)
        if self.fitted is None or self.batches % self.refit == 0:
            self.fit()
        dtype = torch.promote_types(x.dtype, torch.float32)
        if dtype not in self.working:
            self.working[dtype] = tuple(self.fitted[k].to(dtype) for k in ("mean", "scale", "mix"))
        mean, scale, mix = self.working[dtype]
        z = (flat.to(dtype) - mean) / scale
        return (mean + scale * (torch.cat([z, torch.randn_like(z)], 1) @ mix)).to(x.dtype).view_as(x)

    def update(self, flat: torch.Tensor) -> None:
        if flat.shape[1] > self.max_features:
            raise UserError(f"SCOP's Gaussian knockoffs model the flattened input, and its {flat.shape[1]} features "
                            f"exceed regularizer.max_features={self.max_features}")
        wide = flat.double()
        if self.sum is None:
            self.sum, self.outer = wide.new_zeros(wide.shape[1]), wide.new_zeros(wide.shape[1], wide.shape[1])
        self.count += len(wide)
        self.batches += 1
        self.sum += wide.sum(0)
        self.outer += wide.T @ wide

    def fit(self) -> None:
        mean = self.sum / self.count
        cov = self.outer / self.count - torch.outer(mean, mean)
        var = cov.diagonal().clamp_min(0)
        ridge = RIDGE * float(var.mean()) or RIDGE
        cov = (1 - self.shrinkage) * cov + torch.diag(self.shrinkage * var + ridge)
        scale = cov.diagonal().sqrt()
        eigval, eigvec = torch.linalg.eigh(cov / torch.outer(scale, scale))
        s = min(1.0, 2 * float(eigval[0]))
        keep = eigvec @ torch.diag(1 - s / eigval) @ eigvec.T  # I − sC⁻¹
        noise = eigvec @ torch.diag((2 * s - s * s / eigval).clamp_min(0).sqrt())  # L
        self.fitted = {"mean": mean, "scale": scale, "mix": torch.cat([keep, noise.T]), "s": s}
        self.working = {}

    def state_dict(self) -> dict:
        """The running sums and the fitted generator, on the CPU."""
        return {"count": self.count, "batches": self.batches, **{k: cpu(v) for k, v in
                (("sum", self.sum), ("outer", self.outer))},
                "fitted": {k: cpu(v) for k, v in self.fitted.items()} if self.fitted else None}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.count, self.batches = int(state["count"]), int(state["batches"])
        self.sum, self.outer = (to(state[k], device) for k in ("sum", "outer"))
        self.fitted = {k: to(v, device) for k, v in state["fitted"].items()} if state["fitted"] else None
        self.working = {}


def cpu(v: object) -> object:
    return v.detach().cpu().clone() if torch.is_tensor(v) else v


def to(v: object, device: torch.device) -> object:
    return v.to(device) if torch.is_tensor(v) else v
