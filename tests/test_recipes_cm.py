"""Recipe conformance of the consistency-model family, in EDM sigma with sigma_data = 0.5: the
translation rule itself, flow matching (the teacher), CM's consistency distillation, iCT, CTM
(indices, DSM term, adaptive weight), and PD / DSNO on the cosine VP time. How the laws are
compared: ``tests/recipes_helpers.py``; sources: docs/recipes.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from recipes_helpers import (
    ATOL,
    F64,
    INTERPS,
    KS_MAX,
    LIKE,
    RHO,
    SMAX,
    SMIN,
    N,
    atoms,
    draw,
    karras,
    ks,
    make,
    sigma_edm,
)
from scipy.special import erf

from benchmarks.training.nets import MLP
from unify import FlowMap
from unify.edm import edm_sigma, edm_sigma_of_trigflow, time_of_edm_sigma, trigflow_time


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
