"""Tidy metrics rows -> tables (md, tex, csv), metric-vs-NFE plots and a speed-up table.

A row: ``method, dataset, seed, nfe, metric, value, n_samples, sample_seconds, train_*, budget,
git_sha, note``; ``note == "n/a"`` marks a not-applicable cell (``value`` NaN). Every metric is
lower-is-better. Baselines: teachers ``fm-euler``, ``fm-heun`` (fixed NFE), ``fm-dopri5`` (its
``nfe`` is the counted NFE of the adaptive solver) and the ``exact`` flow-map floor. All files
are written atomically (temp file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from benchmarks.rows import (
    ADAPTIVE,
    KEY,
    _atomic,
    _write_text,
    read_rows,
    update_rows,
    write_csv_atomic,
)

# the rows API (benchmarks.rows) is re-exported: callers read and merge rows through the reports
__all__ = [
    "KEY",
    "headline",
    "method_color",
    "plot_metric_vs_nfe",
    "read_rows",
    "speedup",
    "summarize",
    "table",
    "update_rows",
    "write_csv_atomic",
    "write_reports",
    "write_speedup_md",
    "write_table_md",
    "write_table_tex",
]

EXACT = "exact"
TEACHERS = ("fm-euler", "fm-heun", ADAPTIVE)
BASELINES = (*TEACHERS, EXACT)
NA, MISSING = "n/a", "—"
#: learned methods with a reserved colour (sorted -> tab20); unknown names hash into the rest
KNOWN_METHODS = ("cd", "ct", "ctm", "emd", "esd", "fm", "fmm", "lmd", "lsd", "meanflow", "no")
KNOWN_METHODS += ("pd", "pfmm", "psd", "shortcut")
# tab20 without its greys (kept for teachers), dark shades first so neighbours differ in hue
_TAB20 = [i for i in (*range(0, 20, 2), *range(1, 20, 2)) if i not in (14, 15)]
_STYLE = {
    "fm-euler": dict(color="0.35", linestyle="--", marker="o", markersize=4),
    "fm-heun": dict(color="0.6", linestyle="--", marker="s", markersize=4),
    ADAPTIVE: dict(color="black", linestyle="none", marker="*", markersize=13),
}


def method_color(name: str) -> tuple[float, float, float, float] | str:
    """A colour fixed per method name, identical in every figure."""
    if name in _STYLE:
        return _STYLE[name]["color"]
    if name == EXACT:
        return "black"
    known = sorted(KNOWN_METHODS)
    spare = len(_TAB20) - len(known)
    i = known.index(name) if name in known else len(known) + zlib.crc32(name.encode()) % spare
    return matplotlib.colormaps["tab20"](_TAB20[i])


def _order(methods: Sequence[str]) -> list[str]:
    """Learned methods (sorted), then the teachers, then the exact floor."""
    learned = sorted(m for m in methods if m not in BASELINES)
    return learned + [m for m in BASELINES if m in set(methods)]


def fmt(mean: float, std: float = math.nan) -> str:
    """``mean ± std`` with three significant digits of the mean (std to the same decimals)."""
    if not math.isfinite(mean):
        return MISSING if math.isnan(mean) else f"{mean}"  # inf: the sampler diverged
    d = 3 if mean == 0 else max(0, min(6, 2 - math.floor(math.log10(abs(mean)))))
    return f"{mean:.{d}f}" + (f" ± {std:.{d}f}" if math.isfinite(std) else "")


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean/std/count over seeds per (dataset, metric, method, nfe); fm-dopri5 is one cell.

    Columns: dataset, metric, method, nfe (mean counted NFE for fm-dopri5), mean, std, n,
    na (every row of the cell is n/a), sec (mean sample seconds per sample).
    """
    df = rows.copy()
    df["na"] = df["note"].astype(str).eq(NA) if "note" in df else False
    if "sample_seconds" in df and "n_samples" in df:
        df["sec"] = df["sample_seconds"] / df["n_samples"].where(df["n_samples"] > 0)
    else:
        df["sec"] = math.nan
    df["cell"] = df["nfe"].where(df["method"] != ADAPTIVE, -1)
    keys = ["dataset", "metric", "method", "cell"]
    agg = dict(nfe=("nfe", "mean"), mean=("value", "mean"), std=("value", "std"))
    agg |= dict(n=("value", "count"), na=("na", "all"), sec=("sec", "mean"))
    return df.groupby(keys, dropna=False).agg(**agg).reset_index().drop(columns="cell")


def _one(rows: pd.DataFrame, metric: str, valid: bool = False) -> pd.DataFrame:
    """``summarize`` of one metric on one dataset; ``valid``: only cells with a value."""
    sub = rows[rows["metric"] == metric]
    if sub["dataset"].nunique() > 1:
        raise ValueError(f"rows mix datasets {sorted(sub['dataset'].unique())}: filter first")
    s = summarize(sub)
    return s[~s["na"] & (s["n"] > 0)] if valid else s


def table(rows: pd.DataFrame, metric: str, style: str = "plain") -> pd.DataFrame:
    """Methods x NFE strings "mean ± std" (over seeds); "n/a" not applicable, "—" missing.

    fm-dopri5 fills the "adaptive" column as "value (nfe N)". The lowest mean per NFE column
    (the exact floor excluded) is bold for ``style`` "md"/"tex"; ``attrs["best"]`` maps each
    column to its best methods for every style.
    """
    s = _one(rows, metric)
    fixed = s[s["method"] != ADAPTIVE]
    nfes = sorted(int(n) for n in fixed["nfe"].dropna().unique())
    cols = [str(n) for n in nfes] + (["adaptive"] if (s["method"] == ADAPTIVE).any() else [])
    out = pd.DataFrame(
        MISSING, index=pd.Index(_order(s["method"].unique()), name="method"), columns=cols
    )
    best: dict[str, list[str]] = {}
    for n in nfes:
        rivals = fixed[(fixed["nfe"] == n) & (fixed["method"] != EXACT) & (fixed["n"] > 0)]
        if len(rivals):
            lo = rivals["mean"].min()
            best[str(n)] = sorted(rivals.loc[rivals["mean"] <= lo, "method"])
    for r in s.itertuples():
        col = "adaptive" if r.method == ADAPTIVE else str(int(r.nfe))
        text = NA if r.na else fmt(r.mean, r.std) if r.n else MISSING
        if r.method == ADAPTIVE and r.n:
            text += f" (nfe {r.nfe:.0f})"
        if style == "tex":
            text = text.replace("±", "$\\pm$")
        if r.method in best.get(col, ()):
            text = {"md": f"**{text}**", "tex": f"\\textbf{{{text}}}"}.get(style, text)
        out.loc[r.method, col] = text
    if style == "tex":
        out.index = [m.replace("_", "\\_") for m in out.index]
        out = out.replace(MISSING, "--")
    out.attrs["best"] = best
    return out


def _groups(rows: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(dataset, metric, rows) for every pair present, sorted."""
    return [(d, m, g) for (d, m), g in rows.groupby(["dataset", "metric"], sort=True)]


def _md_table(df: pd.DataFrame, index: bool = True) -> str:
    head = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, r in df.iterrows():
        cells = ([str(i)] if index else []) + [str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_metric_vs_nfe(rows: pd.DataFrame, metric: str, path_stem: str | Path | None) -> Figure:
    """``metric`` vs NFE (log2 x) per method; writes ``path_stem``.png/.pdf unless None.

    Learned methods: lines with markers and std error bars; fm-euler/fm-heun dashed grey;
    fm-dopri5 a star at its counted NFE; exact a dotted horizontal line; n/a cells left out.
    Each plotted line has ``gid`` = method name (the returned Figure can be inspected).
    """
    s = _one(rows, metric, valid=True)
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for m in _order(s["method"].unique()):
        d = s[s["method"] == m].sort_values("nfe")
        if m == EXACT:
            ax.axhline(d["mean"].mean(), color="black", linestyle=":", label=m, gid=m)
            continue
        style = _STYLE.get(m, dict(color=method_color(m), marker="o", markersize=5))
        ax.plot(d["nfe"], d["mean"], label=m, gid=m, **style)
        if (d["std"].fillna(0) > 0).any():
            bars = dict(fmt="none", ecolor=style["color"], capsize=3, elinewidth=1)
            ax.errorbar(d["nfe"], d["mean"], yerr=d["std"].fillna(0), **bars)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    y = s["mean"][s["mean"].abs() < math.inf]
    if len(y) and (y > 0).all() and y.max() > 10 * y.min():
        ax.set_yscale("log")
    ax.set(xlabel="NFE", ylabel=f"{metric} (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    if path_stem is not None:
        for ext in ("png", "pdf"):
            with _atomic(Path(f"{path_stem}.{ext}"), "wb") as f:
                fig.savefig(f, format=ext, bbox_inches="tight", dpi=150)
    return fig


def speedup(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per learned (method, nfe): the smallest-NFE teacher setting at least as good.

    Teachers are fm-euler, fm-heun and fm-dopri5, each at its mean over seeds. Columns: method,
    nfe, value, teacher, teacher_nfe, nfe_ratio (teacher_nfe / nfe), time_ratio (teacher /
    method sample seconds per sample); "not reached (...)" when no teacher setting is as good.
    """
    s = _one(rows, metric, valid=True)
    teach = s[s["method"].isin(TEACHERS)]
    out = []
    for r in s[~s["method"].isin(BASELINES)].sort_values(["method", "nfe"]).itertuples():
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
    s = _one(rows, metric, valid=True)
    one = s[~s["method"].isin(BASELINES) & (s["nfe"] == 1)].sort_values("mean")
    dop = s[s["method"] == ADAPTIVE]
    if one.empty:
        return f"No learned one-step method has a {metric} value."
    b = one.iloc[0]
    text = f"Best one-step method: **{b['method']}** ({metric} {fmt(b['mean'])})"
    if dop.empty:
        return text + "; no fm-dopri5 baseline to compare with."
    d = dop.iloc[0]
    time = d["sec"] / b["sec"] if b["sec"] > 0 else math.nan
    return (
        f"{text}: {d['nfe']:.3g}x fewer NFE and {time:.3g}x less sampling time than "
        f"fm-dopri5 (nfe {d['nfe']:.0f}, {metric} {fmt(d['mean'])}); quality "
        f"{b['mean'] / d['mean']:.3g}x dopri5's {metric}."
    )


def write_table_md(rows: pd.DataFrame, path: str | Path) -> Path:
    """``table.md``: one section per (dataset, metric)."""
    parts = [
        "# Results vs NFE\n\nmean ± std over seeds; lower is better; **bold**: best per NFE"
        " (the exact floor excluded); n/a: not applicable; —: not run.\n"
    ]
    for d, m, g in _groups(rows):
        parts.append(f"## {m} ({d})\n\n{_md_table(table(g, m, 'md'))}\n")
    return _write_text(Path(path), "\n".join(parts))


def write_table_tex(rows: pd.DataFrame, path: str | Path) -> Path:
    """``table.tex``: one booktabs table per (dataset, metric)."""
    parts = ["% generated by benchmarks.report; needs \\usepackage{booktabs}"]
    for d, m, g in _groups(rows):
        t = table(g, m, "tex")
        n_learned = sum(name not in BASELINES for name in _order(g["method"].unique()))
        body = [f"{i} & " + " & ".join(r) + r" \\" for i, r in zip(t.index, t.values.tolist())]
        if 0 < n_learned < len(body):
            body.insert(n_learned, r"\midrule")
        caption = f"{m} on {d} vs NFE".replace("_", " ")
        parts += [
            r"\begin{table}[t]\centering",
            f"\\caption{{{caption} (mean $\\pm$ std over "
            r"seeds; lower is better; best in bold).}",
            r"\begin{tabular}{l" + "r" * len(t.columns) + r"}\toprule",
            "method & " + " & ".join(t.columns) + r" \\ \midrule",
            *body,
            r"\bottomrule\end{tabular}\end{table}",
            "",
        ]
    return _write_text(Path(path), "\n".join(parts))


def write_speedup_md(rows: pd.DataFrame, path: str | Path) -> Path:
    """``speedup.md``: headline and speed-up table per (dataset, metric)."""
    parts = [
        "# Speed-up over the teacher\n\nSmallest teacher NFE whose quality is at least the"
        " method's (means over seeds); ratios are teacher / method.\n"
    ]
    for d, m, g in _groups(rows):
        sp = speedup(g, m)
        sp["value"] = sp["value"].map(fmt)
        for c in ("teacher_nfe", "nfe_ratio", "time_ratio"):
            sp[c] = sp[c].map(lambda v: "" if not math.isfinite(v) else f"{v:.3g}")
        parts.append(f"## {m} ({d})\n\n{headline(g, m)}\n\n{_md_table(sp, index=False)}\n")
    return _write_text(Path(path), "\n".join(parts))


def write_reports(rows: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """All reports for every metric present: tables, speed-ups, summary csv and plots."""
    out = Path(out_dir)
    paths = [
        write_table_md(rows, out / "table.md"),
        write_table_tex(rows, out / "table.tex"),
        write_speedup_md(rows, out / "speedup.md"),
        write_csv_atomic(summarize(rows), out / "summary.csv"),
    ]
    several = rows["dataset"].nunique() > 1
    for d, m, g in _groups(rows):
        stem = out / (f"{d}_{m}_vs_nfe" if several else f"{m}_vs_nfe")
        plot_metric_vs_nfe(g, m, stem)
        paths += [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    return paths
