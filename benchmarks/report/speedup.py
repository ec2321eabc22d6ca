"""Speed-up over the teacher: the smallest teacher NFE of equal quality, NFE and time ratios.

Each learned method is compared with the velocity it learned from: a method distilled from the
exact oracle (row ``teacher == "exact"``) with the exact velocity's solves (``exact-euler``,
``exact-heun``, ``exact-dopri5``); a method distilled from a trained fm, and a method that learns
from data alone, with the trained fm's solves (``fm-*``), the teacher a user would otherwise run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks.base.atomic import write_text
from benchmarks.base.rows import (
    ADAPTIVE_SOLVER,
    BASELINES,
    VELOCITIES,
    baseline,
    is_baseline,
    velocity_of,
)
from benchmarks.report.tables import fmt, groups, md_table, one


def reference_of(rows: pd.DataFrame, method: str) -> str:
    """ "exact" when ``method``'s rows say it learned from the exact velocity, else "fm"."""
    if "teacher" not in rows:
        return "fm"
    taught = rows.loc[rows["method"] == method, "teacher"].astype(str)
    return "exact" if (taught == "exact").any() else "fm"


def _solves(s: pd.DataFrame, velocity: str) -> pd.DataFrame:
    """The summarized baseline cells of one velocity (``fm`` or ``exact``)."""
    base = s[s["method"].isin(BASELINES)]
    return base[base["method"].map(velocity_of) == velocity]


def speedup(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per learned (method, nfe): the smallest-NFE solve of its reference velocity at least as
    good (each baseline at its mean over seeds). Columns: method, nfe, value, teacher,
    teacher_nfe, nfe_ratio (teacher_nfe / nfe), time_ratio (teacher / method sample seconds per
    sample); "not reached (...)" when no solve of that velocity is as good."""
    s = one(rows, metric, valid=True)
    out = []
    for r in (
        s[~s["method"].map(is_baseline).astype(bool)].sort_values(["method", "nfe"]).itertuples()
    ):
        teach = _solves(s, reference_of(rows, r.method))
        ok = teach[teach["mean"] <= r.mean].sort_values(["nfe", "mean"])
        row = dict(method=r.method, nfe=int(r.nfe), value=r.mean, teacher="", teacher_nfe=math.nan)
        row |= dict(nfe_ratio=math.nan, time_ratio=math.nan)
        if len(ok):
            t = ok.iloc[0]
            row |= dict(teacher=t["method"], teacher_nfe=t["nfe"], nfe_ratio=t["nfe"] / r.nfe)
            row["time_ratio"] = t["sec"] / r.sec if r.sec > 0 else math.nan
        elif len(teach):
            b = teach.sort_values(["mean", "nfe"]).iloc[0]
            row["teacher"] = (
                f"not reached (best {b['method']}: {fmt(b['mean'])} at nfe {b['nfe']:g})"
            )
        else:
            row["teacher"] = "not reached (no teacher rows)"
        out.append(row)
    cols = ["method", "nfe", "value", "teacher", "teacher_nfe", "nfe_ratio", "time_ratio"]
    return pd.DataFrame(out, columns=cols)


def headline(rows: pd.DataFrame, metric: str) -> list[str]:
    """One line per reference velocity: its best one-step method against its adaptive solve
    (NFE, wall time, quality)."""
    s = one(rows, metric, valid=True)
    learned = s[~s["method"].map(is_baseline).astype(bool) & (s["nfe"] == 1)].sort_values("mean")
    if learned.empty:
        return [f"No learned one-step method has a {metric} value."]
    lines = []
    for velocity in VELOCITIES:
        mine = learned[learned["method"].map(lambda m: reference_of(rows, m)) == velocity]
        if mine.empty:
            continue
        b, adaptive = mine.iloc[0], baseline(velocity, ADAPTIVE_SOLVER)
        text = f"Best one-step method against {velocity}: **{b['method']}** ({metric} {fmt(b['mean'])})"
        dop = s[s["method"] == adaptive]
        if dop.empty:
            lines.append(text + f"; no {adaptive} baseline to compare with.")
            continue
        d = dop.iloc[0]
        time = d["sec"] / b["sec"] if b["sec"] > 0 else math.nan
        lines.append(
            f"{text}: {d['nfe']:.3g}x fewer NFE and {time:.3g}x less sampling time than "
            f"{adaptive} (nfe {d['nfe']:.0f}, {metric} {fmt(d['mean'])}); quality "
            f"{b['mean'] / d['mean']:.3g}x {adaptive}'s {metric}."
        )
    return lines


def write_speedup_md(rows: pd.DataFrame, path: str | Path) -> Path:
    """``speedup.md``: headlines and the speed-up table per (dataset, metric)."""
    parts = [
        "# Speed-up over the teacher\n\nSmallest NFE of a solve of the velocity each method"
        " learned from (exact-* for the exact oracle; fm-* for a trained fm and for data-only"
        " methods) whose quality is at least the method's (means over seeds); ratios are"
        " solve / method.\n"
    ]
    for d, m, g in groups(rows):
        sp = speedup(g, m)
        sp["value"] = sp["value"].map(fmt)
        for c in ("teacher_nfe", "nfe_ratio", "time_ratio"):
            sp[c] = sp[c].map(lambda v: "" if not math.isfinite(v) else f"{v:.3g}")
        heads = "\n".join(f"- {h}" for h in headline(g, m))
        parts.append(f"## {m} ({d})\n\n{heads}\n\n{md_table(sp, index=False)}\n")
    return write_text(Path(path), "\n".join(parts))
