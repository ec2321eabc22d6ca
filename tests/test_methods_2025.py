"""TVM, AlphaFlow, SoFlow and CMT against their 1-D Gaussian checks, and the two-stage pipelines.

1-D harness: x0 ~ N(0, 1), x1 ~ N(2, 0.5^2), the model the closed-form flow map (``OracleNet``).
Every residual below is affine in (x0, x1) at the exact map, so it is evaluated exactly at three
points and conditioned on I_s in closed form: E[R | I_s] = A + B I_s, Var[R | I_s]. Reference
numbers (float64 computations of the published losses in their own variables): AlphaFlow at
MeanFlow time (t_c, r) = (0.8, 0.2), where the code's u = -v, so E[u_tgt - u* | z] = -(ours);
SoFlow at (s, t) = (0.2, 0.9); TVM's Euler-map controls; CMT's Euler-student control at tau = 0.5.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from methods import METHODS, build_config
from methods.cmt import ConsistencyMidTraining
from unify import ExactMapTeacher, FlowMap, Linear, Trig
from unify.exact import GaussianTarget, OracleNet

F64 = torch.float64
TARGET = GaussianTarget(torch.tensor([2.0]), torch.tensor([0.5]))
M, VAR = 2.0, 0.25


def _exact(interp) -> FlowMap:
    return FlowMap(OracleNet(TARGET, interp)).double()


class EulerNet(nn.Module):
    """v(x, s, t) = b_s(x): the one-step Euler map of the exact velocity (a negative control)."""

    def __init__(self, interp) -> None:
        super().__init__()
        self.interp = interp

    def forward(self, x, s, t):
        return TARGET.velocity(x, s, self.interp)


def _make(name: str, interp=None, steps: int = 10, **over):
    cls = METHODS[name]
    interp = interp or Linear()
    method = cls(build_config(cls, over), interp)
    method.setup(_exact(interp), steps)
    return method


def _conditional(residual, a: float, b: float) -> tuple[float, float, float]:
    """(A, B, Var) of E[R | I] = A + B I and Var[R | I], I = a x0 + b x1, for R affine in (x0, x1)."""
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=F64)
    r = residual(pts[:, :1], pts[:, 1:]).detach().flatten()
    c0, c1, c2 = float(r[0]), float(r[1] - r[0]), float(r[2] - r[0])
    cov, var_i = c1 * a + c2 * b * VAR, a * a + b * b * VAR
    slope = cov / var_i
    return c0 + c2 * M - slope * b * M, slope, c1 * c1 + c2 * c2 * VAR - cov * cov / var_i


def _times(value: float) -> torch.Tensor:
    return torch.full((3,), value, dtype=F64)


# ---------------------------------------------------------------- AlphaFlow (alpha -> 0 only)
@pytest.mark.parametrize(
    ("alpha", "a_code", "b_code"),
    [(1.0, -1.647e-1, 4.117e-1), (0.5, -2.108e-2, 5.271e-2), (0.25, -3.55e-3, 8.87e-3)],
)
def test_alphaflow_bias_matches_the_published_table(alpha, a_code, b_code):
    method, fm, lin = _make("alphaflow"), _exact(Linear()), Linear()
    s, t = _times(0.2), _times(0.8)

    def residual(x0, x1):
        p = lin.sample(x0, x1, s)
        target, _ = method.target(fm, p.xt, s, t, p.vt, alpha)
        return target - fm.avg_velocity(p.xt, s, t)

    a, b, _ = _conditional(residual, 0.8, 0.2)
    assert a == pytest.approx(-a_code, rel=2e-3) and b == pytest.approx(-b_code, rel=2e-3)


def test_alphaflow_limit_is_the_meanflow_target():
    method, fm, lin = _make("alphaflow"), _exact(Linear()), Linear()
    s, t = _times(0.2), _times(0.8)

    def residual(x0, x1):
        p = lin.sample(x0, x1, s)
        return method.target(fm, p.xt, s, t, p.vt, 0.0)[0] - fm.avg_velocity(p.xt, s, t)

    a, b, var = _conditional(residual, 0.8, 0.2)
    assert abs(a) < 1e-12 and abs(b) < 1e-12 and var == pytest.approx(0.1183, abs=1e-4)
    # the sigmoid curriculum: 1 until 0.2117 of the run before its middle, 0 after as long
    m = _make("alphaflow", steps=1000)
    assert [m.alpha(k) for k in (0, 280, 500, 720, 1000)] == [1.0, 1.0, 0.5, 0.0, 0.0]


# ---------------------------------------------------------------- SoFlow (r -> 0 only)
@pytest.mark.parametrize(
    ("r", "a_ref", "b_ref", "var_ref"),
    [
        (0.3, -2.39e-2, 5.99e-2, 0.210),
        (0.1, -5.59e-3, 1.40e-2, 0.148),
        (0.01, -4.81e-4, 1.20e-3, 0.128),
        (0.001, -4.74e-5, 1.19e-4, 0.126),
    ],
)
def test_soflow_bias_within_5_percent(r, a_ref, b_ref, var_ref):
    method, fm, lin = _make("soflow"), _exact(Linear()), Linear()
    s, t = _times(0.2), _times(0.9)

    def residual(x0, x1):
        p = lin.sample(x0, x1, s)
        return method.consistency(fm, p.xt, p.vt, s, t, s + r * (t - s))[1]

    a, b, var = _conditional(residual, 0.8, 0.2)
    assert a == pytest.approx(a_ref, rel=0.05) and b == pytest.approx(b_ref, rel=0.05)
    assert var == pytest.approx(var_ref, rel=0.05)


# ---------------------------------------------------------------- TVM (exact at its defaults)
@pytest.mark.parametrize(("interp", "euler_ref"), [(Linear(), 0.354), (Trig(), 2.73)])
def test_tvm_terminal_residual_vanishes_at_the_exact_map(interp, euler_ref):
    g = torch.Generator().manual_seed(0)
    n = 100_000
    x1 = M + VAR**0.5 * torch.randn(n, 1, generator=g, dtype=F64)
    x0 = torch.randn(n, 1, generator=g, dtype=F64)
    u, w = torch.rand(n, generator=g, dtype=F64), torch.rand(n, generator=g, dtype=F64)
    s, t = torch.minimum(u, w), torch.maximum(u, w)
    xs = interp.sample(x0, x1, s).xt
    method = _make("tvm", interp)  # its EMA target starts as a copy of the exact map
    res = method.terminal_residual(_exact(interp), xs, s, t).detach()
    assert float(res.abs().max()) < 1e-9  # every sample, not only on average
    euler = FlowMap(EulerNet(interp)).double()
    method.setup(euler, 10)
    control = float(method.terminal_residual(euler, xs, s, t).detach().pow(2).mean())
    assert control == pytest.approx(euler_ref, rel=0.05)


# ---------------------------------------------------------------- CMT (a true minimiser)
def _cmt(tau: float, **over) -> ConsistencyMidTraining:
    sigma = (1 - tau) / tau  # linear: tau = 1 / (1 + sigma)
    cfg = dict(nfe=1, sigma_max=sigma, sigma_min=min(0.002, sigma / 2), solver="teacher")
    cfg.update(pin_end=True, distance="mse", **over)
    lin, config = Linear(), ConsistencyMidTraining.Config(**cfg)
    return ConsistencyMidTraining(config, lin, ExactMapTeacher(TARGET, lin))


@pytest.mark.parametrize("tau", [0.001, 0.1, 0.3, 0.5, 0.7, 0.9])
def test_cmt_exact_map_is_its_minimiser(tau):
    g = torch.Generator().manual_seed(1)
    x1 = M + VAR**0.5 * torch.randn(4096, 1, generator=g, dtype=F64)
    x0 = torch.randn(4096, 1, generator=g, dtype=F64)
    net = OracleNet(TARGET, Linear())
    fm, method = FlowMap(net).double(), _cmt(tau)
    method.setup(fm, 10)
    losses = []
    for eps in (0.0, 0.2, -0.2):
        net.eps.data.fill_(eps)
        net.eps.grad = None
        loss, _ = method.loss(fm, x1, 0, x0)
        loss.backward()
        losses.append(float(loss.detach()))
        if eps == 0.0:
            assert losses[-1] < 1e-20 and abs(float(net.eps.grad)) < 1e-12
    assert min(losses[1:]) > 1e3 * max(losses[0], 1e-30)


def test_cmt_euler_control_and_published_grid():
    g = torch.Generator().manual_seed(2)
    x1 = M + VAR**0.5 * torch.randn(400_000, 1, generator=g, dtype=F64)
    x0 = torch.randn(400_000, 1, generator=g, dtype=F64)
    euler, method = FlowMap(EulerNet(Linear())).double(), _cmt(0.5)
    method.setup(euler, 10)
    assert float(method.loss(euler, x1, 0, x0)[0]) == pytest.approx(0.0767, rel=0.01)
    published = [
        0.0123,
        0.0237,
        0.0449,
        0.0835,
        0.150,
        0.255,
        0.399,
        0.563,
        0.714,
        0.829,
        0.904,
        0.948,
        0.972,
        0.986,
        0.993,
        0.996,
        0.998,
    ]
    taus = ConsistencyMidTraining(None, Linear(), ExactMapTeacher(TARGET, Linear())).grid()[1]
    assert torch.allclose(taus, torch.tensor(published, dtype=F64), atol=6e-4)


# ---------------------------------------------------------------- the two-stage pipelines
class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(4, 32), nn.SiLU(), nn.Linear(32, 2))

    def forward(self, x, s, t):
        return self.f(torch.cat([x, s[:, None], t[:, None]], 1))


GAUSS2D = GaussianTarget(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.5]))
STEPS = 10


def _train(name: str, over: dict, stop: int = STEPS, state: dict | None = None):
    """Train ``stop`` steps (from ``state`` if given); return the parts and a checkpoint."""
    torch.manual_seed(0)
    fm = FlowMap(TinyNet()).double()
    cls = METHODS[name]
    method = cls(build_config(cls, over), Linear(), ExactMapTeacher(GAUSS2D, Linear()))
    method.setup(fm, STEPS)
    opt = torch.optim.Adam([*fm.parameters(), *method.parameters()], lr=1e-2)
    start = 0
    if state is not None:
        fm.load_state_dict(state["fm"])
        opt.load_state_dict(state["opt"])
        method.load_state_dict(state["method"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
    for k in range(start, stop):
        x1 = GAUSS2D.sample(32, generator=torch.Generator().manual_seed(100 + k)).double()
        loss, _ = method.loss(fm, x1, k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(fm, k)
    parts = {"fm": fm.state_dict(), "opt": opt.state_dict(), "method": method.state_dict()}
    ckpt = copy.deepcopy({**parts, "rng": torch.get_rng_state(), "step": stop})
    return fm, method, ckpt


@pytest.mark.parametrize(
    ("name", "over"),
    [("ct+cmt", {"mu": 0.9, "cmt_nfe": 4}), ("meanflow+cmt", {"cmt_nfe": 4})],
)
def test_pipeline_stages_hand_off_and_resume_bit_for_bit(name, over):
    over = {**over, "mid_frac": 0.5}
    fm, method, _ = _train(name, over)
    assert method.stage_bounds(2) == (0, 5) and method.stage_bounds(7) == (5, 10)
    assert [method.stage(k) for k in (0, 4, 5, 9)] == [0, 0, 1, 1]
    for stop in (3, 5, 7):  # a checkpoint in the mid stage, at the hand-off, in the post stage
        _, _, ckpt = _train(name, over, stop=stop)
        resumed, _, _ = _train(name, over, state=ckpt)
        for a, b in zip(fm.parameters(), resumed.parameters()):
            assert torch.equal(a, b), f"{name}: resumed from step {stop} differs"
    if name == "ct+cmt":  # the post stage's EMA target starts from the weights handed over
        fm5, method5, _ = _train(name, over, stop=5)
        target = method5.stages[1].nets["target"]
        assert all(torch.equal(a, b) for a, b in zip(target.parameters(), fm5.parameters()))


def test_pipeline_options_and_declarations():
    cls = METHODS["ct+cmt"]
    cfg = build_config(cls, {"mid_frac": 0.6, "s1": 640, "cmt_nfe": 8, "cmt_distance": "mse"})
    mid, post = cfg.stage_configs()
    assert (mid.nfe, mid.distance, post.s1, post.s0) == (8, "mse", 640, 10)
    assert cls.Config().mid_frac == 0.75 and cls.needs_teacher and cls.init_from_teacher
    assert cls.exact_with == {"cmt_solver": "teacher", "cmt_pin_end": True}
    with pytest.raises(ValueError):
        build_config(cls, {"cmt_solver": "rk4"})
    with pytest.raises(ValueError):
        build_config(cls, {"mid_frac": 1.5})
    assert METHODS["meanflow+cmt"].family == "self-distilled" and cls.family == "consistency"
    method = cls(cls.Config(), Linear(), ExactMapTeacher(GAUSS2D, Linear()))
    method.setup(FlowMap(TinyNet()).double(), 1000)  # lr: 1 -> 0 over 750 steps, 0.5 -> 0 over 250
    scales = [method.lr_scale(k) for k in (0, 375, 749, 750, 875, 999)]
    assert scales == pytest.approx([1.0, 0.5, 1 / 750, 0.5, 0.25, 0.5 / 250])
