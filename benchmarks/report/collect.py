"""Merge every cell under a folder into its metrics.csv, tables and plots.

    python -m benchmarks.report.collect DIR

``DIR`` is a run's output (``results``), a sweep's (``results/sweeps/<name>``) or anything above;
every ``<dataset>/runs/<cell>`` found contributes its rows (finished cells their metrics, failed
cells one note per NFE and metric) to ``<dataset>/metrics.csv`` (with the same lock and key as a
local run) and that folder's tables and plots are rewritten: the same result as the local
launcher on the same cells.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from benchmarks.base.cli import OneLineParser
from benchmarks.base.rows import CONVERGENCE, read_rows, update_rows, write_csv
from benchmarks.report import write_reports
from benchmarks.report.folders import CONFIG, rows_of


def cell_folders(root: Path) -> dict[Path, list[Path]]:
    """``{dataset folder: [cell folder, ...]}`` for every cell under ``root``."""
    found: dict[Path, list[Path]] = {}
    for f in sorted(Path(root).rglob(f"runs/*/{CONFIG}")):
        found.setdefault(f.parent.parent.parent, []).append(f.parent)
    return found


def report_folder(folder: Path, cells: list[Path]) -> list[Path]:
    """Merge the rows of ``cells`` into ``folder/metrics.csv``, gather the convergence rows of
    every cell of ``folder`` into ``folder/convergence.csv``, and rewrite its reports."""
    frames = [r for r in (rows_of(d) for d in cells if d.is_dir()) if len(r)]
    if not frames:
        return []
    merged = update_rows(folder / "metrics.csv", pd.concat(frames, ignore_index=True))
    found = sorted((folder / "runs").glob(f"*/{CONVERGENCE}"))
    conv = pd.concat([read_rows(p) for p in found], ignore_index=True) if found else None
    if conv is not None:
        order = ["method", "seed", "step", "nfe", "metric"]
        write_csv(
            conv.sort_values(order, kind="stable").reset_index(drop=True), folder / CONVERGENCE
        )
    return write_reports(merged, folder, conv)


def failure_table(rows: pd.DataFrame) -> str | None:
    """When no row has a value (every cell failed): a table of each cell's failure note (md),
    else None."""
    if not len(rows) or rows["value"].notna().any():
        return None
    cells = rows.drop_duplicates("run") if "run" in rows else rows.drop_duplicates(["method"])
    lines = ["| cell | failure |", "|---|---|"]
    for r in cells.itertuples():
        lines.append(f"| {getattr(r, 'run', r.method)} | {r.note or 'no value'} |")
    return "\n".join(lines)


def print_all_failed(folder: Path) -> bool:
    """Print ``folder``'s failure table when every cell of it failed; whether it did."""
    path = Path(folder) / "metrics.csv"
    table = failure_table(read_rows(path)) if path.exists() else None
    if table:
        print(f"{folder}: every cell failed, no value to report\n{table}")
    return table is not None


def collect(root: Path, quiet: bool = False) -> list[Path]:
    """Merge and report each dataset folder under ``root``; returns the folders written."""
    written = []
    for folder, cells in cell_folders(Path(root)).items():
        if report_folder(folder, cells):
            written.append(folder)
            if not quiet:
                print(f"{folder}: {len(cells)} cells -> metrics.csv, table.md, plots")
    return written


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m benchmarks.report.collect", description=__doc__)
    p.add_argument("dir", type=Path)
    args = p.parse_args(argv)
    if not args.dir.is_dir():
        print(f"error: {args.dir} is not a folder", file=sys.stderr)
        return 2
    written = collect(args.dir)
    if not written:
        print(f"no finished or failed cells under {args.dir}")
    failed = [f for f in written if print_all_failed(f)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
