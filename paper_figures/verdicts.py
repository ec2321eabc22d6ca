"""The three verdicts (``verdicts.md``): each method's one-step map error on an oracle dataset at
equal steps, at equal training compute and at convergence, with its rank in each.

- equal steps: the ``small`` tier's rows (``<results>/<d>``), NFE 1, mean ± std over seeds;
- equal compute: the error when the method has spent the FLOPs fm spends in the small tier's
  steps, read off its longest tier's probes (``paper_figures.compute.at_compute``): a method
  dearer per step than fm is read early in its run, a cheaper one late; "> run" when its run
  ended before;
- converged: the ``long`` tier's rows (``<results>/long/<d>``), NFE 1, † where its error still
  fell by more than 5 % over the last half (``benchmarks.report.convergence.improving``); "—"
  when the dataset has no long tier.

Ranks count from 1 (lowest error) among the methods with a number in that column. The line
under each table names the methods whose rank moves most between the verdicts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.base.atomic import atomic_open
from benchmarks.base.rows import CONVERGENCE, is_baseline, read_rows
from benchmarks.report.convergence import improving, probe_nfe
from paper_figures import style
from paper_figures.common import Made, Skip, run_command
from paper_figures.compute import ERRORS, TEACHER, at_compute, cost, probes, tiers

NAME = "verdicts"
MOVERS = 5  # methods named under a table: the largest rank changes


def one_step(folder: Path, error: str) -> pd.DataFrame:
    """Per learned method: mean and std over seeds of ``error`` at NFE 1."""
    rows = read_rows(folder / "metrics.csv")
    rows = rows[(rows["metric"] == error) & (rows["nfe"] == 1) & rows["value"].notna()]
    rows = rows[~rows["method"].map(is_baseline) & (rows["method"] != TEACHER)]
    return rows.groupby("method")["value"].agg(["mean", "std"]).fillna(0.0)


def ranks(values: pd.Series) -> pd.Series:
    return values.rank(method="min").astype("Int64")


def verdicts(small: Path, long: Path | None, conv: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(table, error metric) of one dataset, ``conv`` the probes of its longest tier
    (``compute.probes``): columns steps/compute/converged (mean, std)."""
    metric = read_rows(small / "metrics.csv")["metric"]
    error = next(e for e in ERRORS if e in set(metric))
    out = one_step(small, error).add_prefix("steps_")
    c = cost(small)
    fm = c[c.index.str.startswith(f"{TEACHER}-s")]
    level = float((fm["train_flops"]).mean()) if len(fm) else np.nan
    at = [at_compute(conv[conv["method"] == m], level, False) for m in out.index]
    out["compute_mean"], out["compute_std"], out["compute_mark"] = map(list, zip(*at, strict=True))
    if long is not None:
        done = one_step(long, error).add_prefix("converged_")
        out = out.join(done, how="outer")
        lconv = read_rows(long / CONVERGENCE) if (long / CONVERGENCE).exists() else None
        marked = improving(lconv, error) if lconv is not None else set()
        out["converged_mark"] = ["†" if m in marked else "" for m in out.index]
    return out, error


def markdown(t: pd.DataFrame, long: bool) -> list[str]:
    """The table's rows and the movers' line."""
    cols = [("steps", "equal steps"), ("compute", "equal compute"), ("converged", "converged")]
    cols = cols if long else cols[:2]
    r = {k: ranks(t[f"{k}_mean"]) for k, _ in cols}
    head = "| method | " + " | ".join(f"{h} | rank" for _, h in cols) + " |"
    lines = [head, "|---" + "|---:|---:" * len(cols) + "|"]
    for m in style.order(t.index):
        cells = []
        for k, _ in cols:
            mean, mark = t.loc[m, f"{k}_mean"], str(t.loc[m].get(f"{k}_mark", "") or "")
            if pd.isna(mean):
                cells += [mark or "—", ""]
                continue
            cells += [f"{mean:.3g} ± {t.loc[m, f'{k}_std']:.2g}{' ' + mark if mark else ''}"]
            cells += [str(r[k][m])]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    spread = pd.concat(r.values(), axis=1).astype(float)
    moves = (spread.max(axis=1) - spread.min(axis=1)).sort_values(ascending=False, kind="stable")
    named = [
        f"{m} ({' → '.join('—' if pd.isna(v) else str(int(v)) for v in spread.loc[m])})"
        for m in moves.index[:MOVERS]
        if moves[m] > 0
    ]
    if named:
        lines += ["", "Largest rank changes (" + " → ".join(h for _, h in cols) + "): "]
        lines[-1] += ", ".join(named) + "."
    return lines


CURVE = (1 / 3, 1 / 2, 2 / 3, 5 / 6, 1)  # fractions of the long run shown for a † method


def _change(ratio: float) -> str:
    """A relative change as "-12 %" (0 % unsigned)."""
    pct = round(100 * (ratio - 1))
    return f"{pct:+d} %" if pct else "0 %"


def still_improving(long: Path, error: str) -> list[str]:
    """The curves behind the long tier's daggers: each † method's NFE-1 error (mean over seeds)
    at ``CURVE`` of its run, the fall over the last half (the dagger's test) and over the last
    sixth (how fast it still falls at the end)."""
    if not (long / CONVERGENCE).exists():
        return []
    conv = read_rows(long / CONVERGENCE)
    marked = sorted(improving(conv, error))
    if not marked:
        return ["", "No method of the long tier is still improving (†)."]
    sub = probe_nfe(conv[conv["metric"] == error])
    mean = sub.groupby(["method", "step"])["value"].mean()
    steps = sorted(sub["step"].unique())
    last = steps[-1]
    at = [min(steps, key=lambda k, f=f: abs(k - f * last)) for f in CURVE]
    lines = [
        "",
        f"The † of the long tier, with their curves ({error}, NFE 1, mean over seeds):",
        "",
    ]
    lines += ["| method | " + " | ".join(f"step {k}" for k in at) + " | last half | last sixth |"]
    lines += ["|---" + "|---:" * (len(at) + 2) + "|"]
    for m in style.order(marked):
        v = [float(mean.get((m, k), np.nan)) for k in at]
        cells = [f"{x:.3g}" for x in v] + [_change(v[-1] / v[1]), _change(v[-1] / v[-2])]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def make(results: Path, out: Path) -> list[Path]:
    """Write ``verdicts.md``; Skip when no oracle dataset has FLOP counts and probes."""
    deepest = tiers(results)
    lines = [
        "# Three verdicts: equal steps, equal compute, converged",
        "",
        __doc__.split("\n\n")[1],
    ]
    found = 0
    for d, folder in deepest.items():
        small = Path(results) / d
        conv = probes(folder) if (small / "metrics.csv").exists() else pd.DataFrame()
        if conv.empty:
            continue
        long = Path(results) / "long" / d
        long = long if (long / "metrics.csv").exists() else None
        t, error = verdicts(small, long, conv)
        steps = int(cost(small)["train_steps"].max())
        lines += ["", f"## {d}: {error} at NFE 1 (small tier: {steps} steps)", ""]
        lines += markdown(t, long is not None)
        if long is not None:
            lines += still_improving(long, error)
        found += 1
    if not found:
        raise Skip(f"no oracle dataset under {results} has train_flops and probes", run_command())
    path = Path(out) / f"{NAME}.md"
    with atomic_open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return Made([path], {}, [])
