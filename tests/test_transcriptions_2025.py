"""TVM, AlphaFlow, SoFlow and CMT against their official losses, written in the official variables.

Each reference below is written as its official code writes it, not from the project's code:
- TVM (lumalabs/tvm ``training/wrapper.py``, ``loss.py``), AlphaFlow (snap-research/alphaflow
  ``src/training/loss.py:AlphaFlowLoss``) and SoFlow (zlab-princeton/SoFlow ``models.py``): data
  at code time t_c = 0, noise at 1, z = (1 - t_c) x + t_c eps; TVM/SoFlow's F(x, t_c, s_c) for a
  jump from t_c to s_c < t_c, AlphaFlow's u(z, r, t_c) with z_r = z - (t_c - r) u;
- CMT (sony/cmt ``training/loss.py:DPMSolverLoss``, ``training/dpm_solver.py``): EDM sigma,
  x = y + sigma eps, DPM-Solver++ on the EDM noise schedule, the consistency function f(x, sigma).
The one translation: the same network read in the official variables (v(x, s, t) = -F(x, 1 - s,
1 - t) = -u(x, 1 - t, 1 - s); f(x, sigma) = X_{tau,1}(b(tau) x)). Same weights, same (x0, x1),
the same drawn times mapped to the official variables: losses and parameter gradients agree to
1e-6 (float64).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import jvp

from methods import METHODS, build_config
from unify import FlowMap, FlowMapTeacher, Linear, Trig

F64, B, D = torch.float64, 64, 3
TOL = 1e-6


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(D + 2, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU())
        self.out = nn.Linear(32, D)

    def forward(self, x, s, t):
        return self.out(self.f(torch.cat([x, s[:, None], t[:, None]], 1)))


def e(y: torch.Tensor) -> torch.Tensor:
    return y[:, None]


def _setup(name: str, interp=None, **over):
    torch.manual_seed(0)
    fm = FlowMap(TinyNet()).double()
    teacher = FlowMapTeacher(FlowMap(TinyNet()).double())
    cls = METHODS[name]
    taught = teacher if cls.needs_teacher else None
    method = cls(build_config(cls, over), interp or Linear(), taught)
    method.setup(fm, 1000)
    for net in method.nets.values():  # target copies that differ from the online weights
        for p in net.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x1 = 0.5 * torch.randn(B, D, generator=g, dtype=F64) + 0.3
    x0 = torch.randn(B, D, generator=g, dtype=F64)
    return method, fm, teacher, x1, x0


def _compare(fm, ours: torch.Tensor, ref: torch.Tensor) -> float:
    params = list(fm.parameters())
    go = torch.autograd.grad(ours, params, retain_graph=True, allow_unused=True)
    gr = torch.autograd.grad(ref, params, allow_unused=True)
    diffs = [abs(float(ours.detach()) - float(ref.detach()))]
    diffs += [float((a - b).abs().max()) for a, b in zip(go, gr) if a is not None or b is not None]
    assert max(diffs) <= TOL, f"loss {float(ours)} vs {float(ref)}, max difference {max(diffs):.2e}"
    return max(diffs)


def _ours(method, fm, x1, x0, step, seed=7):
    torch.manual_seed(seed)
    loss, _ = method.loss(fm, x1, step, x0)
    torch.manual_seed(seed)  # the same draws, for the reference
    return loss, method.sample_times(B, step, like=x1)


# ---------------------------------------------------------------- TVM
def test_tvm_matches_the_official_wrapper():
    method, fm, _, images, noise = _setup("tvm")
    ours, (s, t, r) = _ours(method, fm, images, noise, 500)
    t_c, s_c, s_prime = e(1 - s), e(1 - t), e(1 - r)  # start, end, FM time (code variables)

    def model(net, x, t_, s_):  # F(x, t_c, s_c), the official wrapper's forward_model
        return -net(x, 1 - t_.flatten(), 1 - s_.flatten())

    yt = (1 - t_c) * images + t_c * noise
    ys_prime = (1 - s_prime) * images + s_prime * noise
    v_target = noise - images
    online, teacher = fm.net, method.nets["target"].net
    tangents = (torch.zeros_like(yt), torch.zeros_like(s_c), torch.ones_like(s_c))
    F_ts, F_grad = jvp(lambda *a: model(online, *a), (yt, t_c, s_c), tangents)
    f_ts = yt + (s_c - t_c) * F_ts
    df_ds = F_ts + (s_c - t_c) * F_grad
    with torch.no_grad():
        F_ss_from_fts = model(teacher, f_ts, s_c, s_c)
    F_ss = model(online, ys_prime, s_prime, s_prime)
    terminal = ((df_ds - F_ss_from_fts) ** 2).flatten(1).mean(-1)
    fm_loss = ((F_ss - v_target) ** 2).flatten(1).mean(-1)
    close = torch.isclose(s_c, t_c).flatten()
    terminal = torch.where(close, 0 * terminal, terminal)
    ref = (terminal + fm_loss).nan_to_num(nan=0.0).mean()
    _compare(fm, ours, ref)


# ---------------------------------------------------------------- AlphaFlow
def alphaflow_reference(method, fm, images, noise, t, t_next, alpha, eps=1e-3, clamp=4.0):
    def u(x, r_, t_):  # u(z, r, t_c) = -v(z, 1 - t_c, 1 - r)
        return -fm.net(x, 1 - t_, 1 - r_)

    dt = alpha * (t - t_next)
    x_t = (1 - e(t)) * images + e(t) * noise
    velocity = noise - images
    mask_c = dt == 0
    mask_d = ~mask_c
    with torch.no_grad():  # _compute_mean_velocity_c
        mean_c = velocity[mask_c].clone()
        mask_mf = ~torch.isclose(t_next[mask_c], t[mask_c])
        if mask_mf.any():
            xc, tc, rc, vc = (y[mask_c][mask_mf] for y in (x_t, t, t_next, velocity))
            _, dudt = jvp(u, (xc, rc, tc), (vc, torch.zeros_like(rc), torch.ones_like(tc)))
            mean_c[mask_mf] = vc - e(tc - rc) * dudt
        xd, vd, td, rd, ddt = x_t[mask_d], velocity[mask_d], t[mask_d], t_next[mask_d], dt[mask_d]
        mean_d = vd.clone()
        if mask_d.any():  # _compute_mean_velocity_d
            x_minus = xd - e(ddt) * vd
            if torch.isclose(1 - ddt / (td - rd), torch.zeros_like(td)).all():
                nxt = torch.zeros_like(x_minus)
            else:
                nxt = u(x_minus, rd, td - ddt)
            mean_d = (e(ddt) * vd + e(td - ddt - rd) * nxt) / e(td - rd)
            mean_d = torch.clip(mean_d, min=-clamp, max=clamp)
    mean_velocity = torch.cat([mean_c, mean_d], dim=0)  # the code's order: c first
    pred = u(x_t, t_next, t)
    loss_unscaled = ((pred - mean_velocity) ** 2).flatten(1).mean(1)
    n_c, n_d = int(mask_c.sum()), int(mask_d.sum())
    weight = torch.cat([torch.ones(n_c, dtype=F64), alpha * torch.ones(n_d, dtype=F64)])
    return (weight / (loss_unscaled.detach() + eps) * loss_unscaled).mean()


@pytest.mark.parametrize("step", [0, 450, 500, 540, 1000])  # alpha = 1, 0.78, 0.5, 0.27, 0
def test_alphaflow_matches_the_official_loss(step):
    method, fm, _, images, noise = _setup("alphaflow")
    ours, (s, t) = _ours(method, fm, images, noise, step)
    ref = alphaflow_reference(method, fm, images, noise, 1 - s, 1 - t, method.alpha(step))
    _compare(fm, ours, ref)


# ---------------------------------------------------------------- SoFlow
def soflow_reference(method, fm, images, noise, t_fm, t_c, s_c, r, p, eps):
    def NN(x, t_, s_):  # the official network in code time: v(x, s, t) = -NN(x, 1 - s, 1 - t)
        return -fm.net(x, 1 - t_, 1 - s_)

    def f(x, t_, s_):  # Euler solution function f = x + (s - t) NN
        return x + e(s_ - t_) * NN(x, t_, s_)

    n_fm = len(t_fm)
    total = 0.0
    if n_fm:
        x, z = images[:n_fm], noise[:n_fm]
        x_t, v_t = (1 - e(t_fm)) * x + e(t_fm) * z, z - x
        delta = NN(x_t, t_fm, t_fm) - v_t
        mse = (delta**2).flatten(1).mean(1)
        w = 1.0 / (1.0 * (mse.detach() + eps) ** p)  # |d/ds b(t, t)| = 1 (Euler)
        total = total + (w * mse).mean() * n_fm / B
    x, z = images[n_fm:], noise[n_fm:]
    l_c = torch.minimum(t_c + (s_c - t_c) * r, t_c - 1e-4)  # get_l
    x_t, v_target = (1 - e(t_c)) * x + e(t_c) * z, z - x
    nn_t = NN(x_t, t_c, s_c)
    f_t = x_t + e(s_c - t_c) * nn_t
    with torch.no_grad():
        x_l = x_t + v_target * e(l_c - t_c)
        f_l = f(x_l, l_c, s_c)
        dq = (f_t.detach() - f_l) / e(t_c - l_c)
        w = 1.0 / ((dq**2).flatten(1).mean(1) + eps) ** p
    sign = torch.sign(s_c - t_c)
    cons = (sign * (nn_t * (dq * e(w)).detach()).flatten(1).mean(1)).mean()
    return total + cons * (B - n_fm) / B


@pytest.mark.parametrize(("fm_frac", "step"), [(0.0, 0), (0.0, 700), (0.25, 300)])
def test_soflow_matches_the_official_loss(fm_frac, step):
    method, fm, _, images, noise = _setup("soflow", fm_frac=fm_frac)
    ours, (r_fm, s, t, _) = _ours(method, fm, images, noise, step)
    c = method.cfg
    r = method.ratio(step)
    ref = soflow_reference(method, fm, images, noise, 1 - r_fm, 1 - s, 1 - t, r, c.p, c.eps)
    _compare(fm, ours, ref)


# ---------------------------------------------------------------- CMT (EDM sigma)
def dpm_multistep_reference(model, x, t_T, t_0, steps, order=3):
    """DPMSolverLoss's ``dpm_solver.sample(..., method='multistep', return_intermediate=True)`` on
    NoiseScheduleEDM (alpha = 1, sigma = t, lambda = -log t), lower_order_final on every step."""
    lam_T, lam_0 = -math.log(t_T), -math.log(t_0)
    ts = torch.exp(-(torch.linspace(0, 1, steps + 1, dtype=F64) * (lam_0 - lam_T) + lam_T))

    def update(x, models, tprev, t, k):
        lam = [-torch.log(v) for v in tprev] + [-torch.log(t)]
        h = lam[-1] - lam[-2]
        phi_1 = torch.expm1(-h)
        if k == 1:
            return t / tprev[-1] * x - phi_1 * models[-1]
        h_0 = lam[-2] - lam[-3]
        r0 = h_0 / h
        D1_0 = (1.0 / r0) * (models[-1] - models[-2])
        if k == 2:
            return (t / tprev[-1]) * x - phi_1 * models[-1] - 0.5 * phi_1 * D1_0
        h_1 = lam[-3] - lam[-4]
        r1 = h_1 / h
        D1_1 = (1.0 / r1) * (models[-2] - models[-3])
        D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1)
        D2 = (1.0 / (r0 + r1)) * (D1_0 - D1_1)
        phi_2 = phi_1 / h + 1.0
        phi_3 = phi_2 / h - 0.5
        return (t / tprev[-1]) * x - phi_1 * models[-1] + phi_2 * D1 - phi_3 * D2

    inter, tprev, models = [x], [ts[0]], [model(x, ts[0])]
    for step in range(1, order):
        x = update(x, models, tprev, ts[step], step)
        inter.append(x)
        tprev.append(ts[step])
        models.append(model(x, ts[step]))
    for step in range(order, steps + 1):
        k = min(order, steps + 1 - step)
        x = update(x, models, tprev, ts[step], k)
        inter.append(x)
        tprev, models = tprev[1:] + [ts[step]], models[1:]
        if step < steps:
            models = models + [model(x, ts[step])]
        else:
            models = models + [models[-1]]
    return x, inter, ts


@pytest.mark.parametrize("metric", ["MSE", "MAE"])
@pytest.mark.parametrize("kind", ["linear", "trig"])
def test_cmt_matches_the_official_dpm_solver_loss(kind, metric):
    interp = Linear() if kind == "linear" else Trig()
    dist = {"MSE": "mse", "MAE": "l2"}[metric]
    method, fm, teacher, images, noise = _setup("ct+cmt", interp, cmt_distance=dist)
    torch.manual_seed(7)
    ours, _ = method.loss(fm, images, 0, noise)  # step 0: the mid-training stage
    nfe = 16

    def tau(sig):  # sigma = a / b (sigma_data = 0.5: no data scale)
        return 1 / (1 + sig) if kind == "linear" else 2 / math.pi * torch.atan(1 / sig)

    def net_ref(x, sig):  # the teacher's denoiser D(x_sigma, sigma) = E[x1 | I = b x_sigma]
        tt = tau(sig) * torch.ones(x.shape[0], dtype=F64)
        a, b, _, _ = interp.coeffs(tt)
        i = b[:, None] * x
        return interp.denoise(i, teacher.velocity(i, tt), tt)

    def net(x, sig):  # the student's consistency function f(x, sigma) = X_{tau,1}(b x)
        tt = tau(sig.flatten())
        b = interp.coeffs(tt)[1]
        return fm(b[:, None] * x, tt, torch.ones_like(tt))

    mini_bs = images.shape[0] // nfe
    y, eps = images[:mini_bs], noise[:mini_bs]
    x = y + eps * 80.0
    with torch.no_grad():
        D_y_ref, traj, ts = dpm_multistep_reference(net_ref, x, 80.0, 0.002, nfe)
    D_y_ref = torch.tile(D_y_ref, (nfe, 1))
    traj = torch.cat(traj[:-1], dim=0)
    timesteps = ts[:-1].repeat_interleave(mini_bs)
    loss = ((net(traj, timesteps) - D_y_ref) ** 2).flatten(1).sum(-1)
    if metric == "MAE":
        loss = loss.sqrt()
    _compare(fm, ours, loss.mean())
