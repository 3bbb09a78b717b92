"""Gates: learnable factors on a BatchNorm's output that decide what to prune (docs/methods.md, Gates).

A gate lives inside the BatchNorm it multiplies, so a gated model keeps the module names, the state-dict keys
(the BN's plus ``gate`` or ``compactor``) and ``isinstance(m, nn.BatchNorm2d)``. ``regprune.pruning.gates``
installs them from a model's channel groups and folds them back into plain BatchNorms (and convs) before
compaction.

``GatedBatchNorm2d``      BN(x)·f(θ): one factor per channel, or one for every channel (a block gate).
``CompactorBatchNorm2d``  Q·BN(x): a C×C matrix (ResRep's 1×1 compactor), the identity at installation.
``KnockoffBatchNorm2d``   SCOP's real/knockoff factors: on a batch of real then knockoff inputs, the real half
                          becomes β·BN(x) + (1 − β)·BN(x̃) per channel; a plain BN otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GATE_FUNCTIONS = ("identity", "step", "smooth_l0", "hard_concrete")
HARD_CONCRETE = (2 / 3, -0.1, 1.1)  # temperature β, stretch interval (γ, ζ): Louizos et al.'s, as BAR uses them


class StepSTE(torch.autograd.Function):
    """1 where θ > 0, else 0; the gradient passes straight through (Bengio et al.'s straight-through
    estimator, as DMC trains its discrete gates; docs/methods.md, DMC)."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor) -> torch.Tensor:
        return (theta > 0).to(theta.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def gate_factor(theta: torch.Tensor, fn: str, eps: float, sample: bool = False) -> torch.Tensor:
    """The factor a gate parameter θ applies: θ (``identity``, SSS), 1[θ > 0] with a straight-through gradient
    (``step``, DMC), the smoothed ℓ0 gate θ²/(θ² + ε) (``smooth_l0``, GDP), or the hard-concrete gate with
    log α = θ (``hard_concrete``, BAR; docs/methods.md, BAR): min(1, max(0, s(ζ − γ) + γ)) with
    s = σ((log u − log(1 − u) + θ)/β), u ~ U(0, 1) per channel when ``sample``, else s = σ(θ)."""
    if fn == "identity":
        return theta
    if fn == "step":
        return StepSTE.apply(theta)
    if fn == "hard_concrete":
        beta, low, high = HARD_CONCRETE
        if sample:
            u = torch.rand_like(theta).clamp(torch.finfo(theta.dtype).tiny, 1 - torch.finfo(theta.dtype).eps)
            s = torch.sigmoid((u.log() - (-u).log1p() + theta) / beta)
        else:
            s = torch.sigmoid(theta)
        return (s * (high - low) + low).clamp(0, 1)
    return theta * theta / (theta * theta + eps)


def open_probability(theta: torch.Tensor) -> torch.Tensor:
    """P(hard-concrete gate ≠ 0) = σ(θ − β·log(−γ/ζ)) (Louizos et al.'s expected ℓ0; docs/methods.md, BAR)."""
    beta, low, high = HARD_CONCRETE
    return torch.sigmoid(theta - beta * math.log(-low / high))


def bn_kwargs(bn: nn.BatchNorm2d) -> dict:
    return {"num_features": bn.num_features, "eps": bn.eps, "momentum": bn.momentum, "affine": bn.affine,
            "track_running_stats": bn.track_running_stats}


class GatedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d followed by a learnable gate: output = BN(x)·f(θ). ``size`` is the number of factors: the
    channel count (a channel gate) or 1 (a block gate scaling the whole output)."""

    def __init__(self, num_features: int, size: int, fn: str = "identity", init: float = 1.0, gate_eps: float = 0.0,
                 **bn: object):
        super().__init__(num_features, **bn)
        if fn not in GATE_FUNCTIONS:
            raise ValueError(f"gate function {fn!r}: choose from {list(GATE_FUNCTIONS)}")
        if size not in (1, num_features):
            raise ValueError(f"a gate has one factor or one per channel ({num_features}), not {size}")
        if fn == "smooth_l0" and not gate_eps > 0:
            raise ValueError(f"the smoothed l0 gate needs eps > 0, got {gate_eps}")
        self.fn, self.gate_eps = fn, float(gate_eps)
        self.gate = nn.Parameter(torch.full((size,), float(init)))

    def factor(self, sample: bool = False) -> torch.Tensor:
        """f(θ); ``sample``: a random draw of a stochastic gate (the deterministic value otherwise)."""
        return gate_factor(self.gate, self.fn, self.gate_eps, sample)

    def channel_scores(self) -> torch.Tensor:
        """Per factor: 0 exactly where the gate closes its channels, larger the more open (|θ|, the step gate's
        margin max(θ, 0), or the smoothed or hard-concrete gate's deterministic value)."""
        theta = self.gate.detach()
        return theta.clamp_min(0) if self.fn == "step" else gate_factor(theta, self.fn, self.gate_eps).abs()

    def gate_config(self) -> dict:
        """What rebuilds this gate on a fresh BN (recorded in the model spec)."""
        return {"kind": "scale", "size": self.gate.numel(), "fn": self.fn, "gate_eps": self.gate_eps}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.factor(sample=self.training).view(1, -1, 1, 1)


class CompactorBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d followed by ResRep's compactor, a 1×1 convolution Q (C×C, initialised to the identity):
    output = Q·BN(x). Channel k of the group is Q's output k; a zero row removes it."""

    def __init__(self, num_features: int, **bn: object):
        super().__init__(num_features, **bn)
        self.compactor = nn.Parameter(torch.eye(num_features))

    def channel_scores(self) -> torch.Tensor:
        """‖Q_k‖₂ of every row (ResRep's channel metric)."""
        return self.compactor.detach().norm(dim=1)

    def gate_config(self) -> dict:
        return {"kind": "compactor"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(super().forward(x), self.compactor[:, :, None, None])


class KnockoffBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with SCOP's scientific control (docs/methods.md, SCOP): a real factor β ∈ [0, 1] per channel
    and a knockoff factor 1 − β. While ``paired`` (SCOP attached) and training, the batch holds real inputs then
    their knockoffs, and the real half's output becomes β·BN(x) + (1 − β)·BN(x̃) (the knockoff half passes on
    unchanged); otherwise it is the BN alone, which is what the pruned network keeps."""

    def __init__(self, num_features: int, init: float = 0.5, **bn: object):
        super().__init__(num_features, **bn)
        self.gate = nn.Parameter(torch.full((num_features,), float(init)))
        self.paired = False

    def channel_scores(self) -> torch.Tensor:
        """β − (1 − β): SCOP's importance, ≤ 0 where the knockoff feature does at least as well as the real one."""
        return 2 * self.gate.detach() - 1

    def gate_config(self) -> dict:
        return {"kind": "knockoff"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if not (self.training and self.paired):
            return out
        real, knockoff = out.chunk(2)
        beta = self.gate.view(1, -1, 1, 1)
        return torch.cat([beta * real + (1 - beta) * knockoff, knockoff])


GATED = (GatedBatchNorm2d, CompactorBatchNorm2d, KnockoffBatchNorm2d)


def gated_copy(bn: nn.BatchNorm2d, config: dict, init: float = 1.0) -> nn.BatchNorm2d:
    """A gated BN (``config`` as ``gate_config()`` returns it) holding ``bn``'s parameters and statistics."""
    if not bn.affine:
        raise ValueError("gates fold into a BatchNorm's scale and shift: the BN needs affine=True")
    extra = {k: v for k, v in config.items() if k != "kind"}
    if config["kind"] == "scale":
        new: nn.BatchNorm2d = GatedBatchNorm2d(**bn_kwargs(bn), init=init, **extra)
    elif config["kind"] == "compactor":
        new = CompactorBatchNorm2d(**bn_kwargs(bn))
    elif config["kind"] == "knockoff":
        new = KnockoffBatchNorm2d(**bn_kwargs(bn), init=init)
    else:
        raise ValueError(f"unknown gate kind {config['kind']!r}")
    new.to(device=bn.weight.device, dtype=bn.weight.dtype).load_state_dict(bn.state_dict(), strict=False)
    return new.train(bn.training)
