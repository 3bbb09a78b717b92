"""Proximal operators against brute-force minimisation, compared by objective value (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from regprune.regularizers import penalties as P
from regprune.regularizers import prox

DT = torch.float64
LAMS = (1e-6, 1e-3, 0.1, 1.0, 30.0)  # tiny to large
N_PER_LAM = 2000  # 10,000 inputs per operator


pytestmark = pytest.mark.usefixtures("one_thread")


def brute_min(obj, y: torch.Tensor, coarse: int = 257, levels: int = 8, starts: int = 3) -> torch.Tensor:
    """min_x obj(x, y) for x between 0 and y (every prox here shrinks towards 0).

    A dense grid, then zoom-in around the ``starts`` best discrete local minima (the objectives are not
    convex), plus the exact end points 0 and y."""
    y = y[:, None]
    t = torch.linspace(0, 1, coarse, dtype=DT)
    f = obj(y * t, y)
    inf = torch.full_like(f[:, :1], math.inf)
    padded = torch.cat([inf, f, inf], 1)
    local = (f <= padded[:, :-2]) & (f <= padded[:, 2:])
    idx = torch.where(local, f, math.inf).topk(starts, dim=1, largest=False).indices
    lo, hi = t[(idx - 1).clamp_min(0)], t[(idx + 1).clamp_max(coarse - 1)]
    s = torch.linspace(0, 1, 17, dtype=DT)
    yy = y[:, :, None]
    for _ in range(levels):
        grid = lo[..., None] + (hi - lo)[..., None] * s
        k = obj(yy * grid, yy).argmin(-1, keepdim=True)
        lo, hi = (grid.gather(-1, (k - 1).clamp_min(0)).squeeze(-1),
                  grid.gather(-1, (k + 1).clamp_max(len(s) - 1)).squeeze(-1))
    best = obj(yy * (lo + hi)[..., None] / 2, yy).squeeze(-1).min(1).values
    ends = torch.minimum(obj(torch.zeros_like(y), y), obj(y, y)).squeeze(1)
    return torch.minimum(best, ends)


def inputs(lam: float, special: list[float], g: torch.Generator) -> torch.Tensor:
    """Random |y| around the threshold scale and over many decades, special points exactly and ±1 ulp-ish."""
    exact = torch.tensor([v * f for v in special for f in (1.0, 1 - 1e-12, 1 + 1e-12, 1 - 1e-6, 1 + 1e-6)],
                         dtype=DT)
    exact = torch.cat([exact, -exact, torch.zeros(1, dtype=DT)])
    n = N_PER_LAM - len(exact)
    scale = max(lam ** (2 / 3), lam, 1e-3)
    near = scale * 10 ** (4 * torch.rand(n // 2, generator=g, dtype=DT) - 2)
    wide = 10 ** (7 * torch.rand(n - n // 2, generator=g, dtype=DT) - 5)
    mags = torch.cat([near, wide])
    signs = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(DT)
    return torch.cat([exact, mags * signs])


# name -> (prox(y, lam), objective penalty(x, lam), special points(lam))
CASES = {
    "soft": (prox.soft, lambda x, lam: lam * x.abs(), lambda lam: [lam]),
    "half": (prox.half, lambda x, lam: lam * P.lp(x, 0.5), lambda lam: [prox.half_threshold(lam)]),
    "two_thirds": (prox.two_thirds, lambda x, lam: lam * P.lp(x, 2 / 3),
                   lambda lam: [(2 / 3) * (3 * (2 * lam) ** 3) ** 0.25]),
}
for _a in (0.05, 1.0, 5.0):
    CASES[f"tl1_a{_a}"] = (lambda y, lam, a=_a: prox.tl1(y, lam, a), lambda x, lam, a=_a: lam * P.tl1(x, a),
                           lambda lam, a=_a: [prox.tl1_threshold(lam, a)])
# MCP / SCAD: λ inside ρ; also vary the step so that both the convex and the non-convex regimes occur
for _a, _step in ((3.0, 1.0), (3.0, 0.1), (1.5, 2.0), (0.5, 1.0)):
    CASES[f"firm_a{_a}_s{_step}"] = (
        lambda y, lam, a=_a, s=_step: prox.firm(y, lam, a, s),
        lambda x, lam, a=_a, s=_step: s * P.mcp(x, lam, a),
        lambda lam, a=_a, s=_step: [s * lam, a * lam, math.sqrt(a / s) * s * lam])
for _a, _step in ((3.7, 1.0), (3.7, 0.05), (2.5, 1.0), (2.5, 4.0)):
    CASES[f"scad_a{_a}_s{_step}"] = (
        lambda y, lam, a=_a, s=_step: prox.scad(y, lam, a, s),
        lambda x, lam, a=_a, s=_step: s * P.scad(x, lam, a),
        lambda lam, a=_a, s=_step: [s * lam, (1 + s) * lam, 2 * lam, a * lam])


@pytest.mark.parametrize("name", sorted(CASES))
def test_prox_matches_brute_force_objective(name):
    op, pen, special = CASES[name]
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    for lam in LAMS:
        y = inputs(lam, special(lam), g)
        x = op(y, lam)
        assert x.dtype == DT and torch.isfinite(x).all()
        assert ((x == 0) | (x.sign() == y.sign())).all() and (x.abs() <= y.abs() * (1 + 1e-9)).all()

        def obj(xx, yy, lam=lam):
            return 0.5 * (xx - yy) ** 2 + pen(xx, lam)

        f_prox, f_brute = obj(x, y), brute_min(obj, y)
        gap = f_prox - f_brute
        worst = int(gap.argmax())
        assert gap.max() <= 1e-6, f"{name} λ={lam}: y={y[worst].item()!r} x={x[worst].item()!r} gap={gap.max()}"
        assert gap.min() >= -1e-6, f"{name} λ={lam}: brute force missed a minimum (gap {gap.min()})"


@pytest.mark.parametrize("name,thr", [("half", prox.half_threshold), ("half_approx", prox.half_threshold),
                                      ("two_thirds", lambda lam: (2 / 3) * (3 * (2 * lam) ** 3) ** 0.25),
                                      ("tl1", lambda lam: prox.tl1_threshold(lam, 1.0))])
def test_thresholding_gives_exact_zeros(name, thr):
    op = {"half": prox.half, "half_approx": prox.half_approx, "two_thirds": prox.two_thirds,
          "tl1": lambda y, lam: prox.tl1(y, lam, 1.0)}[name]
    for lam in LAMS:
        t = thr(lam)
        y = torch.tensor([0.0, t * 0.5, t * (1 - 1e-9), -t * (1 - 1e-9), t * (1 + 1e-9), -t * 2], dtype=DT)
        x = op(y, lam)
        assert (x[:4] == 0).all() and (x[4:] != 0).all()


def test_half_approx_error_bound():
    """Our cheaper half thresholding: max |x − x*| ≤ 6e-6·|x*| and ≤ 4e-5·λ^(2/3) (measured here)."""
    rel_max = abs_max = 0.0
    for lam in LAMS:
        t = prox.half_threshold(lam)
        y = t * torch.cat([torch.linspace(1 + 1e-12, 4, 100_000, dtype=DT),
                           10 ** torch.linspace(0.6, 8, 100_000, dtype=DT)])
        exact, approx = prox.half(y, lam), prox.half_approx(y, lam)
        err = (approx - exact).abs()
        rel_max = max(rel_max, float((err / exact.abs()).max()))
        abs_max = max(abs_max, float(err.max()) / lam ** (2 / 3))
    print(f"half_approx: max relative error {rel_max:.3g}, max abs error {abs_max:.3g}·λ^(2/3)")
    assert rel_max <= 6e-6 and abs_max <= 4e-5
    assert rel_max > 0  # it is an approximation, not the same formula


def test_group_prox_is_radial_and_optimal():
    """prox of λρ(‖w‖₂) on groups: no random perturbation of the result has a lower objective."""
    g = torch.Generator().manual_seed(0)
    ops = {"soft": (prox.soft, lambda n, lam: lam * n), "half": (prox.half, lambda n, lam: lam * n.sqrt()),
           "tl1": (lambda y, lam: prox.tl1(y, lam, 1.0), lambda n, lam: lam * P.tl1(n, 1.0))}
    w = torch.randn(64, 5, 3, 3, generator=g, dtype=DT) * 10 ** (2 * torch.rand(64, 1, 1, 1, generator=g) - 1.5)
    for op, pen in ops.values():
        for lam in (1e-3, 0.1, 1.0):
            x = prox.group(w, 0, op, lam)
            loop = torch.stack([w[k] * (op(w[k].norm().view(1), lam) / w[k].norm()) for k in range(64)])
            torch.testing.assert_close(x, loop, rtol=1e-12, atol=1e-15)

            def obj(z, lam=lam, pen=pen):
                return 0.5 * ((z - w) ** 2).flatten(1).sum(1) + pen(z.flatten(1).norm(dim=1), lam)

            base = obj(x)
            for scale in (1e-6, 1e-3, 1e-1):
                for _ in range(20):
                    z = x + scale * torch.randn(w.shape, generator=g, dtype=DT)
                    assert (obj(z) >= base - 1e-12).all()
    # dim 1 groups are the transposed problem
    x1 = prox.group(w, 1, prox.soft, 0.3)
    torch.testing.assert_close(x1, prox.group(w.transpose(0, 1), 0, prox.soft, 0.3).transpose(0, 1))


@pytest.mark.parametrize("op", [prox.soft, prox.half, prox.half_approx, prox.two_thirds,
                                lambda y, lam: prox.tl1(y, lam, 1.0), lambda y, lam: prox.firm(y, lam, 3.0),
                                lambda y, lam: prox.scad(y, lam, 3.7)])
def test_prox_float32_and_lambda_zero(op):
    y = torch.tensor([0.0, 1e-30, -1e-8, 0.3, -5.0, 1e6])
    assert torch.isfinite(op(y, 1e-4)).all() and op(y, 1e-4).dtype == torch.float32
    torch.testing.assert_close(op(y, 0.0), y)


def test_prox_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lam=-1"):
        prox.half(torch.zeros(1), -1)
    with pytest.raises(ValueError, match="a=2"):
        prox.scad(torch.zeros(1), 0.1, 2.0)
    with pytest.raises(ValueError, match="a=0"):
        prox.tl1(torch.zeros(1), 0.1, 0.0)
