"""Do new metrics agree with committed ones within their seed noise? The reproducibility verdict.

Bit equality holds only on the machine (CPU kernels, thread counts) that wrote the committed
results: a different summation order changes the last bits of a gradient, and 1500 steps of
training amplify that chaotically into a different network, i.e. to first order **another draw of
training noise**. The natural scale for such a difference is the committed seed spread. The
verdict (``judge``) is

- ``identical``: the same rows, every value, note and counted NFE equal bit for bit;
- ``consistent``: the same rows, and every row of seed ``s`` within the seed-noise band around
  the committed row of seed ``s`` (``|z| <= K``; the band, its derivation, false-alarm rate and
  power: ``benchmarks.report.noise_band``);
- ``differs``: otherwise, naming the rows outside the band (worst first) and the rows only one
  side has (a missing or an extra row is a difference in itself).

Notes: an ``n/a`` row matches ``n/a`` only. A failure (``diverged``/``failed``) matches a failure
of the same kind (the step in its text may differ: not identical, but not outside), or, for a
divergence, any committed seed of that row that diverged too (then it is noise, as the committed
seeds show). A number against a failure of the committed seed is outside unless another committed
seed of the row has a number; it is then judged by ``z_mean`` against the numeric seeds.
Adaptive solver rows are matched with their NFE column left out (``rows.is_adaptive``); their
counted NFE is judged like a value, with one dopri5 step (6 evaluations) as its floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmarks.base.rows import KEY, NA
from benchmarks.report.noise_band import (
    ADAPTIVE_NFE,
    ALPHA,
    ATOL,
    FLOOR_REL,
    MIN_POOL,
    NFE_STEP,
    ROW,
    K,
    band,
    bonferroni_k,
    chi2_median_ratio,
    matchable,
    pool_index,
    pooled_rho,
    seed_matrix,
    sigma,
    z_scores,
)

__all__ = [
    "ADAPTIVE_NFE",
    "ALPHA",
    "ATOL",
    "FLOOR_REL",
    "K",
    "MIN_POOL",
    "NFE_STEP",
    "ROW",
    "Verdict",
    "band",
    "bonferroni_k",
    "chi2_median_ratio",
    "judge",
    "matchable",
    "pool_index",
    "pooled_rho",
    "seed_matrix",
    "sigma",
    "z_scores",
]


def _kind(note: str) -> str:
    note = str(note)
    if note == "":
        return "number"
    if note == NA:
        return NA
    return note.split(" ", 1)[0]  # diverged / failed


@dataclass
class Verdict:
    """The outcome of ``judge``; ``headline()`` and ``lines()`` print it."""

    kind: str  # identical / consistent / differs
    rows: int  # rows matched
    bits: int  # matched rows not equal bit for bit
    k: float
    table: pd.DataFrame  # every matched row: values, band, z, within, reason
    outside: pd.DataFrame  # rows outside, worst first
    missing: list[tuple] = field(default_factory=list)  # in the reference, not in new
    extra: list[tuple] = field(default_factory=list)  # in new, not in the reference
    single_seed: bool = False  # the reference has one seed: the band is the pool-less floor

    @property
    def worst(self) -> pd.Series | None:
        z = self.table["z"].abs()
        if not len(z) or z.isna().all():
            return None
        return self.table.loc[z.idxmax()]

    def headline(self) -> str:
        if self.kind == "identical":
            return f"identical: {self.rows} rows equal bit for bit"
        w = self.worst
        at = f"worst z = {w['z']:+.2f} at {_where(w.name)}" if w is not None else "no numbers"
        note = "; reference has one seed: 1% floor only" if self.single_seed else ""
        if self.kind == "consistent":
            return (
                f"consistent: {self.rows} rows, {self.bits} differ in bits, all within the "
                f"seed-noise band (k = {self.k:g}, {at}{note})"
            )
        parts = []
        if len(self.outside):
            parts.append(
                f"{len(self.outside)} of {self.rows} rows outside the seed-noise band "
                f"(k = {self.k:g}, {at}{note})"
            )
        if self.missing:
            parts.append(f"{len(self.missing)} reference rows missing{_methods(self.missing)}")
        if self.extra:
            parts.append(f"{len(self.extra)} rows not in the reference{_methods(self.extra)}")
        return "differs: " + ("; ".join(parts) or "no rows in common")

    def lines(self, limit: int = 20) -> list[str]:
        out = []
        for key, r in self.outside.head(limit).iterrows():
            out.append(f"outside: {_where(key)} (seed {key[KEY.index('seed')]}): {r['reason']}")
        if len(self.outside) > limit:
            out.append(f"outside: ... and {len(self.outside) - limit} more rows")
        for name, keys in (("missing", self.missing), ("extra", self.extra)):
            for key in keys[:limit]:
                out.append(f"{name}: {', '.join(f'{k}={v}' for k, v in zip(KEY, key))}")
            if len(keys) > limit:
                out.append(f"{name}: ... and {len(keys) - limit} more rows")
        return out


def _methods(keys: list[tuple], most: int = 6) -> str:
    names = sorted({k[KEY.index("method")] for k in keys})
    more = f", ... {len(names) - most} more" if len(names) > most else ""
    return f" ({', '.join(names[:most])}{more})"


def _where(key) -> str:
    key = dict(zip(KEY, key)) if not isinstance(key, dict) else key
    nfe = "adaptive" if key["nfe"] == ADAPTIVE_NFE else key["nfe"]
    return f"method={key['method']}, nfe={nfe}, metric={key['metric']}"


def _g(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.4g}"


def _pair(
    new: pd.DataFrame, ref: pd.DataFrame, seeds: Sequence[int] | None, b: pd.DataFrame
) -> tuple[pd.DataFrame, list[tuple], list[tuple]]:
    """``new``'s rows of ``seeds`` (default: all of ``new``'s) joined with ``ref``'s rows of the
    same seed (columns ``*_new``, ``*_ref``) and the band ``b`` of ``ref``; the keys only ``ref`` has
    among those seeds (missing) and only ``new`` has (extra)."""
    new_m, ref_m = matchable(new), matchable(ref)
    if seeds is None:
        seeds = sorted(new_m["seed"].unique())
    new_m = new_m[new_m["seed"].isin(seeds)].set_index(list(KEY))
    ref_s = ref_m[ref_m["seed"].isin(seeds)].set_index(list(KEY))
    missing = sorted(ref_s.index.difference(new_m.index))
    extra = sorted(new_m.index.difference(ref_s.index))
    cols = ["value", "note", "counted"]
    t = new_m[cols].add_suffix("_new").join(ref_s[cols].add_suffix("_ref"), how="inner")
    row_key = t.index.droplevel("seed")
    t = t.join(b.reindex(row_key).set_index(t.index))
    return t, list(missing), list(extra)


def _scores(t: pd.DataFrame) -> dict[str, np.ndarray]:
    """The arrays a row is judged on: values (``vn``, ``vr``), counted NFEs (``cn``, ``cr``),
    ``sig``, ``z`` against the committed seed, ``z_mean`` against the committed mean, ``z_nfe``
    of the count, and ``same`` (equal bit for bit)."""
    vn, vr = t["value_new"].to_numpy(float), t["value_ref"].to_numpy(float)
    same = ((vn == vr) | (np.isnan(vn) & np.isnan(vr))) & (t["note_new"] == t["note_ref"])
    cn, cr = t["counted_new"].to_numpy(float), t["counted_ref"].to_numpy(float)
    same = same.to_numpy() & ((cn == cr) | (np.isnan(cn) & np.isnan(cr)))
    sig = t["sigma"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        z_mean = (vn - t["mean"].to_numpy(float)) / (
            sig * np.sqrt(1 + 1 / np.maximum(t["n"].to_numpy(float), 1))
        )
        z_nfe = z_scores(cn, cr, t["sigma_nfe"].to_numpy(float))
    z = z_scores(vn, vr, sig)
    return dict(vn=vn, vr=vr, cn=cn, cr=cr, sig=sig, z=z, z_mean=z_mean, z_nfe=z_nfe, same=same)


def _numbers(i: int, t: pd.DataFrame, a: dict, k: float) -> tuple[bool, str, float]:
    """A number against a number: the value's ``z``, and on adaptive rows the count's."""
    zi = a["z"][i]
    ok = bool(np.abs(zi) <= k)
    why = (
        f"{_g(a['vn'][i])} vs {_g(a['vr'][i])}, committed mean {_g(t['mean'].iat[i])} "
        f"+- {_g(t['std'].iat[i])} ({int(t['n'].iat[i])} seeds), sigma {_g(a['sig'][i])}, "
        f"z = {zi:+.2f} (vs mean {a['z_mean'][i]:+.2f})"
    )
    cn, cr, z_nfe = a["cn"][i], a["cr"][i], a["z_nfe"][i]
    if np.isfinite(cn) and np.abs(z_nfe) > k:
        ok = False
        why = f"counted NFE {cn:g} vs {cr:g}, z = {z_nfe:+.2f}; {why}"
        zi = z_nfe if np.abs(z_nfe) > np.abs(zi) else zi
    return ok, why, zi


def _mixed(
    i: int, key: tuple, kinds_new_ref: tuple[str, str], t: pd.DataFrame, a: dict, ref_by_row, k
) -> tuple[bool, str, float]:
    """A number against a failure, or failures of different kinds: within when the new kind is
    among the committed seeds' of the row (a number then judged by ``z_mean`` against them)."""
    kn, kr = kinds_new_ref
    seen = ref_by_row.get_group(key[:2] + key[3:])
    kinds = set(seen["note"].map(_kind))
    nums = seen.loc[seen["note"] == "", "value"].to_numpy(float)
    ok = kn in kinds and kn != NA and kr != NA
    zi = np.nan
    if ok and kn == "number":
        zi = a["z_mean"][i] = (a["vn"][i] - nums.mean()) / (
            a["sig"][i] * math.sqrt(1 + 1 / len(nums))
        )
        ok = bool(np.abs(zi) <= k)
    what = t["note_new"].iat[i] or _g(a["vn"][i])
    was = t["note_ref"].iat[i] or _g(a["vr"][i])
    why = f"{what} vs {was}" + (
        " (as in another committed seed)" if ok else " (not among the committed seeds)"
    )
    return ok, why, zi


def judge(
    new: pd.DataFrame, ref: pd.DataFrame, seeds: Sequence[int] | None = None, k: float = K
) -> Verdict:
    """The verdict on the rows of ``new`` against the committed ``ref`` (module doc): rows of the
    ``seeds`` (default: every seed of ``new``) against the same seed of ``ref``, the band from
    every seed of ``ref``."""
    b = band(ref)
    t, missing, extra = _pair(new, ref, seeds, b)
    a = _scores(t)
    ref_by_row = matchable(ref).groupby(list(ROW))  # every committed seed's rows, for failures
    within, reasons, zs = [], [], []
    for i, key in enumerate(t.index):
        kn, kr = _kind(t["note_new"].iat[i]), _kind(t["note_ref"].iat[i])
        if kn == kr == "number":
            ok, why, zi = _numbers(i, t, a, k)
        elif kn == kr:
            ok, why, zi = True, f"{t['note_new'].iat[i]} vs {t['note_ref'].iat[i]}", np.nan
        else:
            ok, why, zi = _mixed(i, key, (kn, kr), t, a, ref_by_row, k)
        within.append(ok)
        reasons.append(why)
        zs.append(zi)
    t = t.assign(
        z=zs, z_mean=a["z_mean"], same=a["same"], within=np.array(within, bool), reason=reasons
    )
    outside = t[~t["within"]]
    order = np.argsort(
        -np.nan_to_num(outside["z"].abs().to_numpy(float), nan=np.inf), kind="stable"
    )
    outside = outside.iloc[order]
    if missing or extra or len(outside) or not len(t):
        kind = "differs"
    else:
        kind = "identical" if bool(t["same"].all()) else "consistent"
    return Verdict(
        kind=kind,
        rows=len(t),
        bits=int((~t["same"]).sum()),
        k=k,
        table=t,
        outside=outside,
        missing=missing,
        extra=extra,
        single_seed=(int(b["n"].max()) if len(b) else 0) < 2,
    )
