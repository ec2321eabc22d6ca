"""Speed-up over the teacher: the smallest teacher NFE of equal quality, NFE and time ratios."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks.atomic import write_text
from benchmarks.report.tables import fmt, groups, md_table, one
from benchmarks.rows import ADAPTIVE_SOLVER, BASELINES, baseline, is_baseline


def speedup(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per learned (method, nfe): the smallest-NFE teacher setting at least as good.

    Teachers are fm-euler, fm-heun and fm-dopri5, each at its mean over seeds. Columns: method,
    nfe, value, teacher, teacher_nfe, nfe_ratio (teacher_nfe / nfe), time_ratio (teacher /
    method sample seconds per sample); "not reached (...)" when no teacher setting is as good.
    """
    s = one(rows, metric, valid=True)
    teach = s[s["method"].isin(BASELINES) & s["method"].str.startswith("fm-")]
    out = []
    for r in s[~s["method"].map(is_baseline)].sort_values(["method", "nfe"]).itertuples():
        ok = teach[teach["mean"] <= r.mean].sort_values(["nfe", "mean"])
        row = dict(method=r.method, nfe=int(r.nfe), value=r.mean, teacher="", teacher_nfe=math.nan)
        row |= dict(nfe_ratio=math.nan, time_ratio=math.nan)
        if len(ok):
            t = ok.iloc[0]
            row |= dict(teacher=t["method"], teacher_nfe=t["nfe"], nfe_ratio=t["nfe"] / r.nfe)
            row["time_ratio"] = t["sec"] / r.sec if r.sec > 0 else math.nan
        elif len(teach):
            b = teach.sort_values(["mean", "nfe"]).iloc[0]
            row["teacher"] = f"not reached (best teacher: {fmt(b['mean'])} at nfe {b['nfe']:g})"
        else:
            row["teacher"] = "not reached (no teacher rows)"
        out.append(row)
    cols = ["method", "nfe", "value", "teacher", "teacher_nfe", "nfe_ratio", "time_ratio"]
    return pd.DataFrame(out, columns=cols)


def headline(rows: pd.DataFrame, metric: str) -> str:
    """One line: the best one-step method against fm-dopri5 (NFE, wall time, quality)."""
    s = one(rows, metric, valid=True)
    one_step = s[~s["method"].map(is_baseline) & (s["nfe"] == 1)].sort_values("mean")
    adaptive = baseline("fm", ADAPTIVE_SOLVER)
    dop = s[s["method"] == adaptive]
    if one_step.empty:
        return f"No learned one-step method has a {metric} value."
    b = one_step.iloc[0]
    text = f"Best one-step method: **{b['method']}** ({metric} {fmt(b['mean'])})"
    if dop.empty:
        return text + f"; no {adaptive} baseline to compare with."
    d = dop.iloc[0]
    time = d["sec"] / b["sec"] if b["sec"] > 0 else math.nan
    return (
        f"{text}: {d['nfe']:.3g}x fewer NFE and {time:.3g}x less sampling time than "
        f"{adaptive} (nfe {d['nfe']:.0f}, {metric} {fmt(d['mean'])}); quality "
        f"{b['mean'] / d['mean']:.3g}x dopri5's {metric}."
    )


def write_speedup_md(rows: pd.DataFrame, path: str | Path) -> Path:
    """``speedup.md``: headline and speed-up table per (dataset, metric)."""
    parts = [
        "# Speed-up over the teacher\n\nSmallest teacher NFE whose quality is at least the"
        " method's (means over seeds); ratios are teacher / method.\n"
    ]
    for d, m, g in groups(rows):
        sp = speedup(g, m)
        sp["value"] = sp["value"].map(fmt)
        for c in ("teacher_nfe", "nfe_ratio", "time_ratio"):
            sp[c] = sp[c].map(lambda v: "" if not math.isfinite(v) else f"{v:.3g}")
        parts.append(f"## {m} ({d})\n\n{headline(g, m)}\n\n{md_table(sp, index=False)}\n")
    return write_text(Path(path), "\n".join(parts))
