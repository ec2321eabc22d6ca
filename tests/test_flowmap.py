"""FlowMap X_{s,t}(x) = x + (t - s) net(x, s, t) and its forward-mode derivatives.

A tiny random MLP (float64) stands in for the network, so nothing here depends on training or on
the oracles; the derivatives are checked against central finite differences, which share no code
with torch.func.jvp.
"""

import pytest
import torch
from torch import nn

from unify import (
    FlowMap,
    FlowMapTeacher,
    avg_velocity_total_derivative,
    eulerian_tangent,
    map_ds,
    map_dt,
)

F64 = torch.float64
D = 3
# Central differences in float64 with step H: truncation ~ H^2 |f'''| / 6 ~ 1e-10 for this O(1)
# smooth net, roundoff ~ eps |f| / H ~ 1e-11. A tolerance of 1e-7 sits 1000x above both and far
# below any real mismatch (a missing term changes the derivative by O(0.1-1)).
H = 1e-5
FD_TOL = {"rtol": 1e-7, "atol": 1e-7}


class TinyMLP(nn.Module):
    """net(x, s, t): 2-layer MLP on [x, s, t] with a smooth nonlinearity (jvp/FD friendly)."""

    def __init__(self, d: int = D, hidden: int = 32, act: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d + 2, hidden), act(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([x, s[:, None], t[:, None]], dim=-1))


def _fm(act: type[nn.Module] = nn.Tanh, seed: int = 0) -> FlowMap:
    torch.manual_seed(seed)
    return FlowMap(TinyMLP(act=act)).to(F64)


def _inputs(b: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, D, generator=g, dtype=F64)
    s = torch.rand(b, generator=g, dtype=F64)
    t = torch.rand(b, generator=g, dtype=F64)  # any order: t < s as often as t > s
    u = torch.randn(b, D, generator=g, dtype=F64)
    return x, s, t, u


ACTS = pytest.mark.parametrize("act", [nn.Tanh, nn.SiLU], ids=["tanh", "silu"])


@ACTS
def test_identity_on_diagonal(act):
    fm = _fm(act)
    x, s, _, _ = _inputs()
    # (t - s) = 0 exactly, so x + 0 * net(...) is x bit for bit (net output is finite)
    assert torch.equal(fm(x, s, s), x)
    fm32 = FlowMap(TinyMLP(act=act))  # float32 too: no rounding can leak in
    assert torch.equal(fm32(x.float(), s.float(), s.float()), x.float())


@ACTS
def test_map_definition_and_avg_velocity(act):
    fm = _fm(act)
    x, s, t, _ = _inputs()
    net_out = fm.net(x, s, t)
    assert torch.equal(fm(x, s, t), x + (t - s)[:, None] * net_out)
    assert torch.equal(fm.avg_velocity(x, s, t), net_out)
    # v = (X - x) / (t - s) off the diagonal (|t - s| >= 1e-3 here, so the division loses <1e-12)
    keep = (t - s).abs() > 1e-3
    torch.testing.assert_close(
        ((fm(x, s, t) - x) / (t - s)[:, None])[keep], net_out[keep], rtol=1e-11, atol=1e-11
    )


@ACTS
def test_velocity_is_time_derivative_on_diagonal(act):
    """b_t(x) = d/dt X_{s,t}(x) at t = s, by map_dt's jvp and by a finite difference."""
    fm = _fm(act)
    x, s, _, _ = _inputs()
    out, dxdt = map_dt(fm, x, s, s)
    assert torch.equal(out, x)
    # d/dt [x + (t - s) v] = v + (t - s) dv/dt = v at t = s: the jvp computes 1 * v + 0 * (...),
    # so the match is to rounding only.
    torch.testing.assert_close(dxdt, fm.velocity(x, s), rtol=1e-14, atol=1e-14)
    # finite difference in t at t = s, independent of AD
    fd = (fm(x, s, s + H) - fm(x, s, s - H)) / (2 * H)
    torch.testing.assert_close(fd, fm.velocity(x, s), **FD_TOL)


@ACTS
def test_map_dt_matches_finite_differences(act):
    fm = _fm(act)
    x, s, t, _ = _inputs()
    out, dxdt = map_dt(fm, x, s, t)
    torch.testing.assert_close(out, fm(x, s, t), rtol=1e-15, atol=1e-15)
    fd = (fm(x, s, t + H) - fm(x, s, t - H)) / (2 * H)
    torch.testing.assert_close(dxdt, fd, **FD_TOL)


@ACTS
def test_map_ds_matches_finite_differences(act):
    """map_ds = d/ds X_{s,t}(x) + grad_x X_{s,t}(x) u: the directional derivative along (u, 1, 0)."""
    fm = _fm(act)
    x, s, t, u = _inputs()
    out, d = map_ds(fm, x, s, t, u)
    torch.testing.assert_close(out, fm(x, s, t), rtol=1e-15, atol=1e-15)
    fd = (fm(x + H * u, s + H, t) - fm(x - H * u, s - H, t)) / (2 * H)
    torch.testing.assert_close(d, fd, **FD_TOL)
    # separately: the s-part and the x-part (u = 0 isolates d/ds)
    _, ds_only = map_ds(fm, x, s, t, torch.zeros_like(u))
    fd_s = (fm(x, s + H, t) - fm(x, s - H, t)) / (2 * H)
    torch.testing.assert_close(ds_only, fd_s, **FD_TOL)
    # and against the full Jacobian from reverse-mode autograd (a third, independent route)
    jac = torch.func.vmap(torch.func.jacrev(lambda xi, si, ti: fm(xi[None], si[None], ti[None])[0]))
    j = jac(x, s, t)  # (B, D, D)
    torch.testing.assert_close(
        d - ds_only, torch.einsum("bij,bj->bi", j, u), rtol=1e-12, atol=1e-12
    )


@ACTS
def test_avg_velocity_total_derivative_matches_finite_differences(act):
    fm = _fm(act)
    x, s, t, u = _inputs()
    v, dv = avg_velocity_total_derivative(fm, x, s, t, u)
    torch.testing.assert_close(v, fm.net(x, s, t), rtol=1e-15, atol=1e-15)
    fd = (fm.avg_velocity(x + H * u, s + H, t) - fm.avg_velocity(x - H * u, s - H, t)) / (2 * H)
    torch.testing.assert_close(dv, fd, **FD_TOL)


@ACTS
def test_eulerian_tangent_is_map_ds_and_splits_with_warmup(act):
    """T = (u - v) + r (t - s)(d/ds v + grad v . u): at r = 1 the jvp of the map (map_ds)."""
    fm = _fm(act)
    x, s, t, u = _inputs()
    v, tangent = eulerian_tangent(fm, x, s, t, u)
    torch.testing.assert_close(v, fm.net(x, s, t), rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(tangent, map_ds(fm, x, s, t, u)[1], rtol=1e-12, atol=1e-12)
    _, dv = avg_velocity_total_derivative(fm, x, s, t, u)
    _, half = eulerian_tangent(fm, x, s, t, u, r=0.5)
    torch.testing.assert_close(half, (u - v) + 0.5 * (t - s)[:, None] * dv, rtol=0, atol=1e-15)


def test_derivatives_carry_parameter_gradients():
    """Losses backpropagate through the jvp outputs (no double backward needed, but must work)."""
    fm = _fm()
    x, s, t, u = _inputs()
    _, d = map_ds(fm, x, s, t, u)
    _, dt = map_dt(fm, x, s, t)
    (d.pow(2).sum() + dt.pow(2).sum()).backward()
    grads = [p.grad for p in fm.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


class PixelNet(nn.Module):
    """A smooth net on (B, C, H, W) images, time-dependent through per-sample s and t."""

    def forward(self, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        st = (1 + s + 2 * t)[:, None, None, None]
        return torch.tanh(x.flip(-1)) * st + torch.sin(3 * t)[:, None, None, None]


def test_image_shaped_states():
    """(B, C, H, W) states: per-sample times broadcast, identity on the diagonal, jvps match FD."""
    fm = FlowMap(PixelNet())
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 2, 3, 3, generator=g, dtype=F64)
    u = torch.randn(4, 2, 3, 3, generator=g, dtype=F64)
    s = torch.rand(4, generator=g, dtype=F64)
    t = torch.rand(4, generator=g, dtype=F64)
    assert torch.equal(fm(x, s, s), x)
    ref = x + (t - s)[:, None, None, None] * fm.net(x, s, t)
    torch.testing.assert_close(fm(x, s, t), ref, rtol=0, atol=0)
    _, dxdt = map_dt(fm, x, s, t)
    torch.testing.assert_close(dxdt, (fm(x, s, t + H) - fm(x, s, t - H)) / (2 * H), **FD_TOL)
    _, d = map_ds(fm, x, s, t, u)
    fd = (fm(x + H * u, s + H, t) - fm(x - H * u, s - H, t)) / (2 * H)
    torch.testing.assert_close(d, fd, **FD_TOL)


def test_jvp_helpers_and_teachers_run_in_fp32_outside_autocast():
    """Under bf16 autocast (the harness's CUDA setting, here on CPU) every jvp helper and teacher
    returns float32 equal to the value without autocast; bf16 inputs are promoted first."""
    torch.manual_seed(0)
    fm = FlowMap(TinyMLP())
    x, s, t, u = (z.float() for z in _inputs())
    helpers = {
        "map_dt": lambda x, u: map_dt(fm, x, s, t),
        "map_ds": lambda x, u: map_ds(fm, x, s, t, u),
        "avg_velocity_total_derivative": lambda x, u: avg_velocity_total_derivative(fm, x, s, t, u),
        "eulerian_tangent": lambda x, u: eulerian_tangent(fm, x, s, t, u, 0.5),
        "teacher.velocity": lambda x, u: (FlowMapTeacher(fm).velocity(x, t),),
        "teacher.step": lambda x, u: (FlowMapTeacher(fm, substeps=2).step(x, s, t),),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fm.net(x, s, t).dtype == torch.bfloat16  # autocast is really on
    xb, ub = x.bfloat16(), u.bfloat16()
    for name, fn in helpers.items():
        want, want_low = fn(x, u), fn(xb.float(), ub.float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, got_low = fn(x, u), fn(xb, ub)
        for w, g, wl, gl in zip(want, got, want_low, got_low):
            assert g.dtype == gl.dtype == torch.float32, f"{name}: {g.dtype}, {gl.dtype}"
            torch.testing.assert_close(g, w, rtol=0, atol=0, msg=name)
            torch.testing.assert_close(gl, wl, rtol=0, atol=0, msg=name)
