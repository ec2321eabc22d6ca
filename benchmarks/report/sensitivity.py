"""How much each method's result depends on one shared setting, read from a sweep (issue #21).

    python -m benchmarks.report.sensitivity results/sweeps/gmm-lr [--key train.lr]
        [--default 1e-3] [--dataset gmm] [--metric flowmap_err] [--threshold 0.1]

``DIR`` is a sweep whose grid has one key (``benchmarks/sweeps/gmm_lr.yaml``): its variant
folders ``DIR/<key>=<value>/<dataset>/metrics.csv`` are read, and ``DIR/sensitivity.md`` and
``DIR/sensitivity.csv`` written. Per method and criterion (the one-step value; the best value
over NFE <= 4) they give the value at each setting (mean over seeds), the best setting, the
spread (worst / best value over the settings; inf when a setting failed) and the gain of the best
setting over the shared default, ``(default - best) / default``. The same rule flags every
method: gain > threshold (10 %). Learned methods come first; the trained fm's solves (fm-euler,
fm-heun) are shown apart, and the exact velocity's rows, which no setting touches, not at all.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from benchmarks.base.atomic import write_text
from benchmarks.base.cli import OneLineParser
from benchmarks.base.rows import FLOOR, is_adaptive, is_baseline, read_rows, write_csv
from benchmarks.report.tables import fmt, md_table

ONE_STEP, FEW_STEP = "nfe 1", "best nfe <= 4"
MAX_NFE = 4


def settings(root: Path, key: str) -> dict[str, float]:
    """``{folder name: value}`` of every variant folder ``<key>=<value>`` under ``root``."""
    found = {}
    for d in sorted(Path(root).glob(f"{key}=*")):
        text = d.name.split("=", 1)[1]
        try:
            found[d.name] = float(text)
        except ValueError:
            raise ValueError(f"{d}: {text!r} is not a number; one numeric grid key only") from None
    return found


def load(root: Path, key: str, dataset: str) -> pd.DataFrame:
    """The metrics rows of every variant, with its ``setting`` (float) and ``label`` (text)."""
    frames = []
    for name, value in settings(root, key).items():
        path = Path(root) / name / dataset / "metrics.csv"
        if path.exists():
            rows = read_rows(path)
            frames.append(rows.assign(setting=value, label=name.split("=", 1)[1]))
    if not frames:
        raise FileNotFoundError(f"no {key}=*/{dataset}/metrics.csv under {root}")
    return pd.concat(frames, ignore_index=True)


def _mean(s: pd.Series) -> float:
    return float(s.mean(skipna=False))  # a failed seed fails the setting


def criteria(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (method, setting, criterion): the one-step value and the best over NFE <= 4 (means
    over seeds). Columns: group (learned | fm solves), method, setting, label, criterion, value."""
    sub = rows[(rows["metric"] == metric) & (rows["nfe"] <= MAX_NFE)]
    sub = sub[~sub["method"].map(is_adaptive) & ~sub["method"].str.startswith(FLOOR)]
    means = sub.groupby(["method", "setting", "label", "nfe"])["value"].agg(_mean).reset_index()
    out = []
    for (method, setting, label), g in means.groupby(["method", "setting", "label"]):
        one = g.loc[g["nfe"] == 1, "value"]
        few = float(g["value"].min()) if g["value"].notna().any() else math.nan  # n/a NFEs skipped
        group = "fm solves" if is_baseline(method) else "learned"
        base = dict(group=group, method=method, setting=setting, label=label)
        out.append(
            base | dict(criterion=ONE_STEP, value=float(one.iloc[0]) if len(one) else math.nan)
        )
        out.append(base | dict(criterion=FEW_STEP, value=few))
    return pd.DataFrame(out)


def _summary(g: pd.DataFrame, default: float, threshold: float) -> dict:
    """The best setting, spread, gain and flag of one method and criterion."""
    g = g.sort_values("setting")
    ok = g[g["value"].map(math.isfinite)]
    row = {f"{r.label}": r.value for r in g.itertuples()}
    row |= dict(best="", best_value=math.nan, spread=math.nan, gain=math.nan, flag=False)
    if ok.empty:
        return row
    is_default = ok["setting"].map(lambda s: math.isclose(s, default, rel_tol=1e-9))
    b = (
        ok.assign(_d=~is_default).sort_values(["value", "_d"], kind="stable").iloc[0]
    )  # tie: default
    row |= dict(best=b["label"], best_value=float(b["value"]))
    row["spread"] = float(ok["value"].max() / b["value"]) if len(ok) == len(g) else math.inf
    at = g[g["setting"].map(lambda s: math.isclose(s, default, rel_tol=1e-9))]
    if len(at):
        d = float(at["value"].iloc[0])
        row["gain"] = (d - b["value"]) / d if math.isfinite(d) else math.inf
        row["flag"] = bool(row["gain"] > threshold)
    return row


def sensitivity(long: pd.DataFrame, default: float, threshold: float = 0.1) -> pd.DataFrame:
    """One row per (group, criterion, method): the value at each setting (a column per label,
    sorted by setting), best, best_value, spread, gain over ``default`` and flag."""
    labels = list(long.sort_values("setting")["label"].drop_duplicates())
    out = []
    for (group, crit, method), g in long.groupby(["group", "criterion", "method"], sort=False):
        s = _summary(g, default, threshold)
        out.append(dict(group=group, criterion=crit, method=method) | s)
    cols = ["group", "criterion", "method", *labels, "best", "best_value", "spread", "gain", "flag"]
    df = pd.DataFrame(out, columns=cols)
    df["_g"] = df["group"].map({"learned": 0, "fm solves": 1})
    df["_c"] = df["criterion"].map({ONE_STEP: 0, FEW_STEP: 1})
    df = df.sort_values(["_g", "_c", "method"], kind="stable").drop(columns=["_g", "_c"])
    return df.reset_index(drop=True)


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else ("inf" if math.isinf(x) else f"{100 * x:+.1f} %")


def _section(df: pd.DataFrame, labels: list[str], key: str, default: float) -> str:
    """One md table: a method per row."""
    head = {
        lab: f"{key}={lab}" + (" (default)" if math.isclose(float(lab), default) else "")
        for lab in labels
    }
    t = pd.DataFrame(index=pd.Index(df["method"], name="method"))
    for lab in labels:
        t[head[lab]] = [fmt(v) for v in df[lab]]
    t["best"] = list(df["best"].replace("", "—"))
    t["spread"] = [fmt(v) if math.isfinite(v) or math.isinf(v) else "—" for v in df["spread"]]
    t["gain over default"] = [_pct(v) for v in df["gain"]]
    t["> threshold"] = ["**yes**" if f else "" for f in df["flag"]]
    return md_table(t)


def headline(df: pd.DataFrame, key: str, threshold: float) -> list[str]:
    """One line per criterion: the learned methods the rule flags, with their gain and setting."""
    lines = []
    for crit in (ONE_STEP, FEW_STEP):
        hit = df[(df["group"] == "learned") & (df["criterion"] == crit) & df["flag"]]
        hit = hit.sort_values("gain", ascending=False)
        names = ", ".join(
            f"{r.method} ({_pct(r.gain)} at {key}={r.best})" for r in hit.itertuples()
        )
        lines.append(f"- {crit}: {len(hit)} method(s) gain > {threshold:.0%}: {names or 'none'}")
    return lines


def markdown(df: pd.DataFrame, key: str, default: float, threshold: float, title: str) -> str:
    """The whole sensitivity.md."""
    labels = [
        c
        for c in df.columns
        if c not in {"group", "criterion", "method", "best", "best_value", "spread", "gain", "flag"}
    ]
    parts = [
        f"# Sensitivity to {key} ({title})",
        "",
        f"Value at each setting (mean over seeds; lower is better); best: the setting of the lowest "
        f"value; spread: worst / best value over the settings (inf: a setting failed); gain: "
        f"(value at the default {key}={default:g} - best) / value at the default. "
        f"One rule for every method: **yes** when the gain exceeds {threshold:.0%}.",
        "",
        *headline(df, key, threshold),
    ]
    for group in ("learned", "fm solves"):
        for crit in (ONE_STEP, FEW_STEP):
            sub = df[(df["group"] == group) & (df["criterion"] == crit)]
            if len(sub):
                parts += ["", f"## {group}: {crit}", "", _section(sub, labels, key, default)]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m benchmarks.report.sensitivity", description=__doc__)
    p.add_argument("dir", type=Path, help="a sweep folder, e.g. results/sweeps/gmm-lr")
    p.add_argument("--key", default="train.lr", help="the grid key (default: train.lr)")
    p.add_argument("--default", type=float, default=1e-3, help="the shared default setting")
    p.add_argument("--dataset", default="gmm")
    p.add_argument("--metric", default="flowmap_err")
    p.add_argument("--threshold", type=float, default=0.1, help="flag a gain above this")
    args = p.parse_args(argv)
    try:
        long = criteria(load(args.dir, args.key, args.dataset), args.metric)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    df = sensitivity(long, args.default, args.threshold)
    title = f"{args.dataset}, {args.metric}, {args.dir.name}"
    write_csv(df, args.dir / "sensitivity.csv")
    md = markdown(df, args.key, args.default, args.threshold, title)
    write_text(args.dir / "sensitivity.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
