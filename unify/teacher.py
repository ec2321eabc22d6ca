"""Teachers of the distillation methods: a velocity b_t(x) plus an ODE step X'_{s,t}(x).

A trained flow-matching model or any callable velocity gives a numerical step (Heun by default,
the consistency-distillation choice); an exact oracle gives the exact map, so that every
distillation residual vanishes on the exact solution. Teacher velocities and solves run in float32
with autocast off (``unify.flowmap.full_precision``), whatever autocast the loss is called under.
"""

from __future__ import annotations

import math
from typing import Protocol

from torch import Tensor

from unify.flowmap import FlowMap, full_precision
from unify.interpolant import Interpolant
from unify.ode import Velocity, solve


class Teacher(Protocol):
    """What a distillation method may ask of its teacher."""

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """b_t(x), t of shape (B,)."""
        ...

    def step(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """One teacher ODE step: an approximation of X_{s,t}(x)."""
        ...


class VelocityTeacher:
    """A velocity field with a fixed-step solver: step = ``substeps`` steps of ``method`` from s to t.

    With ``max_dt`` the number of sub-steps grows to ceil(max |t - s| / max_dt), so long teacher
    steps (CTM's multi-step teacher solve, neural-operator trajectories) stay accurate.
    """

    def __init__(
        self,
        velocity: Velocity,
        method: str = "heun",
        substeps: int = 1,
        max_dt: float | None = None,
    ) -> None:
        self._velocity, self.method, self.substeps, self.max_dt = velocity, method, substeps, max_dt

    @full_precision
    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self._velocity(x, t)

    @full_precision
    def step(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        n = self.substeps
        if self.max_dt is not None:
            n = max(n, math.ceil(float((t - s).abs().max()) / self.max_dt - 1e-9))
        return solve(self._velocity, x, s, t, self.method, steps=max(1, n))[0]


class FlowMapTeacher(VelocityTeacher):
    """A trained FlowMap (e.g. an `fm` run) used through its velocity v(x, t, t)."""

    def __init__(
        self, fm: FlowMap, method: str = "heun", substeps: int = 1, max_dt: float | None = None
    ) -> None:
        super().__init__(fm.velocity, method, substeps, max_dt)
        self.fm = fm


class ExactMapTeacher:
    """An oracle's exact velocity and, as its step, the oracle's exact flow map (no solver): the
    teacher of the exact tests, where every distillation residual must vanish. (The harness's
    ``teacher: exact`` is an oracle's velocity integrated by Heun steps, ``VelocityTeacher``, so
    that an exact teacher steps like a trained one.)

    ``map_kwargs`` go to ``oracle.flow_map`` (e.g. ``rtol`` of a mixture's high-accuracy solve).
    """

    def __init__(self, oracle, interpolant: Interpolant, **map_kwargs: float) -> None:
        self.oracle, self.interpolant, self.map_kwargs = oracle, interpolant, map_kwargs

    @full_precision
    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self.oracle.velocity(x, t, self.interpolant)

    @full_precision
    def step(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        return self.oracle.flow_map(x, s, t, self.interpolant, **self.map_kwargs)
