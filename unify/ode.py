"""ODE solvers for the probability-flow ODE dx/dt = b_t(x), each counting velocity evaluations.

``solve`` integrates every sample over its own interval [t0_i, t1_i] (forward or backward in time)
by the change of variable t = t0 + r (t1 - t0), r in [0, 1]: dx/dr = (t1 - t0) b_t(x). The
returned ``nfe`` is counted at the call site of the velocity, never inferred from the step count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from unify.interpolant import bcast

Velocity = Callable[[Tensor, Tensor], Tensor]
FIXED = {"euler": 1, "heun": 2, "rk4": 4}
SOLVERS = (*FIXED, "dopri5")

# Dormand-Prince 5(4) Butcher tableau (Dormand & Prince 1980; Hairer, Norsett & Wanner II.5).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4))


def _as_time(t: float | Tensor, x: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


def solve(
    velocity: Velocity,
    x: Tensor,
    t0: float | Tensor,
    t1: float | Tensor,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 100_000,
) -> tuple[Tensor, int]:
    """Integrate dx/dt = velocity(x, t) from t0 to t1; returns (x(t1), counted NFE).

    Fixed-step methods ("euler", "heun", "rk4") take ``steps`` uniform steps; "dopri5" is the
    adaptive Dormand-Prince 5(4) pair with error per sample measured in the RMS norm scaled by
    atol + rtol * max(|x_n|, |x_{n+1}|) and the step accepted when the worst sample is below 1.
    """
    if method not in SOLVERS:
        raise ValueError(f"unknown ODE method {method!r}; allowed: {', '.join(SOLVERS)}")
    t0, t1 = _as_time(t0, x), _as_time(t1, x)
    span = t1 - t0
    nfe = 0

    def f(r: float | Tensor, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return bcast(span, y) * velocity(y, t0 + r * span)

    if method in FIXED:
        if steps is None or int(steps) != steps or steps < 1:
            raise ValueError(f"method {method!r} needs an integer steps >= 1, got {steps!r}")
        return _fixed(f, x, method, int(steps)), nfe
    rtol = 1e-5 if rtol is None else rtol
    atol = 1e-5 if atol is None else atol
    if rtol <= 0 or atol <= 0:
        raise ValueError(f"dopri5 needs rtol > 0 and atol > 0, got rtol={rtol}, atol={atol}")
    return _dopri5(f, x, rtol, atol, max_steps), nfe


def _fixed(f: Callable[[float, Tensor], Tensor], x: Tensor, method: str, steps: int) -> Tensor:
    """Euler (order 1), Heun's trapezoidal predictor-corrector (order 2), classical RK4 (order 4)."""
    h = 1.0 / steps
    for i in range(steps):
        r = i * h
        k1 = f(r, x)
        if method == "euler":
            x = x + h * k1
        elif method == "heun":
            k2 = f(r + h, x + h * k1)
            x = x + 0.5 * h * (k1 + k2)
        else:
            k2 = f(r + 0.5 * h, x + 0.5 * h * k1)
            k3 = f(r + 0.5 * h, x + 0.5 * h * k2)
            k4 = f(r + h, x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def _error_ratio(err: Tensor, y0: Tensor, y1: Tensor, rtol: float, atol: float) -> float:
    """Worst per-sample RMS of err / (atol + rtol * max(|y0|, |y1|))."""
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    per_sample = (err / scale).pow(2).flatten(1).mean(1).sqrt()
    return float(per_sample.max())


def _dopri5(
    f: Callable[[float, Tensor], Tensor], x: Tensor, rtol: float, atol: float, max_steps: int
) -> Tensor:
    """Adaptive Dormand-Prince 5(4) with FSAL on r in [0, 1] (7 stages, 6 new NFE per step)."""
    k1 = f(0.0, x)
    # Initial step (Hairer, Norsett & Wanner, Sec. II.4): h = 0.01 * |x| / |f|, capped at 0.1.
    d0 = float(x.pow(2).mean().sqrt())
    d1 = float(k1.pow(2).mean().sqrt())
    h = 0.01 * d0 / d1 if d0 > 1e-5 and d1 > 1e-5 else 1e-3
    h = min(h, 0.1)
    r, n = 0.0, 0
    while 1.0 - r > 1e-12:
        n += 1
        if n > max_steps:
            raise RuntimeError(
                f"dopri5 took more than {max_steps} steps (rtol={rtol}, atol={atol})"
            )
        h = min(h, 1.0 - r)
        ks = [k1]
        for c, a in zip(_C[1:], _A[1:]):
            y = x + h * sum(ai * ki for ai, ki in zip(a, ks) if ai != 0.0)
            ks.append(f(r + c * h, y))
        x_new = y  # the 7th stage point is the 5th-order solution (B5 equals the last row of A)
        err = h * sum(e * k for e, k in zip(_E, ks) if e != 0.0)
        ratio = _error_ratio(err, x, x_new, rtol, atol)
        if ratio <= 1.0:
            r, x, k1 = r + h, x_new, ks[-1]
        factor = 0.9 * ratio ** (-0.2) if ratio > 0 else 10.0
        h = h * min(10.0, max(0.2, factor))
    return x
