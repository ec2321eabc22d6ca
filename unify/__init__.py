"""The maths of flowmap-bench: interpolants, the two-time flow map, grids, samplers, ODE solvers,
exact oracles and teachers. Convention: x0 ~ N(0, I) noise at t = 0, data x1 at t = 1."""

from unify import exact, ode
from unify.flowmap import (
    FlowMap,
    avg_velocity_total_derivative,
    eulerian_tangent,
    full_precision,
    map_ds,
    map_dt,
)
from unify.grids import time_grid
from unify.interpolant import Interpolant, Linear, PathSample, Trig, bcast, make_interpolant
from unify.sample import consistency_sample, sample
from unify.teacher import ExactMapTeacher, FlowMapTeacher, Teacher, VelocityTeacher

__all__ = [
    "ExactMapTeacher",
    "FlowMap",
    "FlowMapTeacher",
    "Interpolant",
    "Linear",
    "PathSample",
    "Teacher",
    "Trig",
    "VelocityTeacher",
    "avg_velocity_total_derivative",
    "bcast",
    "consistency_sample",
    "eulerian_tangent",
    "exact",
    "full_precision",
    "make_interpolant",
    "map_ds",
    "map_dt",
    "ode",
    "sample",
    "time_grid",
]
