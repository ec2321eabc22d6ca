"""Tidy metrics rows -> tables (md, tex, summary csv).

Cells are (method, NFE) means over seeds; ``n/a`` marks an NFE a method cannot do, ``—`` a cell
not run, and a cell whose every seed failed prints its failure note (``diverged (step N)``).
Every metric is lower-is-better; the adaptive baselines fill one "adaptive" column.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks.base.atomic import write_text
from benchmarks.base.rows import FLOOR, NA, is_adaptive, is_baseline, is_failure
from benchmarks.report.style import order

MISSING = "—"


def fmt(mean: float, std: float = math.nan) -> str:
    """``mean ± std`` with three significant digits of the mean (std to the same decimals)."""
    if not math.isfinite(mean):
        return MISSING if math.isnan(mean) else f"{mean}"  # inf: the sampler diverged
    d = 3 if mean == 0 else max(0, min(6, 2 - math.floor(math.log10(abs(mean)))))
    return f"{mean:.{d}f}" + (f" ± {std:.{d}f}" if math.isfinite(std) else "")


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean/std/count over seeds per (dataset, metric, method, nfe); an adaptive baseline is one
    cell per method.

    Columns: dataset, metric, method, nfe (mean counted NFE of an adaptive baseline), mean, std,
    n (seeds with a value), na (every row n/a), failed (seeds that failed), fail_note (the first
    failure note), sec (mean sample seconds per sample).
    """
    df = rows.copy()
    note = df["note"].fillna("").astype(str) if "note" in df else pd.Series("", index=df.index)
    df["na"], df["failed"] = note.eq(NA), note.map(is_failure)
    df["fail_note"] = note.where(df["failed"], "")
    if "sample_seconds" in df and "n_samples" in df:
        df["sec"] = df["sample_seconds"] / df["n_samples"].where(df["n_samples"] > 0)
    else:
        df["sec"] = math.nan
    df["cell"] = df["nfe"].where(~df["method"].map(is_adaptive).astype(bool), -1)
    keys = ["dataset", "metric", "method", "cell"]
    agg = dict(nfe=("nfe", "mean"), mean=("value", "mean"), std=("value", "std"))
    agg |= dict(n=("value", "count"), na=("na", "all"), failed=("failed", "sum"))
    agg |= dict(fail_note=("fail_note", "max"), sec=("sec", "mean"))
    return df.groupby(keys, dropna=False).agg(**agg).reset_index().drop(columns="cell")


def one(rows: pd.DataFrame, metric: str, valid: bool = False) -> pd.DataFrame:
    """``summarize`` of one metric on one dataset; ``valid``: only cells with a value."""
    sub = rows[rows["metric"] == metric]
    if sub["dataset"].nunique() > 1:
        raise ValueError(f"rows mix datasets {sorted(sub['dataset'].unique())}: filter first")
    s = summarize(sub)
    return s[~s["na"] & (s["n"] > 0)] if valid else s


def cell_text(r) -> str:
    """A summarized cell as text: the number, n/a, a failure note, or a number with its count of
    failed seeds."""
    if r.na:
        return NA
    if not r.n:
        return r.fail_note or MISSING
    text = fmt(r.mean, r.std)
    return text + (f" ({r.failed:.0f} failed)" if r.failed else "")


SEPARATION = 2.0  # standard errors: a method within this of the best is not told apart


def best_of(rivals: pd.DataFrame) -> list[str]:
    """The best (lowest mean) and every method not separable from it: its mean is within
    ``SEPARATION`` standard errors of the difference, sqrt(s_i^2 / n_i + s_best^2 / n_best)
    (both over >= 2 seeds; with one seed only equal means tie)."""
    b = rivals.loc[rivals["mean"].idxmin()]
    se = (rivals["std"] ** 2 / rivals["n"] + b["std"] ** 2 / b["n"]) ** 0.5
    close = (rivals["n"] >= 2) & (b["n"] >= 2) & (rivals["mean"] - b["mean"] <= SEPARATION * se)
    return sorted(rivals.loc[(rivals["mean"] <= b["mean"]) | close, "method"])


def table(
    rows: pd.DataFrame, metric: str, style: str = "plain", improving: set[str] = frozenset()
) -> pd.DataFrame:
    """Methods x NFE strings "mean ± std" (over seeds); "n/a" not applicable, "—" missing.

    An adaptive baseline fills the "adaptive" column as "value (nfe N)". Per NFE column the best
    and every method not separable from it (``best_of``; the exact floor excluded) are bold for
    ``style`` "md"/"tex"; ``attrs["best"]`` maps each column to them for every style. Methods in
    ``improving`` (still improving at the end of the budget) get a dagger.
    """
    s = one(rows, metric)
    fixed = s[~s["method"].map(is_adaptive).astype(bool)]
    nfes = sorted(int(n) for n in fixed["nfe"].dropna().unique())
    adaptive = s["method"].map(is_adaptive).astype(bool)
    cols = [str(n) for n in nfes] + (["adaptive"] if adaptive.any() else [])
    out = pd.DataFrame(
        MISSING, index=pd.Index(order(s["method"].unique()), name="method"), columns=cols
    )
    best: dict[str, list[str]] = {}
    for n in nfes:
        rivals = fixed[(fixed["nfe"] == n) & (fixed["method"] != FLOOR) & (fixed["n"] > 0)]
        if len(rivals):
            best[str(n)] = best_of(rivals)
    for r in s.itertuples():
        col = "adaptive" if is_adaptive(r.method) else str(int(r.nfe))
        text = cell_text(r)
        if is_adaptive(r.method) and r.n:
            text += f" (nfe {r.nfe:.0f})"
        if style == "tex":
            text = text.replace("±", "$\\pm$")
        if r.method in best.get(col, ()):
            text = {"md": f"**{text}**", "tex": f"\\textbf{{{text}}}"}.get(style, text)
        out.loc[r.method, col] = text
    out.index = [f"{m} †" if m in improving else m for m in out.index]
    out.index.name = "method"
    if style == "tex":
        out.index = [m.replace("_", "\\_") for m in out.index]
        out = out.replace(MISSING, "--")
    out.attrs["best"] = best
    return out


def groups(rows: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(dataset, metric, rows) for every pair present, sorted."""
    return [(d, m, g) for (d, m), g in rows.groupby(["dataset", "metric"], sort=True)]


def md_table(df: pd.DataFrame, index: bool = True) -> str:
    head = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, r in df.iterrows():
        cells = ([str(i)] if index else []) + [str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


LEGEND = (
    "mean ± std over seeds; lower is better; **bold**: the best per NFE and every method within "
    "2 standard errors of it (the exact floor excluded); †: still improving at the end of the "
    "budget (its NFE-1 value fell by > 5 % over the last half of training); n/a: not "
    "applicable; —: not run."
)


def write_table_md(rows: pd.DataFrame, path: str | Path, improving: dict | None = None) -> Path:
    """``table.md``: one section per (dataset, metric); ``improving``: {metric: methods}."""
    parts = [f"# Results vs NFE\n\n{LEGEND}\n"]
    for d, m, g in groups(rows):
        marked = (improving or {}).get(m, set())
        parts.append(f"## {m} ({d})\n\n{md_table(table(g, m, 'md', marked))}\n")
    made = provenance(rows)
    if len(made):
        parts.append(f"## How each row was made\n\n{md_table(made, index=False)}\n")
    return write_text(Path(path), "\n".join(parts))


PROVENANCE = ("teacher", "init", "weights", "budget", "train_steps", "seed")


def provenance(rows: pd.DataFrame) -> pd.DataFrame:
    """Per learned method: the velocity it learned from ("exact": the oracle's; "fm": a trained
    fm; "-": data only), how its network started, which weights were scored, the budget and
    steps, and the seeds; one row per distinct combination."""
    cols = [c for c in PROVENANCE if c in rows]
    if "teacher" not in cols:
        return pd.DataFrame()
    learned = rows[
        ~rows["method"].map(is_baseline) & rows["note"].fillna("").map(lambda n: not is_failure(n))
    ]
    df = learned[["method", *cols]].copy()
    df["teacher"] = df["teacher"].astype(object).fillna("").replace("", "-")
    keys = ["method", *[c for c in cols if c != "seed"]]
    out = df.groupby(keys, dropna=False)["seed"].agg(lambda s: ",".join(map(str, sorted(set(s)))))
    return out.reset_index().rename(columns={"seed": "seeds"})


def write_table_tex(rows: pd.DataFrame, path: str | Path) -> Path:
    """``table.tex``: one booktabs table per (dataset, metric)."""
    parts = ["% generated by benchmarks.report; needs \\usepackage{booktabs}"]
    for d, m, g in groups(rows):
        t = table(g, m, "tex")
        n_learned = sum(not is_baseline(name) for name in order(g["method"].unique()))
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
    return write_text(Path(path), "\n".join(parts))
