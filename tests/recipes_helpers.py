"""Shared helpers of the recipe conformance tests (``tests/test_recipes_cm.py``,
``tests/test_recipes_flow.py``): every registered method trains on the time law its authors' code
draws, read in that code's own variables, and pre-conditions its network output as that code does.

Each test transcribes the official sampler as the official code writes it (EDM sigma with
sigma_data = 0.5 for CM, iCT, CTM and PD/DSNO; TrigFlow t_T for sCM; IMM's (t, r, s); MeanFlow's
(t, r) with noise at t = 1; AYF's (t, s) with data at 0; shortcut's (t, d); the FMM papers' own
(s, t)), draws N >= 100k training times from OUR method (``draw``: ``sample_times``) on data of
standard deviation 0.5, maps them to the official variables with the maps written out here and in
the tests (not with the project's translation functions, which are checked against them) and
requires a two-sample KS distance <= ``KS_MAX`` (``ks``); discrete laws must also hit the official
atoms to ``ATOL`` (``atoms``). Where a method keeps a documented deviation by default, the test
runs it with the knob at the official setting and checks the default separately. Sources:
docs/recipes.md.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import ks_2samp

from benchmarks.training.nets import MLP
from methods import METHODS, build_config
from unify import FlowMap, FlowMapTeacher, Linear, Trig

N = 100_000
KS_MAX = 0.01
ATOL = 1e-6
F64 = torch.float64
LIKE = torch.zeros((), dtype=F64)
INTERPS = {"linear": Linear(), "trig": Trig()}
SMIN, SMAX, RHO = 0.002, 80.0, 7.0


# ---------------------------------------------------------------- our time -> official variables
def sigma_edm(kind: str, tau, sigma_data: float = 0.5):
    """EDM's sigma of our time tau on data of standard deviation sigma_data: our k I / b = y + sigma
    n with y = k x1, k = 0.5 / sigma_data, so sigma = (a / b) k (linear a/b = (1 - tau) / tau, trig
    a/b = cot(pi tau / 2))."""
    tau = np.asarray(tau, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ratio = (1 - tau) / tau if kind == "linear" else 1 / np.tan(0.5 * np.pi * tau)
    return ratio * 0.5 / sigma_data


def karras(i, n_points: int):
    """CM / CTM ``get_t``: sigma_i = (smax^(1/rho) + i / (N - 1) (smin^(1/rho) - smax^(1/rho)))^rho."""
    i = np.asarray(i, dtype=np.float64)
    return (SMAX ** (1 / RHO) + i / (n_points - 1) * (SMIN ** (1 / RHO) - SMAX ** (1 / RHO))) ** RHO


def ks(a, b) -> float:
    return float(ks_2samp(np.asarray(a, np.float64), np.asarray(b, np.float64)).statistic)


def atoms(values, grid) -> np.ndarray:
    """Index of the official atom each value sits on; fails unless every value is within ATOL
    (relative, for sigma) of one."""
    values, grid = np.asarray(values, np.float64), np.asarray(grid, np.float64)
    order = np.argsort(grid)
    pos = np.clip(np.searchsorted(grid[order], values), 1, len(grid) - 1)
    lo, hi = grid[order][pos - 1], grid[order][pos]
    pick = np.where(np.abs(values - lo) <= np.abs(values - hi), pos - 1, pos)
    err = np.abs(values - grid[order][pick]) / np.maximum(1.0, np.abs(grid[order][pick]))
    assert err.max() <= ATOL, f"value off the official atoms by {err.max():.2e}"
    return order[pick]


def make(name: str, kind: str = "linear", sigma_data: float = 0.5, _steps: int = 1000, **over):
    cls = METHODS[name]
    teacher = None
    if cls.needs_teacher:
        torch.manual_seed(0)
        teacher = FlowMapTeacher(FlowMap(MLP(2, hidden=16, depth=1)).double())
    method = cls(build_config(cls, over), INTERPS[kind], teacher, sigma_data=sigma_data)
    method.setup(FlowMap(MLP(2, hidden=16, depth=1)).double(), _steps)
    return method


def draw(method, n: int = N, step: int = 0, seed: int = 0):
    """``sample_times`` of our method, float64, numpy."""
    g = torch.Generator().manual_seed(seed)
    return [z.numpy() for z in method.sample_times(n, step, generator=g, like=LIKE)]
