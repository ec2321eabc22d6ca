"""Recipe conformance of the flow-map family, each in its official variables: sCM (TrigFlow
time, state and head), AYF, IMM (group times, kernel, weight), MeanFlow, shortcut models, the FMM
family (FMM, LMD/EMD, progressive FMM, self-distillation), and the coverage of the 19 methods.
How the laws are compared: ``tests/recipes_helpers.py``; sources: docs/recipes.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from recipes_helpers import ATOL, F64, KS_MAX, LIKE, N, draw, ks, make, sigma_edm

from benchmarks.training.nets import MLP
from methods import METHODS
from unify import FlowMap


# ---------------------------------------------------------------- sCM (TrigFlow time)
def scm_official(n: int, rng) -> np.ndarray:
    """edm2_sCM / FastGen ``sample_t`` 'lognormal': t_T = arctan(exp(Pm + Ps n) / sigma_d), Pm = -1.0,
    Ps = 1.4, sigma_d = 0.5 (FastGen clamps to [min_t, max_t])."""
    sigma = np.exp(-1.0 + 1.4 * rng.standard_normal(n))
    return np.clip(np.arctan(sigma / 0.5), 0.004, math.pi / 2 - 1e-4)


@pytest.mark.parametrize("name", ["sct", "scd"])
@pytest.mark.parametrize("kind", ["linear", "trig"])
def test_scm_time_law_in_trigflow_time(name, kind):
    (tau,) = draw(make(name, kind))
    t_ours = np.arctan(sigma_edm(kind, tau) / 0.5)  # tan t_T = sigma_EDM / sigma_d
    assert ks(t_ours, scm_official(N, np.random.default_rng(1))) <= KS_MAX


@pytest.mark.parametrize("kind", ["linear", "trig"])
@pytest.mark.parametrize("sigma_data", [0.5, 2.9])
def test_scm_trigflow_state_and_head(kind, sigma_data):
    """TrigFlow (edm2_sCM ``networks_trigflow_ddpmpp.py``, FastGen ``sCM.py``): x = cos t_T x_d +
    sin t_T z with x_d = k x1, z = sigma_d x0; dx/dt_T = cos t_T z - sin t_T x_d (sCT); the
    consistency function f = cos t_T x - sin t_T sigma_d F_theta is our map to the data end in
    EDM units, k X_{tau,1}(I_tau)."""
    method = make("sct", kind, sigma_data)
    k, sd = 0.5 / sigma_data, 0.5
    torch.manual_seed(0)
    fm = FlowMap(MLP(3, hidden=16, depth=1)).double()
    g = torch.Generator().manual_seed(0)
    (tau,) = method.sample_times(512, 0, generator=g, like=LIKE)
    x1 = sigma_data * torch.randn(512, 3, generator=g, dtype=F64)
    x0 = torch.randn(512, 3, generator=g, dtype=F64)
    path = method.interpolant.sample(x0, x1, tau)
    fr = method.trig_frame(tau)
    t_trig = fr["t_trig"]
    np.testing.assert_allclose(
        t_trig.numpy(), np.arctan(sigma_edm(kind, tau.numpy(), sigma_data) / sd), rtol=1e-10
    )
    c, s_ = t_trig.cos()[:, None], t_trig.sin()[:, None]
    x_tf = c * (k * x1) + s_ * (sd * x0)
    torch.testing.assert_close(fr["c"][:, None] * path.xt, x_tf, rtol=ATOL, atol=ATOL)
    dx = method.trigflow_velocity(path.xt, path.vt, fr)
    torch.testing.assert_close(dx, c * (sd * x0) - s_ * (k * x1), rtol=ATOL, atol=ATOL)
    v = fm.avg_velocity(path.xt, tau, torch.ones_like(tau))
    F = method.trigflow_head(path.xt, v, fr)
    f = c * x_tf - s_ * sd * F
    torch.testing.assert_close(f, k * fm(path.xt, tau, torch.ones_like(tau)), rtol=ATOL, atol=ATOL)


def test_scm_old_frame_is_sigma_data_one():
    """The frame used before the rule (tan t_T = a / b) is sigma_data = 1: on the trig path then
    t_T = pi (1 - tau) / 2 exactly."""
    method = make("sct", "trig", 1.0)
    tau = torch.linspace(0.01, 0.99, 99, dtype=F64)
    torch.testing.assert_close(method.trig_frame(tau)["t_trig"], 0.5 * math.pi * (1 - tau))


# ---------------------------------------------------------------- AYF
def test_ayf_pairs_fastgen_law():
    """AYF time t_A (data at 0): the AYF paper's pair law is not available here; FastGen's AYF-style
    flow-map distillation (``configs/experiments/WanT2V/config_mf.py``: logitnormal, p_mean -0.8,
    p_std 1.6, flow_matching_ratio 0) draws two i.i.d. logit-normal times, sorted (t > s)."""
    s, t = draw(make("ayf"))
    rng = np.random.default_rng(1)
    a, b = (1 / (1 + np.exp(-(-0.8 + 1.6 * rng.standard_normal(N)))) for _ in range(2))
    t_a, s_a = np.maximum(a, b), np.minimum(a, b)
    assert ks(1 - s, t_a) <= KS_MAX and ks(1 - t, s_a) <= KS_MAX  # our start s = 1 - t_A
    assert ks(t - s, t_a - s_a) <= KS_MAX
    assert np.mean(t - s > 0.8) > 0.02  # the one-step map is trained (0.07 % under (0.8, 1.0))


# ---------------------------------------------------------------- IMM
def imm_official(groups: int, rng, k: int = 15, eta_max: float = 160.0):
    """stockeh/imm ``training/loss.py`` (``fm`` schedule: alpha = 1 - t, sigma = t): t ~ U(eps, T),
    s ~ U(eps, t), r = max(s, eta^-1(eta_t - (eta_max - eta_min) / 2^k)), eta = t / (1 - t)."""
    eps, big_t = 0.006, 0.994
    t = rng.uniform(size=groups) * (big_t - eps) + eps
    s = rng.uniform(size=groups) * (t - eps) + eps
    eta = t / (1 - t) - eta_max / 2**k
    return t, np.maximum(s, eta / (1 + eta)), s


def t_imm(kind: str, tau, sigma_data: float = 0.5) -> np.ndarray:
    """IMM time of our tau: x = alpha x_d + sigma sigma_d eps, so eta = sigma / alpha = sigma_EDM /
    sigma_d; ``fm``: t = eta / (1 + eta)."""
    eta = sigma_edm(kind, tau, sigma_data) / 0.5
    return eta / (1 + eta)


@pytest.mark.parametrize("kind", ["linear", "trig"])
def test_imm_group_times(kind):
    tau_t, tau_r, tau_s = draw(make("imm", kind))
    ref = imm_official(N, np.random.default_rng(1))
    for ours, theirs, name in zip((tau_t, tau_r, tau_s), ref, "trs"):
        assert ks(t_imm(kind, ours), theirs) <= KS_MAX, name


@pytest.mark.parametrize("kind", ["linear", "trig"])
@pytest.mark.parametrize("sigma_data", [0.5, 2.9])
def test_imm_kernel_and_weight_in_imm_units(kind, sigma_data):
    """stockeh ``kernel_weight`` (euler_fm: c_out = -t sigma_d, w = 1/|c_out|) on distances of the
    particles in IMM units / D, and ``loss_weight`` 1/2 sigmoid(b - lambda) (-dlambda/dt) alpha^a /
    (alpha^2 + sigma^2), lambda = 2 ln(alpha / sigma), fm: -dlambda/dt = 2 / (t (1 - t))."""
    method = make("imm", kind, sigma_data)
    g = torch.Generator().manual_seed(0)
    tau_t, _, tau_s = method.sample_times(64, 0, generator=g, like=LIKE)
    x1 = sigma_data * torch.randn(64, 5, generator=g, dtype=F64)
    x0 = torch.randn(64, 5, generator=g, dtype=F64)
    t = torch.as_tensor(t_imm(kind, tau_t.numpy(), sigma_data))
    s = torch.as_tensor(t_imm(kind, tau_s.numpy(), sigma_data))
    k = 0.5 / sigma_data
    # the state: x^IMM_s = alpha_s x_d + sigma_s sigma_d eps is scale_s * I_{tau_s}
    i_s = method.interpolant.sample(x0, x1, tau_s).xt
    x_imm = (1 - s)[:, None] * (k * x1) + s[:, None] * 0.5 * x0
    scale = method.imm_scale(tau_s)
    torch.testing.assert_close(scale[:, None] * i_s, x_imm, rtol=ATOL, atol=ATOL)
    y, y2 = torch.randn(64, 5, generator=g, dtype=F64), torch.randn(64, 5, generator=g, dtype=F64)
    ours = torch.exp(-method.bandwidth(tau_t, tau_s, 5) * (y - y2).norm(dim=1))
    w_k = 1 / (t * 0.5)
    ref = torch.exp(-w_k * (scale[:, None] * (y - y2)).norm(dim=1) / 5)
    torch.testing.assert_close(ours, ref, rtol=ATOL, atol=0)
    lam = 2 * torch.log((1 - t) / t)
    ref_w = 0.5 * torch.sigmoid(5.0 - lam) * 2 / (t * (1 - t)) * (1 - t) / ((1 - t) ** 2 + t**2)
    torch.testing.assert_close(method.weight(tau_t), ref_w, rtol=ATOL, atol=0)


# ---------------------------------------------------------------- MeanFlow
def test_meanflow_v0_law():
    """py-meanflow ``sample_two_timesteps_t_r_v0`` (CIFAR-10: P_mean -2.0, P_std 2.0, ratio 0.75):
    t, r logit-normal i.i.d., t = max, r = min, then r = t where rand < 1 - ratio; noise at t = 1,
    our s = 1 - t_MF (start), our t = 1 - r_MF (end)."""
    s, t = draw(make("meanflow"))
    rng = np.random.default_rng(1)
    tt, rr = (1 / (1 + np.exp(-(-2.0 + 2.0 * rng.standard_normal(N)))) for _ in range(2))
    tt, rr = np.maximum(tt, rr), np.minimum(tt, rr)
    rr = np.where(rng.uniform(size=N) < 0.25, tt, rr)
    assert ks(1 - s, tt) <= KS_MAX and ks(1 - t, rr) <= KS_MAX and ks(t - s, tt - rr) <= KS_MAX


# ---------------------------------------------------------------- shortcut models
def test_shortcut_levels_and_grid():
    """kvfrans/shortcut-models ``targets_shortcut.py``: bootstrap_batchsize = B // 8, dt_base =
    repeat(log2(M) - 1 - arange(log2 M), bs // log2 M) (pad: dt_base 0), dt = 1 / 2^dt_base = 2d,
    t = randint(0, 2^dt_base) / 2^dt_base; the flow-matching part t = randint(0, M) / M, d = 1/M."""
    method = make("shortcut")
    b, m = 448 * 1800, 128  # B // 8 = 7 * 14400: every level equally often, no padding
    fm_t, sc_t, d = draw(method, b)
    rng = np.random.default_rng(1)
    assert ks(fm_t, rng.integers(0, m, fm_t.size) / m) <= KS_MAX
    base = np.repeat(6 - np.arange(7), 14400)
    sections = 2.0**base
    ref_t = np.floor(rng.uniform(size=base.size) * sections) / sections
    ref_2d = 1 / sections
    assert ks(2 * d, ref_2d) <= KS_MAX
    code = lambda t, dd: np.round(np.log2(dd)) * 1000 + t * 128  # noqa: E731 (joint law)
    assert ks(code(sc_t, 2 * d), code(ref_t, ref_2d)) <= KS_MAX


# ---------------------------------------------------------------- FMM family (their own variables)
@pytest.mark.parametrize(
    "name,over", [("fmm", {}), ("lmd", {"order": "both"}), ("emd", {"order": "both"})]
)
def test_fmm_unit_square_both_orders(name, over):
    """Flow map matching (arXiv 2406.07507, Sec. 3-4): (s, t) ~ U[0, 1]^2, both orders (the paper's
    code); lmd / emd sort by default (``order = "forward"``, docs/recipes.md)."""
    s, t = draw(make(name, **over))
    rng = np.random.default_rng(1)
    rs, rt = rng.uniform(size=N), rng.uniform(size=N)
    assert ks(s, rs) <= KS_MAX and ks(t, rt) <= KS_MAX and ks(t - s, rt - rs) <= KS_MAX
    if over:
        s, t = draw(make(name))
        assert (s <= t).all() and ks(t - s, np.abs(rt - rs)) <= KS_MAX


def test_pfmm_stage_band():
    """Progressive FMM (arXiv 2406.07507, Sec. 3.4): the public code's pair law is not in the
    store; ours, documented: gap ~ U[0, delta_k], s ~ U[0, 1 - gap], t = s + gap, delta_k =
    2^(k - K + 1) doubling over K stages (default 2, chosen by a sweep; docs/recipes.md)."""
    for k in (2, 6):
        _pfmm_stages(make("pfmm", _steps=600, stages=k), k)


def _pfmm_stages(method, k: int) -> None:
    assert method.cfg.stages == k
    for stage in range(k):
        s, t = draw(method, step=stage * 600 // k)
        delta = 2.0 ** (stage - k + 1)
        rng = np.random.default_rng(1)
        gap = rng.uniform(0, delta, N)
        rs = rng.uniform(size=N) * (1 - gap)
        assert (t - s <= delta + 1e-12).all() and (s >= 0).all() and (t <= 1 + 1e-12).all()
        assert ks(t - s, gap) <= KS_MAX and ks(s, rs) <= KS_MAX


@pytest.mark.parametrize("name", ["lsd", "esd", "psd"])
def test_self_distillation_split(name):
    """Keely-Ai/flow-maps ``losses.py`` / ``loss_args.py`` (CIFAR-10): the first int(0.75 B) of the
    batch on the diagonal, t ~ U[0, 1]; the rest (s, t) ~ U[0, 1]^2 independent (both orders);
    PSD-U: h ~ U[0, 1]."""
    out = draw(make(name), 512)
    diag, s, t = out[:3]
    assert len(diag) == 384 and len(s) == len(t) == 128
    big = draw(make(name), 512 * 800)
    rng = np.random.default_rng(1)
    assert ks(big[0], rng.uniform(size=big[0].size)) <= KS_MAX
    rs, rt = rng.uniform(size=big[1].size), rng.uniform(size=big[1].size)
    assert (
        ks(big[1], rs) <= KS_MAX
        and ks(big[2], rt) <= KS_MAX
        and ks(big[2] - big[1], rt - rs) <= KS_MAX
    )
    if name == "psd":
        assert ks(big[3], rng.uniform(size=big[3].size)) <= KS_MAX


# ---------------------------------------------------------------- coverage
def test_every_method_here_exposes_its_time_law():
    """The 19 methods above are registered and expose ``sample_times`` (methods added later carry
    their own recipe tests)."""
    tested = {
        "fm", "cd", "ct", "ctm", "pd", "no", "sct", "scd", "ayf", "imm", "meanflow", "shortcut",
        "fmm", "lmd", "emd", "pfmm", "lsd", "esd", "psd",
    }  # fmt: skip
    assert tested <= set(METHODS), sorted(tested - set(METHODS))
    for name in tested:
        assert callable(getattr(METHODS[name], "sample_times", None)), name


def test_imm_target_is_online_by_default():
    """Our deviation from the stockeh port (docs/recipes.md, measured): y_r from the online weights
    under no_grad, no EMA network; ``target="ema"`` builds the port's EMA copy."""
    assert make("imm").cfg.target == "online" and "target" not in make("imm").nets
    assert "target" in make("imm", target="ema").nets
