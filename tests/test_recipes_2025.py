"""Recipe conformance of TVM, AlphaFlow, SoFlow and CMT: their training times, read in the official
code's own variables, follow the official samplers.

Each official sampler is transcribed as its code writes it (lumalabs/tvm ``training/loss.py:
sample_ts``; snap-research/alphaflow ``src/training/loss.py:sample_traj_params, get_ratio``;
zlab-princeton/SoFlow ``train.py`` / ``models.py:get_l``, code time t_c = 1 - tau with data at 0;
sony/cmt ``training/loss.py:DPMSolverLoss`` with ``get_time_steps('logSNR')`` in EDM sigma). N =
200k times are drawn from OUR ``sample_times`` (data of standard deviation 0.5 where sigma_data
matters), mapped to the official variables by hand, and each coordinate must be within a two-sample
KS distance of 0.01 of the official draws; CMT's deterministic grid must hit the official sigmas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torch import nn

from methods import METHODS, build_config
from unify import ExactMapTeacher, FlowMap, Linear, Trig
from unify.exact import GaussianTarget

N = 200_000
KS_MAX = 0.01
F64 = torch.float64
LIKE = torch.zeros((), dtype=F64)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 2)

    def forward(self, x, s, t):
        return self.f(torch.cat([x, s[:, None], t[:, None]], 1))


def make(name: str, interp=None, steps: int = 1000, **over):
    cls = METHODS[name]
    interp = interp or Linear()
    target = GaussianTarget(torch.zeros(2), 0.5 * torch.ones(2))  # data of std 0.5
    teacher = ExactMapTeacher(target, interp) if cls.needs_teacher else None
    method = cls(build_config(cls, over), interp, teacher)
    method.setup(FlowMap(Net()).double(), steps)
    return method


def draw(method, n: int = N, step: int = 0, seed: int = 0) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return [z.numpy() for z in method.sample_times(n, step, generator=g, like=LIKE)]


def ks(a, b) -> float:
    return float(ks_2samp(np.asarray(a, np.float64), np.asarray(b, np.float64)).statistic)


# ---------------------------------------------------------------- TVM
def tvm_official(n: int, g: torch.Generator, s_mean=-0.4, s_std=1.0, gap_mean=-0.8, gap_std=1.0):
    """lumalabs/tvm ``TVMLoss.sample_ts``: (t, s, s_prime) = (start, end, FM time) in t_c."""
    log_len = torch.randn(n, generator=g, dtype=F64) * gap_std + gap_mean
    len_ = log_len.sigmoid()
    maxs = 1 - len_
    max_logns = torch.log(maxs / (1 - maxs))
    dist = torch.distributions.Normal(torch.full_like(len_, s_mean), torch.full_like(len_, s_std))
    low = dist.cdf(torch.full_like(len_, -np.inf))
    cdf = torch.rand(n, generator=g, dtype=F64) * (dist.cdf(max_logns) - low) + low
    s = dist.icdf(cdf).sigmoid()
    t = (s + len_).clamp(max=1)
    s_prime = (torch.randn(n, generator=g, dtype=F64) * s_std + s_mean).sigmoid()
    return t.numpy(), s.numpy(), s_prime.numpy()


def test_tvm_time_law():
    s, t, r = draw(make("tvm"))
    t_c, s_c, s_prime = 1 - s, 1 - t, 1 - r  # start, end, FM time in code time
    ref = tvm_official(N, torch.Generator().manual_seed(1))
    for ours, off in zip((t_c, s_c, s_prime, t_c - s_c), (*ref, ref[0] - ref[1])):
        assert ks(ours, off) <= KS_MAX
    assert (s >= 0).all() and (t <= 1).all() and (s <= t).all()


# ---------------------------------------------------------------- AlphaFlow
def alpha_official(cur_step, init=1.0, end=0.0, k0=0, k1=400_000, gamma=25.0, clamp=0.005):
    """snap-research/alphaflow ``AlphaFlowLoss.get_ratio``, the sigmoid scheduler."""
    if cur_step < k0:
        ratio = init
    elif cur_step > k1:
        ratio = end
    else:
        middle = k0 + (k1 - k0) / 2
        progress = (cur_step - middle) / (k1 - k0)
        ratio = init + (end - init) * (1 / (1 + math.exp(-progress * gamma)))
    if ratio < clamp:
        return 0.0
    return 1.0 if ratio > 1 - clamp else ratio


def alphaflow_official(n: int, rng, ratio_fm=0.5, loc=-0.4, scale=1.0, eps=0.0):
    """``sample_traj_params``: FM part first (t = r), then ``minmax`` logit-normal pairs."""

    def lnorm(k):  # sample_logit_norm_time
        return 1 / (1 + np.exp(-(rng.standard_normal(k) * scale + loc))) * (1 - eps)

    n_fm = int(n * ratio_fm)
    t_fm = lnorm(n_fm)
    t1, t2 = lnorm(n - n_fm), lnorm(n - n_fm)
    return t_fm, np.maximum(t1, t2), np.minimum(t1, t2)


def test_alphaflow_time_law_and_curriculum():
    method = make("alphaflow", steps=400_000)
    s, t = draw(method)
    t_fm, t_mf, r_mf = alphaflow_official(N, np.random.default_rng(1))
    n_fm = len(t_fm)
    assert np.array_equal(s[:n_fm], t[:n_fm]) and (s[n_fm:] < t[n_fm:]).all()
    assert ks(1 - s[:n_fm], t_fm) <= KS_MAX  # FM times, t_c = 1 - tau
    assert ks(1 - s[n_fm:], t_mf) <= KS_MAX and ks(1 - t[n_fm:], r_mf) <= KS_MAX
    steps = [0, 1, 100_000, 150_000, 180_000, 200_000, 215_000, 250_000, 399_999, 400_000]
    assert [method.alpha(k) for k in steps] == pytest.approx([alpha_official(k) for k in steps])


# ---------------------------------------------------------------- SoFlow
CONFIGS = {  # official (time_mean, time_std) -> our knobs (means flip sign: tau = 1 - t_c)
    "cifar": ([-0.9, -4.0, -0.9], [1.6, 1.6, 1.6], {}),
    "imagenet": (
        [-0.2, -1.0, 0.2],
        [1.0, 0.8, 0.8],
        dict(
            fm_mean=0.2,
            fm_std=1.0,
            end_mean=1.0,
            end_std=0.8,
            start_mean=-0.2,
            start_std=0.8,
            r_init=0.1,
            r_end=0.002,
        ),
    ),
}


def soflow_official(n, rng, mean, std, r):
    """``train.py``: FM t ~ sigmoid(N(mu0, s0)); consistency t = max(sigmoid(N(mu2, s2)), 1e-4)
    (start), s = min(sigmoid(N(mu1, s1)), t - 1e-4) (end); ``get_l``: l = t + (s - t) r,
    l = min(l, t - 1e-4)."""

    def sig(z):
        return 1 / (1 + np.exp(-z))

    t_fm = sig(rng.standard_normal(n) * std[0] + mean[0])
    t = np.maximum(sig(rng.standard_normal(n) * std[2] + mean[2]), 1e-4)
    s = np.minimum(sig(rng.standard_normal(n) * std[1] + mean[1]), t - 1e-4)
    l_ = np.minimum(t + (s - t) * r, t - 1e-4)
    return t_fm, t, s, l_


@pytest.mark.parametrize("config", ["cifar", "imagenet"])
def test_soflow_time_law(config):
    mean, std, over = CONFIGS[config]
    method = make("soflow", steps=1000, fm_frac=0.5, **over)
    k, total = 300, 1000  # r(k, K) = r_init (r_end / r_init)^(k / K)
    c = method.cfg
    r = c.r_init * (c.r_end / c.r_init) ** (k / total)
    assert method.ratio(k) == pytest.approx(r, rel=1e-12)
    r_fm, s, t, l_ = draw(method, step=k)
    off = soflow_official(N, np.random.default_rng(1), mean, std, r)
    assert len(r_fm) == N // 2 and ks(1 - r_fm, off[0]) <= KS_MAX
    for ours, ref in zip((1 - s, 1 - t, 1 - l_), off[1:]):
        assert ks(ours, ref) <= KS_MAX
    assert (s < l_).all() and (l_ <= t + 1e-12).all()


# ---------------------------------------------------------------- CMT (a deterministic grid)
@pytest.mark.parametrize("kind", ["linear", "trig"])
def test_cmt_grid_is_the_official_logsnr_grid(kind):
    interp = Linear() if kind == "linear" else Trig()
    method = make("ct+cmt", interp, steps=1000)
    nfe, per = 16, 8
    s, t = draw(method, n=nfe * per, step=0)
    lam_t, lam_0 = -math.log(80.0), -math.log(0.002)  # get_time_steps('logSNR', 80, 0.002, 16)
    official = np.exp(-(np.linspace(0, 1, nfe + 1) * (lam_0 - lam_t) + lam_t))[:-1]
    with np.errstate(divide="ignore"):  # sigma_EDM = (a / b) * 0.5 / sigma_data, sigma_data = 0.5
        sigma = (1 - s) / s if kind == "linear" else 1 / np.tan(0.5 * np.pi * s)
    np.testing.assert_allclose(sigma, np.repeat(official, per), rtol=1e-9)  # time-major, as
    assert (t == 1).all()  # the official ``timesteps.T.reshape(-1)``: the map to the data end
    post = draw(method, n=64, step=900)  # past the split: the post stage's own law (ct's pairs)
    assert (post[0] < post[1]).all()
