"""The new losses against independent transcriptions of the implementations they port.

Each reference below is written in its source's own units and time convention, from the formulas
of the ports named below, not from the project's code (translations: docs/methods.md):
- sCM (edm2_sCM ``loss_scm.py``, FastGen ``sCM.py``): TrigFlow time t_T, data x_d = k x1 (EDM
  units, k = 0.5 / sigma_data; sigma_data = 1 is the frame before issue #20), noise z = sigma_d x0, F by the JVP of the TrigFlow head with the cos * sin tangent rearrangement;
  the linear interpolant through FastGen's SNR-matched ``TrigFlowPrecond`` (x0-prediction -> F);
- AYF (revsic ``alignyourflow.py``, FastGen ``opt_grad``): AYF time t_A = 1 - tau, data at t_A = 0,
  F = -v, the tangent df/dt_A with warm-up, the loss on F;
- IMM (stockeh/imm ``training/loss.py``): IMM time t of the same SNR (eta = sigma_EDM / 0.5),
  x = alpha x_d + sigma sigma_d eps, the euler map in our frame, kernel 1/|c_out|, V-statistic.
Same network weights, same (x0, x1), same times: the losses and their parameter gradients agree
to rounding (float64). The time laws are checked draw by draw (the translated law's draws are
the published law's draws, reflected where the convention flips time).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jvp

from benchmarks.training.nets import MLP
from methods import METHODS, build_config
from methods.common import consistency_grid
from unify import FlowMap, FlowMapTeacher, Linear, Trig

F64, B, D, SD = torch.float64, 64, 3, 0.5
TOL = 1e-10


def e(y: torch.Tensor) -> torch.Tensor:
    return y[:, None]


def _setup(name: str, interp, step_total: int = 1000, sigma_data: float = 0.5, **over):
    torch.manual_seed(0)
    fm = FlowMap(MLP(D, hidden=32, depth=2)).double()
    teacher = FlowMapTeacher(FlowMap(MLP(D, hidden=32, depth=2)).double())
    cls = METHODS[name]
    teacher_ = teacher if cls.needs_teacher else None
    method = cls(build_config(cls, over), interp, teacher_, sigma_data=sigma_data)
    method.setup(fm, step_total)
    for p in method.parameters():  # a non-trivial log-variance head
        p.data.normal_(0, 0.3)
    g = torch.Generator().manual_seed(1)
    x1 = 2 * torch.randn(B, D, generator=g, dtype=F64) + 1
    x0 = torch.randn(B, D, generator=g, dtype=F64)
    return method, fm, teacher, x1, x0


def _loss_grads(loss: torch.Tensor, params: list) -> tuple[float, list]:
    return float(loss.detach()), [g.clone() for g in torch.autograd.grad(loss, params)]


def _compare(ours, ref) -> float:
    (lo, go), (lr, gr) = ours, ref
    diff = max([abs(lo - lr)] + [float((a - b).abs().max()) for a, b in zip(go, gr)])
    assert diff < TOL * max(1.0, abs(lr)), f"loss {lo} vs {lr}, max difference {diff:.2e}"
    return diff


# ---------------------------------------------------------------- sCM (TrigFlow units)
def scm_reference(net, head, kind, x1, x0, r, teacher=None, prior=True, c=0.1, sd_data=0.5):
    """sd_data: the data's standard deviation; x_d = k x1, k = 0.5 / sd_data (EDM's units), so that
    sigma_d tan t_T = sigma_EDM = (a / b) k. sd_data = 1 is the frame used before issue #20."""
    tt = torch.atan(torch.exp(torch.randn(B, dtype=F64) * 1.4 + -1.0) / SD)
    tt = tt.clamp(0.004, math.pi / 2 - 1e-4)
    ct, st = e(tt.cos()), e(tt.sin())
    k = 0.5 / sd_data
    x_d, z = k * x1, SD * x0
    x_t = ct * x_d + st * z
    map_a = kind == "trig" and sd_data == 1.0  # tau = 1 - 2 t_T / pi exactly

    def snr_match(t):  # FastGen TrigFlowPrecond: our tau of the same SNR, input I = x^TF m / SD
        q = sd_data  # tan t_T = a / (q b), q = SD / k
        if kind == "linear":
            tau = 1 / (1 + q * torch.tan(t))
            a, b = 1 - tau, tau
        else:
            tau = (2 / math.pi) * torch.atan2(torch.ones_like(t), q * torch.tan(t))
            a, b = torch.cos(0.5 * math.pi * tau), torch.sin(0.5 * math.pi * tau)
        return tau, e((a**2 + (q * b) ** 2).sqrt())

    def f_of(x, t):  # F_theta(x^TF / sigma_d, t_T)
        if map_a:  # the stable trig conversion of docs/methods.md
            tau = 1 - 2 * t / math.pi
            v = net(x, tau, torch.ones_like(tau))
            return -e(torch.tan(t / 2)) * x - e(2 * t / (math.pi * torch.sin(t))) * v
        tau, m = snr_match(t)
        inp = x * m
        x0_pred = inp + e(1 - tau) * net(inp, tau, torch.ones_like(tau))  # our units
        return (e(t.cos()) * x - (k / SD) * x0_pred) / e(t.sin())  # x0_to_flow, EDM units

    if teacher is None:
        dxdt = ct * z - st * x_d
    elif map_a:  # trig path: dx/dt = -(2 sigma_d / pi) b_tau(x^TF / sigma_d)
        dxdt = -(2 * SD / math.pi) * teacher(x_t / SD, 1 - 2 * tt / math.pi)
    else:  # teacher denoiser -> TrigFlow flow, at the SNR-matched time
        tau, m = snr_match(tt)
        inp = x_t / SD * m
        a, _, da, db = (Linear() if kind == "linear" else Trig()).coeffs(tau)
        b_ = tau if kind == "linear" else torch.sin(0.5 * math.pi * tau)
        # E[x1 | I] from the teacher velocity: (a v - a' I) / (a b' - a' b)
        den = (e(a) * teacher(inp, tau) - e(da) * inp) / e(a * db - da * b_)
        dxdt = SD * (ct * x_t / SD - (k / SD) * den) / st
    F, dF = jvp(f_of, (x_t / SD, tt), (ct * st * dxdt / SD, (ct * st).flatten()))
    Fm, dF = F.detach(), dF.detach()
    g = -(ct**2) * (SD * Fm - dxdt) - r * (ct * st * x_t + SD * dF)
    g = g / (g.norm(dim=1, keepdim=True) + c)
    lv = head(0.25 * torch.log(SD * torch.tan(tt)))  # FastGen: logvar on EDM's c_noise
    lam = 1 / (SD * torch.tan(tt)) if prior else 1.0
    return (lam * torch.exp(-lv) * (F - Fm - g).pow(2).mean(1) + lv).mean()


@pytest.mark.parametrize("sd_data", [0.5, 1.0, 2.9])
@pytest.mark.parametrize("prior", [True, False])
@pytest.mark.parametrize("step,r", [(0, 0.0), (10, 0.4), (500, 1.0)])
@pytest.mark.parametrize("kind", ["trig", "linear"])
@pytest.mark.parametrize("name", ["sct", "scd"])
def test_scm_matches_trigflow_transcription(name, kind, step, r, prior, sd_data):
    interp = Trig() if kind == "trig" else Linear()
    method, fm, teacher, x1, x0 = _setup(name, interp, sigma_data=sd_data, prior_weight=prior)
    params = [*fm.parameters(), *method.parameters()]
    torch.manual_seed(7)
    ours = _loss_grads(method.loss(fm, x1, step, x0=x0)[0], params)
    torch.manual_seed(7)
    tv = teacher.velocity if method.needs_teacher else None
    ref = scm_reference(fm.net, method.nets["logvar"], kind, x1, x0, r, tv, prior, sd_data=sd_data)
    _compare(ours, _loss_grads(ref, params))


# ---------------------------------------------------------------- AYF (AYF time, data at 0)
def ayf_reference(net, teacher, x1, x0, t_a, s_a, r, variant, c=0.1):
    x_t = e(1 - t_a) * x1 + e(t_a) * x0

    def F(x, t, s):  # AYF's F; f = x + (s - t) F
        return -net(x, 1 - t, 1 - s)

    def v_a(x, t):  # teacher velocity dx_t/dt_A
        return -teacher(x, 1 - t)

    one, zero = torch.ones_like(t_a), torch.zeros_like(t_a)
    if variant == "emd":  # revsic dfdt = (v_t - F) + r (s - t) jvp; FastGen opt_grad, poly_1.0
        v_t = v_a(x_t, t_a)
        Fv, dF = jvp(F, (x_t, t_a, s_a), (v_t, one, zero))
        tangent = (v_t - Fv.detach()) + r * e(s_a - t_a) * dF.detach()
        target = Fv + tangent / (tangent.norm(dim=1, keepdim=True) + c)
    else:  # AYF-LMD: R_A = df/ds - v(f, s) at the predicted point, F -> F - R_A^
        f, dfds = jvp(lambda s: x_t + e(s - t_a) * F(x_t, t_a, s), (s_a,), (one,))
        res = (dfds - v_a(f, s_a)).detach()
        Fv = F(x_t, t_a, s_a)
        target = Fv - res / (res.norm(dim=1, keepdim=True) + c)
    return (Fv - target.detach()).pow(2).sum(1).mean()


@pytest.mark.parametrize("step,r", [(0, 0.0), (10, 0.4), (500, 0.99)])
@pytest.mark.parametrize("variant", ["emd", "lmd"])
def test_ayf_matches_transcription(variant, step, r):
    method, fm, teacher, x1, x0 = _setup("ayf", Linear(), variant=variant)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(B, generator=g, dtype=F64), torch.rand(B, generator=g, dtype=F64)
    t_a, s_a = torch.maximum(a, b), torch.minimum(a, b)  # AYF: s < t, toward the data
    method.sample_times = lambda n, step=0, generator=None, like=None: (1 - t_a, 1 - s_a)
    params = list(fm.parameters())
    ours = _loss_grads(method.loss(fm, x1, step, x0=x0)[0], params)
    ref = ayf_reference(fm.net, teacher.velocity, x1, x0, t_a, s_a, r, variant)
    _compare(ours, _loss_grads(ref, params))


# ---------------------------------------------------------------- IMM (IMM time, data at 0)
def imm_alpha_sigma(kind, t):
    if kind == "fm":
        return 1 - t, t
    return torch.cos(math.pi * t / 2), torch.sin(math.pi * t / 2)


def imm_compute_r(kind, t_g, s_g, k=15, eta_max=160.0):
    al, si = imm_alpha_sigma(kind, t_g)
    eta = si / al - eta_max / 2**k  # compute_r, eta_min = 0
    r_g = eta / (1 + eta) if kind == "fm" else (2 / math.pi) * torch.atan(eta)
    return torch.maximum(s_g, r_g)


def imm_tau(kind, t, sd_data):
    """Our time of IMM's t (fm with the linear path, vp_cosine with trig): a / b = sd_data eta,
    i.e. sigma_EDM = 0.5 eta of the same SNR (eta = sigma / alpha, IMM's noise scaled by 0.5)."""
    al, si = imm_alpha_sigma(kind, t)
    y = sd_data * si / al
    if kind == "fm":
        return 1 / (1 + y)
    return (2 / math.pi) * torch.atan2(torch.ones_like(y), y)


def imm_reference(
    net, kind, x1, eps, t_g, s_g, sd_data, bandwidth, m=4, a=1, b=5.0, k=15, eta_max=160.0
):
    al, si = imm_alpha_sigma(kind, t_g)
    r_g = imm_compute_r(kind, t_g, s_g, k, eta_max)
    t, s, r = (z.repeat_interleave(m)[:, None] for z in (t_g, s_g, r_g))
    kd = 0.5 / sd_data
    x, noise = kd * x1, SD * eps
    (at, st), (ar, sr) = imm_alpha_sigma(kind, t), imm_alpha_sigma(kind, r)
    x_t, x_r = at * x + st * noise, ar * x + sr * noise

    def scale(t):  # x^IMM = alpha x_d + sigma sigma_d eps = (alpha kd / b(tau)) I_tau, same SNR
        tau = imm_tau(kind, t, sd_data)
        b_tau = tau if kind == "fm" else torch.sin(0.5 * math.pi * tau)
        return imm_alpha_sigma(kind, t)[0] * kd / b_tau

    def model(y, t, s):  # euler_fm in our frame: scale_s X_{tau_t,tau_s}(y / scale_t)
        tt, ts = imm_tau(kind, t[:, 0], sd_data), imm_tau(kind, s[:, 0], sd_data)
        xx = y / scale(t)
        return scale(s) * (xx + e(ts - tt) * net(xx, tt, ts))

    groups = t_g.shape[0]
    y_t = model(x_t, t, s).view(groups, m, -1)
    with torch.no_grad():
        y_r = model(x_r, r, s).view(groups, m, -1)
    lam = 2 * torch.log(al / si)
    dlam = 2 / (t_g * (1 - t_g)) if kind == "fm" else 2 * math.pi / torch.sin(math.pi * t_g)
    w_l = 0.5 * torch.sigmoid(b - lam) * dlam * al**a / (al**2 + si**2)
    c_out = t_g if bandwidth == "port" else (t_g - s_g).abs()  # stockeh euler_fm: -t sigma_d
    w_k = (1 / (c_out * SD))[:, None, None]
    guard = (1e-8 * scale(s_g))[:, None, None]  # the clamp (the diagonal's constant) in x1 units

    def kern(p, q):
        dist = torch.cdist(p, q, compute_mode="donot_use_mm_for_euclid_dist")
        return torch.exp(-w_k * torch.maximum(dist, guard) / y_t.shape[-1])

    mmd = (kern(y_t, y_t) + kern(y_r, y_r) - 2 * kern(y_t, y_r)).mean(dim=(1, 2))
    return torch.mean(w_l * mmd)


@pytest.mark.parametrize("bandwidth", ["port", "gap"])
@pytest.mark.parametrize("sd_data", [0.5, 1.0, 2.9])
@pytest.mark.parametrize("kind", ["fm", "vp_cosine"])
def test_imm_matches_transcription(kind, sd_data, bandwidth):
    """stockeh's loss (y_r from ``ema``: at set-up the EMA is the current weights)."""
    interp = Linear() if kind == "fm" else Trig()
    over = {"schedule": kind, "bandwidth": bandwidth}
    method, fm, _, x1, x0 = _setup("imm", interp, sigma_data=sd_data, **over)
    g = torch.Generator().manual_seed(3)
    t_g = 0.006 + 0.988 * torch.rand(B // 4, generator=g, dtype=F64)  # IMM: t ~ U(eps, T)
    s_g = 0.006 + (t_g - 0.006) * torch.rand(B // 4, generator=g, dtype=F64)  # s ~ U(eps, t)
    s_g[:2] = t_g[:2] - 1e-5  # r clipped to s
    times = [imm_tau(kind, z, sd_data) for z in (t_g, imm_compute_r(kind, t_g, s_g), s_g)]
    method.sample_times = lambda n, step=0, generator=None, like=None: times
    params = list(fm.parameters())
    ours = _loss_grads(method.loss(fm, x1, 0, x0=x0)[0], params)
    ref = imm_reference(fm.net, kind, x1, x0, t_g, s_g, sd_data, bandwidth)
    _compare(ours, _loss_grads(ref, params))


# ---------------------------------------------------------------- the time laws, draw by draw
def test_time_laws_are_the_published_ones_translated():
    like = torch.zeros((), dtype=F64)
    ayf = _setup("ayf", Linear())[0]
    torch.manual_seed(5)
    s, t = ayf.sample_times(4096, like=like)
    torch.manual_seed(5)
    n1, n2 = torch.randn(4096, dtype=F64), torch.randn(4096, dtype=F64)
    ta, sa = torch.sigmoid(-0.8 + 1.6 * -n1), torch.sigmoid(-0.8 + 1.6 * -n2)  # FastGen, -n ~ n
    torch.testing.assert_close(s, 1 - torch.maximum(ta, sa), rtol=0, atol=1e-14)
    torch.testing.assert_close(t, 1 - torch.minimum(ta, sa), rtol=0, atol=1e-14)
    for sd_data in (0.5, 1.0, 2.9):
        imm = _setup("imm", Linear(), sigma_data=sd_data)[0]
        torch.manual_seed(5)
        tau_t, tau_r, tau_s = imm.sample_times(4096, like=like)
        torch.manual_seed(5)
        u1, u2 = torch.rand(4096, dtype=F64), torch.rand(4096, dtype=F64)
        t_g = 0.006 + (0.994 - 0.006) * u1  # stockeh
        s_g = 0.006 + (t_g - 0.006) * u2
        r_g = imm_compute_r("fm", t_g, s_g)
        for ours, theirs in zip((tau_t, tau_r, tau_s), (t_g, r_g, s_g)):
            torch.testing.assert_close(ours, imm_tau("fm", theirs, sd_data), rtol=0, atol=1e-14)
        if sd_data == 1.0:  # the frame used before issue #20: tau = 1 - t
            torch.testing.assert_close(tau_t, 1 - t_g, rtol=0, atol=1e-14)
    # sCM's t_mid = 1.1: sigma_EDM = 0.5 tan 1.1 = 0.982, tau = 1 / (1 + sigma) on the linear path
    for kind, interp, mid in (("trig", Trig(), 0.5057), ("linear", Linear(), 0.5044)):
        scm = _setup("sct", interp)[0]
        torch.manual_seed(5)
        (tau,) = scm.sample_times(4096, like=like)
        torch.manual_seed(5)
        ref = torch.atan(torch.exp(torch.randn(4096, dtype=F64) * 1.4 - 1.0) / SD)
        ref = ref.clamp(0.004, math.pi / 2 - 1e-4)
        torch.testing.assert_close(scm.trig_frame(tau)["t_trig"], ref, rtol=0, atol=1e-12)
        tau_mid = float(consistency_grid(2, interp, SD * math.tan(1.1), scm.sigma_data)[1])
        assert abs(tau_mid - mid) < 5e-4, f"{kind}: t_mid = 1.1 is tau {tau_mid:.4f}"
