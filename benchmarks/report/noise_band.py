"""The seed-noise band of the reproducibility verdict: how far a new number may sit from the
committed one before it is more than training noise (``benchmarks.report.verdict`` judges with it).

**The band.** Row ``r`` = (method, dataset, NFE, metric) has committed values ``v_1 .. v_n`` over
the committed seeds (``n`` = 3 for ``results/gmm``): mean ``m``, sample std ``s``. A 3-seed std
has 2 degrees of freedom: it is 10x too small with probability ``1 - exp(-1/100)``, 1% per row,
a sure false alarm somewhere over 300 rows (the issue's ``no`` at one step: std 0.3%, its
neighbours' 4%). So it is pooled, along the two axes the noise lives on:

    rho_col(r)    = pooled relative std of the row's (dataset, metric, NFE) column (all methods)
    rho_method(r) = pooled relative std of the method's rows (all metrics and NFEs)
    pooled(P)     = sqrt( median_{q in P} (s_q / |m_q|)^2 / (median(chi2_{n-1}) / (n-1)) )
    sigma_r^2     = s_r^2 + (rho_col^2 + rho_method^2 + FLOOR_REL^2) m_r^2 + ATOL^2
    z_r           = (x_r - v_seed) / (sqrt(2) sigma_r)        outside when |z_r| > K = 5

- A pool holds the rows with a number on ``n >= 2`` seeds and ``m != 0``. The median of the
  squared relative stds is robust to the outliers on either side, and divided by the median of
  ``chi2_{n-1}/(n-1)`` (``ln 2`` for 3 seeds) it is median-unbiased for rows that share one
  relative noise. A column with fewer than ``MIN_POOL`` such rows (the adaptive solver's) pools
  over its metric (all NFEs); a method with fewer has no method pool.
- The column pool gives every row at least the noise typical of its metric at that NFE; the
  method pool carries what a method's rows share (``sct``, ``lmd``, ``meanflow`` are noisy at
  every NFE: their 3-seed std of a single row is small by chance more often than the column
  knows). The sum of variances keeps the largest of the three scales (within sqrt 3); with the
  column pool alone, the full simulation below false-alarms in 39% of runs, with both in 5%.
- ``FLOOR_REL`` (1%) is the drift floor: a difference of a trained number is never judged finer
  than 1% (the tables print 3 digits; seed spreads here are 0.01-46%). ``ATOL`` keeps an exact
  zero (the exact map's own flow-map error) from a zero-width band.
- ``sqrt(2)``: ``x`` and ``v_seed`` are two draws of the training noise, so their difference has
  twice the variance of one. Conservative: a run with the same seed shares the data, the
  initialisation and the evaluation noise with the committed one; only the trajectory differs.
- ``K`` = 5 for a family-wise false-alarm rate ``ALPHA`` = 1% per comparison. For Gaussian
  ``z`` with a known sigma the Bonferroni bound over ``N`` rows is ``Phi^-1(1 - ALPHA / 2N)``:
  4.17 for the 321 numeric seed-0 rows of ``results/gmm``, 4.41 for all 3 seeds. Estimating
  sigma from 3 seeds fattens the tails; the margin to 5 pays for it. Simulated
  (``tests/test_verdict.py``: committed seeds and the new run redrawn, the band re-estimated
  each time): under the pooled noise 0.2% of runs read "differs" (0.45% at K = 4.17); with each
  row's own committed std taken as its true noise (a stress bound: 3-seed stds are far more
  dispersed than the true ones) 5%. Against the committed band as it is, under either, < 0.1%.
- The price is power. One row must move by ``K sqrt(2) sigma_r`` (7.1 sigma) to be flagged: for
  half the rows of ``results/gmm`` a change of more than 133% of the value (a quarter: 80%).
  A method whose every error doubles is caught for 17 of the 25 rows' methods and baselines,
  not for the noisiest (``sct``, ``scd``, ``lmd``, ``imm``, ``meanflow``, ``pfmm``, ``fm-heun``)
  nor ``exact`` (its spread is the evaluation noise). The verdict tells "another machine" from
  "broken", not a small regression from noise: 3 seeds cannot.

Also reported per row: ``z_mean = (x - m) / (sigma_r sqrt(1 + 1/n))``, where the new value sits
against the committed mean (a fresh draw has that spread around it). Adaptive solver rows are
matched with their NFE column left out (``matchable``); their counted NFE gets a band of its own,
with one dopri5 step (6 evaluations) as its floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from benchmarks.base.rows import KEY, is_adaptive

K = 5.0  # band half-width in sigma_r * sqrt(2) (see the module doc)
ALPHA = 0.01  # designed family-wise false-alarm rate of a comparison
FLOOR_REL = 0.01  # relative drift floor of a trained number
ATOL = 1e-9  # absolute floor (exact zeros)
MIN_POOL = 5  # rows a (metric, NFE) column needs to pool on its own
NFE_STEP = 6.0  # floor of an adaptive count: one dopri5 step (FSAL: 6 evaluations)
ROW = tuple(k for k in KEY if k != "seed")  # (method, dataset, nfe, metric)
ADAPTIVE_NFE = -1  # the NFE column of adaptive rows when matching


def bonferroni_k(n_rows: int, alpha: float = ALPHA) -> float:
    """Gaussian two-sided ``|z|`` bound with family-wise rate ``alpha`` over ``n_rows``."""
    return NormalDist().inv_cdf(1 - alpha / (2 * max(n_rows, 1)))


def chi2_median_ratio(dof: int) -> float:
    """median(chi2_dof) / dof: exact ``ln 2`` for 2 dof, Wilson-Hilferty otherwise."""
    if dof == 2:
        return math.log(2)
    return (1 - 2 / (9 * dof)) ** 3


# ---- the model on arrays (vectorised over leading axes, for the Monte Carlo test) ----


def pool_index(
    groups: Sequence, usable: np.ndarray, fallback: Sequence | None = None
) -> list[np.ndarray]:
    """Members of each row's pool: its group's usable rows; when the group has fewer than
    ``MIN_POOL``, its ``fallback`` group's (none: no pool). ``groups``, ``fallback``: one hashable
    label per row. Returns one index array per row."""
    g = pd.factorize(pd.Series(list(groups), dtype=object))[0]
    f = None if fallback is None else pd.factorize(pd.Series(list(fallback), dtype=object))[0]
    out = []
    for r, gi in enumerate(g):
        own = np.flatnonzero((g == gi) & usable)
        if len(own) < MIN_POOL:
            own = np.flatnonzero((f == f[r]) & usable) if f is not None else own[:0]
        out.append(own)
    return out


def pooled_rho(rel2: np.ndarray, pools: list[np.ndarray], dof: int) -> np.ndarray:
    """Per row, ``sqrt(median of its pool's squared relative stds / (median chi2_dof / dof))``
    (0 for an empty pool); ``rel2`` ``(..., R)``."""
    cache: dict[bytes, np.ndarray] = {}
    rho = np.zeros(rel2.shape)
    for r, idx in enumerate(pools):
        key = idx.tobytes()
        if key not in cache:
            cache[key] = (
                np.sqrt(np.median(rel2[..., idx], axis=-1) / chi2_median_ratio(dof))
                if len(idx)
                else np.zeros(rel2.shape[:-1])
            )
        rho[..., r] = cache[key]
    return rho


def sigma(
    values: np.ndarray, pools: Sequence[list[np.ndarray]], floor_abs: np.ndarray | None = None
):
    """(mean, std, n, rhos, sigma) per row from committed values ``(..., R, n)`` (NaN where a
    seed has no number): ``rhos`` one pooled relative std per pool kind in ``pools`` (each from
    ``pool_index``); ``floor_abs`` (R,) an extra absolute floor (the adaptive count's solver
    step), else 0."""
    n = np.sum(np.isfinite(values), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(n[..., None] > 0, values, 0.0), axis=-1)
        mean = np.where(n > 0, mean, np.nan)
        dev = np.where(np.isfinite(values), values - mean[..., None], 0.0)
        std = np.sqrt(np.sum(dev**2, axis=-1) / np.maximum(n - 1, 1))
        std = np.where(n >= 2, std, 0.0)
        rel2 = np.where((n >= 2) & (mean != 0), (std / np.abs(mean)) ** 2, np.nan)
    dof = max(int(np.max(n, initial=0)) - 1, 1)
    rhos = [pooled_rho(rel2, p, dof) for p in pools]
    am = np.abs(np.nan_to_num(mean))
    var = std**2 + (FLOOR_REL * am) ** 2 + ATOL**2
    var = var + sum(((rho * am) ** 2 for rho in rhos), np.zeros_like(var))
    if floor_abs is not None:
        var = var + floor_abs**2
    return mean, std, n, rhos, np.sqrt(var)


def _usable(values: np.ndarray) -> np.ndarray:
    """Rows that can join a pool: two seeds or more with a number, nonzero mean."""
    ok = np.isfinite(values)
    n = ok.sum(axis=-1)
    total = np.where(ok, values, 0.0).sum(axis=-1)
    return (n >= 2) & (total != 0)


def z_scores(new: np.ndarray, seed_value: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """``(new - committed seed value) / (sqrt(2) sigma)``."""
    return (new - seed_value) / (math.sqrt(2) * sig)


# ---- the model on rows ----


def matchable(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``counted`` (the NFE as written) and ``nfe`` set to -1 for adaptive solvers."""
    rows = rows.assign(counted=rows["nfe"].astype(float), note=rows["note"].astype(str))
    adaptive = rows["method"].map(is_adaptive).astype(bool)
    rows.loc[adaptive, "nfe"] = ADAPTIVE_NFE
    rows.loc[~adaptive, "counted"] = np.nan
    return rows


def seed_matrix(
    ref: pd.DataFrame, column: str = "value"
) -> tuple[pd.DataFrame, list[list[np.ndarray]]]:
    """The committed numbers of ``column`` (``value`` or an adaptive row's ``counted`` NFE), one
    row per (method, dataset, nfe, metric) of ``ref`` and one column per seed (NaN where a seed
    has none), and the rows' pools: for values [the (dataset, metric, NFE) column, else the
    (dataset, metric); the method's rows of the dataset], for counts [the (dataset, metric)]."""
    ref = matchable(ref)
    num = ref[ref["note"] == ""].dropna(subset=[column])
    seeds = sorted(ref["seed"].unique())
    wide = num.pivot_table(index=list(ROW), columns="seed", values=column, aggfunc="first")
    wide = wide.reindex(columns=seeds)
    if column == "value":  # every row, also the ones without a number (n/a, failures)
        wide = wide.reindex(ref.drop_duplicates(list(ROW)).set_index(list(ROW)).index)
    idx = wide.index.to_frame(index=False)
    usable = _usable(wide.to_numpy(float))
    metric = list(zip(idx["dataset"], idx["metric"]))
    if column != "value":
        return wide, [pool_index(metric, usable)]
    col = list(zip(idx["dataset"], idx["metric"], idx["nfe"]))
    method = list(zip(idx["dataset"], idx["method"]))
    return wide, [pool_index(col, usable, metric), pool_index(method, usable)]


def band(ref: pd.DataFrame) -> pd.DataFrame:
    """The committed seed statistics and ``sigma`` of every row (index ``ROW``), for values and,
    on adaptive rows, for the counted NFE (columns ``*_nfe``)."""
    wide, pools = seed_matrix(ref)
    mean, std, n, (rho_col, rho_method), sig = sigma(wide.to_numpy(float), pools)
    out = pd.DataFrame(
        {"n": n, "mean": mean, "std": std, "rho_col": rho_col, "rho_method": rho_method,
         "sigma": sig},
        index=wide.index,
    )  # fmt: skip
    counts, pools = seed_matrix(ref, "counted")  # adaptive rows: one count per solve
    cv = counts.to_numpy(float)
    cm, cs, _, _, csig = sigma(cv, pools, np.full(len(cv), NFE_STEP))
    c = pd.DataFrame({"mean_nfe": cm, "std_nfe": cs, "sigma_nfe": csig}, index=counts.index)
    return out.join(c)
