"""Reports of a results folder: tables (md, tex), speed-up over the teacher, summary csv, plots.

``write_reports(rows, out)`` writes everything for every (dataset, metric) present.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.base.rows import write_csv
from benchmarks.report.convergence import improving
from benchmarks.report.plots import plot_metric_vs_nfe, plot_metric_vs_step
from benchmarks.report.speedup import headline, speedup, write_speedup_md
from benchmarks.report.style import method_color, order
from benchmarks.report.tables import fmt, groups, summarize, table, write_table_md, write_table_tex

__all__ = [
    "fmt",
    "headline",
    "method_color",
    "order",
    "plot_metric_vs_nfe",
    "speedup",
    "summarize",
    "table",
    "write_reports",
]


def write_reports(
    rows: pd.DataFrame, out_dir: str | Path, conv: pd.DataFrame | None = None
) -> list[Path]:
    """All reports for every metric present: tables, speed-ups, summary csv and plots; with the
    convergence rows ``conv``, metric-vs-step plots and the "still improving" marks too. A metric
    without any value (every cell failed) gets its tables, which show the failure notes, and no
    plot."""
    out = Path(out_dir)
    has_conv = conv is not None and len(conv)
    marks = {m: improving(conv, m) for m in conv["metric"].unique()} if has_conv else {}
    paths = [
        write_table_md(rows, out / "table.md", marks),
        write_table_tex(rows, out / "table.tex"),
        write_speedup_md(rows, out / "speedup.md"),
        write_csv(summarize(rows), out / "summary.csv"),
    ]
    several = rows["dataset"].nunique() > 1
    for d, m, g in groups(rows):
        if g["value"].isna().all():  # every cell failed: the tables carry the notes
            continue
        stem = out / (f"{d}_{m}_vs_nfe" if several else f"{m}_vs_nfe")
        plot_metric_vs_nfe(g, m, stem)
        paths += [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    for m in sorted(conv["metric"].unique()) if has_conv else []:
        stem = out / f"{m}_vs_step"
        plot_metric_vs_step(conv, m, stem)
        paths += [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    return paths
