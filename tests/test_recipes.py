"""Recipe conformance: every registered method trains on the time law its authors' code draws, read
in that code's own variables, and pre-conditions its network output as that code does.

Each test transcribes the official sampler as the official code writes it (EDM sigma with
sigma_data = 0.5 for CM, iCT, CTM and PD/DSNO; TrigFlow t_T for sCM; IMM's (t, r, s); MeanFlow's
(t, r) with noise at t = 1; AYF's (t, s) with data at 0; shortcut's (t, d); the FMM papers' own
(s, t)), draws N >= 100k training times from OUR method (``sample_times``) on data of standard
deviation 0.5, maps them to the official variables with the maps written out below (not with the
project's translation functions, which are checked against them) and requires a two-sample KS
distance <= 0.01; discrete laws must also hit the official atoms to 1e-6. Where a method keeps a
documented deviation by default, the test runs it with the knob at the official setting
(``OFFICIAL``) and checks the default separately. Sources: docs/recipes.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf
from scipy.stats import ks_2samp

from benchmarks.training.nets import MLP
from methods import METHODS, build_config
from unify import FlowMap, FlowMapTeacher, Linear, Trig
from unify.edm import edm_sigma, edm_sigma_of_trigflow, time_of_edm_sigma, trigflow_time

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


# ---------------------------------------------------------------- the translation rule itself
@pytest.mark.parametrize("kind", ["linear", "trig"])
@pytest.mark.parametrize("sigma_data", [0.5, 2.9])
def test_translation_rule_states_and_inverses(kind, sigma_data):
    """k I_t / b(t) = y + sigma_EDM n with y = k x1, k = 0.5 / sigma_data, n = x0; and TrigFlow's
    x = cos t_T y + sin t_T 0.5 n is proportional to I_t with the same SNR."""
    interp = INTERPS[kind]
    g = torch.Generator().manual_seed(0)
    tau = 0.01 + 0.98 * torch.rand(1000, generator=g, dtype=F64)
    x1 = sigma_data * torch.randn(1000, 3, generator=g, dtype=F64)
    x0 = torch.randn(1000, 3, generator=g, dtype=F64)
    sig = edm_sigma(interp, tau, sigma_data)
    np.testing.assert_allclose(sig.numpy(), sigma_edm(kind, tau.numpy(), sigma_data), rtol=1e-12)
    torch.testing.assert_close(time_of_edm_sigma(interp, sig, sigma_data), tau, rtol=0, atol=1e-12)
    k = 0.5 / sigma_data
    a, b, _, _ = interp.coeffs(tau)
    it = a[:, None] * x0 + b[:, None] * x1
    torch.testing.assert_close(k * it / b[:, None], k * x1 + sig[:, None] * x0)
    t_trig = trigflow_time(sig)
    torch.testing.assert_close(edm_sigma_of_trigflow(t_trig), sig)
    x_tf = t_trig.cos()[:, None] * (k * x1) + t_trig.sin()[:, None] * (0.5 * x0)
    torch.testing.assert_close(x_tf / it, (x_tf / it)[:, :1].expand(-1, 3))  # proportional


# ---------------------------------------------------------------- flow matching (the teacher)
def test_fm_uniform_time():
    (t,) = draw(make("fm"))
    assert ks(t, np.random.default_rng(1).uniform(0, 1, N)) <= KS_MAX  # t ~ U[0, 1]


# ---------------------------------------------------------------- CM: consistency distillation
@pytest.mark.parametrize("kind", ["linear", "trig"])
def test_cd_adjacent_karras_pairs(kind):
    """openai/consistency_models ``consistency_losses``: indices = randint(0, N - 1), t =
    karras(indices), t2 = karras(indices + 1), N = 18."""
    s, s_next = draw(make("cd", kind))
    grid = karras(np.arange(18), 18)
    # our grid pins its ends to t = 0 and 1 (sigma = inf, 0): read as sigma_max, sigma_min
    i = atoms(np.clip(sigma_edm(kind, s), SMIN, SMAX), grid)
    j = atoms(np.clip(sigma_edm(kind, s_next), SMIN, SMAX), grid)
    assert (j == i + 1).all()
    ref = np.random.default_rng(1).integers(0, 17, N)
    assert ks(i, ref) <= KS_MAX


# ---------------------------------------------------------------- iCT
@pytest.mark.parametrize("kind", ["linear", "trig"])
@pytest.mark.parametrize("step", [0, 120_000, 399_999])
def test_ct_ict_index_law(kind, step):
    """iCT (arXiv 2310.14189, Sec. 3; no official code): N(k) = min(s0 2^floor(k/K'), s1) + 1,
    K' = floor(K / (log2 floor(s1/s0) + 1)), p(i) ~ erf((ln s_{i+1} - Pm)/(sqrt2 Ps)) - erf((ln s_i -
    Pm)/(sqrt2 Ps)) over ascending sigma, lambda = 1 / (s_{i+1} - s_i); s1 = 1280, K = 400k."""
    method = make("ct", kind, s1=1280, _steps=400_000)
    s, s_next, lam = draw(method, step=step)
    k_prime = 400_000 // (int(math.log2(1280 // 10)) + 1)
    n_pts = min(10 * 2 ** (step // k_prime), 1280) + 1
    asc = karras(np.arange(n_pts), n_pts)[::-1]  # ascending sigma_1 < ... < sigma_N
    i = atoms(np.clip(sigma_edm(kind, s_next), SMIN, SMAX), asc)  # the less noisy point
    j = atoms(np.clip(sigma_edm(kind, s), SMIN, SMAX), asc)
    assert (j == i + 1).all()
    cdf = erf((np.log(asc) + 1.1) / (math.sqrt(2) * 2.0))
    p = cdf[1:] - cdf[:-1]
    ref = np.random.default_rng(1).choice(n_pts - 1, N, p=p / p.sum())
    assert ks(i, ref) <= KS_MAX
    np.testing.assert_allclose(lam, 1 / (asc[j] - asc[i]), rtol=ATOL)


# ---------------------------------------------------------------- CTM
def ctm_official(batches: int, bs: int, rng) -> np.ndarray:
    """sony/ctm ``ctm_losses``: one n per batch (``get_num_heun_step``, 'weighted', p ~ n,
    n in 1..17), indices ~ U{0..N-1-n} (``UniformSampler.sample_t``), t_dt index = indices + n,
    s index ~ randint(indices + n, N) (``sample_s``, 'uniform'); N = 18."""
    p = np.arange(1, 18) / np.arange(1, 18).sum()
    n = np.repeat(rng.choice(np.arange(1, 18), size=batches, p=p), bs)
    i_t = np.floor(rng.uniform(size=n.size) * (18 - n)).astype(int)  # choice(18 - n): uniform
    return np.stack([i_t, i_t + n, rng.integers(i_t + n, 18)], 1)


@pytest.mark.parametrize("kind", ["linear", "trig"])
def test_ctm_indices_and_dsm_law(kind):
    """The per-sample law (each sample's n marginally p ~ n) at N draws with ``heun_n = "sample"``;
    the default draws one n per batch, as sony/ctm."""
    grid = karras(np.arange(18), 18)
    method = make("ctm", kind)
    for b in range(20):
        s, m, u = draw(method, 64, seed=b)
        gap = atoms(np.clip(sigma_edm(kind, m), SMIN, SMAX), grid) - atoms(
            np.clip(sigma_edm(kind, s), SMIN, SMAX), grid
        )
        assert (gap == gap[0]).all()  # one n per batch
    s, m, u = draw(make("ctm", kind, heun_n="sample"))
    ours = np.stack([atoms(np.clip(sigma_edm(kind, z), SMIN, SMAX), grid) for z in (s, m, u)], 1)
    ref = ctm_official(N, 1, np.random.default_rng(1))
    for col in range(3):
        assert ks(ours[:, col], ref[:, col]) <= KS_MAX, f"index {col}"
    code = lambda z: (z[:, 0] * 18 + z[:, 1]) * 18 + z[:, 2]  # noqa: E731 (the joint law)
    assert ks(code(ours), code(ref)) <= KS_MAX
    # DSM: HalfLogNormalHalfUniformSampler: bs // 2 lognormal(-1.2, 1.2), the rest Karras(U[0, 0.7])
    g = torch.Generator().manual_seed(0)
    t = method.dsm_times(N, generator=g, like=LIKE).numpy()
    rng = np.random.default_rng(1)
    half = np.exp(-1.2 + 1.2 * rng.standard_normal(N // 2))
    frac = rng.uniform(0, 0.7, N - N // 2)
    ref_sigma = np.concatenate(
        [half, (SMAX ** (1 / RHO) + frac * (SMIN ** (1 / RHO) - SMAX ** (1 / RHO))) ** RHO]
    )
    assert ks(sigma_edm(kind, t), ref_sigma) <= KS_MAX


def test_ctm_dsm_term_is_edm_weighted_denoising_loss():
    """``get_DSM_loss``: karras_weight (sigma^2 + sd^2) / (sigma sd)^2 times mean_flat((D - x)^2),
    D the model's denoiser at (sigma, sigma) in EDM units, x_sigma = x + sigma n."""
    for kind in ("linear", "trig"):
        method = make("ctm", kind)
        torch.manual_seed(0)
        fm = FlowMap(MLP(3, hidden=16, depth=1)).double()
        g = torch.Generator().manual_seed(2)
        y = 0.5 * torch.randn(64, 3, generator=g, dtype=F64)  # data, std 0.5 (x1 = y)
        n = torch.randn(64, 3, generator=g, dtype=F64)
        t = 0.02 + 0.96 * torch.rand(64, generator=g, dtype=F64)
        sig = torch.as_tensor(sigma_edm(kind, t.numpy()))
        ours = method.dsm(fm, y, n, t)
        x_sig = y + sig[:, None] * n  # EDM state; our I_t = b x_sigma at sigma_data 0.5
        b = t if kind == "linear" else torch.sin(0.5 * math.pi * t)
        it = b[:, None] * x_sig
        den = method.interpolant.denoise(it, fm.velocity(it, t), t)
        w = (sig**2 + 0.25) / (sig * 0.5) ** 2
        ref = w * (den - y).pow(2).mean(1)
        torch.testing.assert_close(ours, ref, rtol=ATOL, atol=0)


def test_ctm_adaptive_weight_is_the_last_layer_gradient_ratio():
    """``calculate_adaptive_weight``: |grad_W L1| / (|grad_W L2| + 1e-4), clamped to [0, 1e4],
    W the last layer's weight; the loss is L_CTM + w L_DSM (denoising_weight = 1)."""
    from methods.ctm import adaptive_weight

    torch.manual_seed(0)
    net = MLP(3, hidden=16, depth=1).double()
    x = torch.randn(8, 3, dtype=F64)
    z = torch.zeros(8, dtype=F64)
    l1, l2 = net(x, z, z).pow(2).mean(), (3 * net(x, z, z)).abs().mean()
    last = [p for p in net.parameters() if p.ndim >= 2][-1]
    g1 = torch.autograd.grad(l1, last, retain_graph=True)[0]
    g2 = torch.autograd.grad(l2, last, retain_graph=True)[0]
    ref = torch.clamp(g1.norm() / (g2.norm() + 1e-4), 0.0, 1e4)
    torch.testing.assert_close(adaptive_weight(l1, l2, last), ref)


# ---------------------------------------------------------------- PD and DSNO (cosine VP time)
def t_pd(kind: str, tau, sigma_data: float = 0.5) -> np.ndarray:
    """PD's cosine-VP time of our tau: sigma / alpha = tan(pi t_PD / 2) = sigma_EDM."""
    return (2 / np.pi) * np.arctan(sigma_edm(kind, tau, sigma_data))


@pytest.mark.parametrize("kind", ["linear", "trig"])
@pytest.mark.parametrize("step", [0, 999])
def test_pd_uniform_cosine_grid(kind, step):
    """google-research ``diffusion_distillation/dpm.py`` ``training_losses`` (discrete time): i ~
    U{0..N-1}, t = (i + 1) / N, t' = t - 0.5 / N, t'' = t - 1 / N on the cosine schedule."""
    method = make("pd", kind)
    n_steps = method.n_steps(step)
    s, mid, t = draw(method, step=step)
    i = atoms(t_pd(kind, s), np.arange(1, n_steps + 1) / n_steps)
    atoms(t_pd(kind, mid), (np.arange(n_steps) + 0.5) / n_steps)
    atoms(t_pd(kind, t), np.arange(n_steps) / n_steps)
    assert ks(i, np.random.default_rng(1).integers(0, n_steps, N)) <= KS_MAX


@pytest.mark.parametrize("kind", ["linear", "trig"])
@pytest.mark.parametrize("sigma_data", [0.5, 2.0])
def test_pd_truncated_snr_loss(kind, sigma_data):
    """L = max(SNR_t, 1) |x_hat - x_tilde|^2 in PD's units (x = k x1), x_tilde = (z_t'' - (s_t'' /
    s_t) z_t) / (a_t'' - (s_t'' / s_t) a_t), x_hat from the student's z_t'' the same way: our
    w |X - X_target|^2 must be the same loss / k^2."""
    method = make("pd", kind, sigma_data)
    k = 0.5 / sigma_data
    g = torch.Generator().manual_seed(0)
    s, _, t = method.sample_times(256, 0, generator=g, like=LIKE)
    keep = s > 0
    s, t = s[keep], t[keep]
    xs, pred, tgt = (torch.randn(len(s), 3, generator=g, dtype=F64) for _ in range(3))
    ours = method.weight(s, t) * (pred - tgt).pow(2).mean(1)
    tp_s = torch.as_tensor(t_pd(kind, s.numpy(), sigma_data))
    tp_t = torch.as_tensor(t_pd(kind, t.numpy(), sigma_data))
    al_s, sg_s = torch.cos(0.5 * math.pi * tp_s), torch.sin(0.5 * math.pi * tp_s)
    al_t, sg_t = torch.cos(0.5 * math.pi * tp_t), torch.sin(0.5 * math.pi * tp_t)
    a_s, b_s, _, _ = method.interpolant.coeffs(s)
    a_t, b_t, _, _ = method.interpolant.coeffs(t)
    # PD state z = alpha x + sigma eps = (alpha k / b) I (same SNR), for z_t and z_t''
    zs, zp, zt = (
        (al_s * k / b_s)[:, None] * xs,
        (al_t * k / b_t)[:, None] * pred,
        (al_t * k / b_t)[:, None] * tgt,
    )
    ratio = (sg_t / sg_s)[:, None]
    x_hat = (zp - ratio * zs) / (al_t[:, None] - ratio * al_s[:, None])
    x_tld = (zt - ratio * zs) / (al_t[:, None] - ratio * al_s[:, None])
    snr = (al_s / sg_s) ** 2
    ref = torch.clamp(snr, min=1.0) * (x_hat - x_tld).pow(2).mean(1)
    torch.testing.assert_close(ours * k**2, ref, rtol=ATOL, atol=0)


@pytest.mark.parametrize("kind", ["linear", "trig"])
def test_no_dsno_quad_times_and_snr_weights(kind):
    """DSNO ``cifar10-dsno-t4.yaml`` 'quad': t_PD = i^2 / 256, i in {12, 8, 4, 0}; weights
    clamp(sqrt(SNR), 1, 1e4) = clamp(cot(pi t_PD / 2), 1, 1e4)."""
    method = make("no", kind, weights="snr")
    s, t = draw(method, 3)
    official = np.array([12, 8, 4, 0]) ** 2 / 256
    assert (s == 0).all()
    np.testing.assert_allclose(t_pd(kind, t), np.tile(official, 3), atol=ATOL)
    with np.errstate(divide="ignore"):
        ref = np.clip(1 / np.tan(0.5 * np.pi * official), 1, 1e4)
    np.testing.assert_allclose(method._weights(LIKE).numpy(), ref, rtol=ATOL)


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
    2^(k - K + 1) doubling over K = 6 stages (docs/recipes.md, unconfirmed)."""
    method = make("pfmm", _steps=600)
    for stage in range(6):
        s, t = draw(method, step=stage * 100)
        delta = 2.0 ** (stage - 5)
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
