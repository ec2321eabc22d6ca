"""Merge every finished cell under a folder into its metrics.csv, tables and plots.

    python -m benchmarks.collect DIR

``DIR`` is a run's output (``results``), a sweep's (``results/sweeps/<name>``) or anything above;
each ``<dataset>/runs/<cell>/metrics.csv`` found is merged into ``<dataset>/metrics.csv`` (with
the same lock and key as a local run) and that folder's tables and plots are rewritten, so the
result is the same as ``python -m benchmarks.run --launcher local`` on the same cells.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from benchmarks.report import read_rows, update_rows, write_reports


def finished_cells(root: Path) -> dict[Path, list[Path]]:
    """``{dataset folder: [cell metrics.csv, ...]}`` for every finished cell under ``root``."""
    found: dict[Path, list[Path]] = {}
    for f in sorted(Path(root).rglob("runs/*/metrics.csv")):
        found.setdefault(f.parent.parent.parent, []).append(f)
    return found


def collect(root: Path, quiet: bool = False) -> list[Path]:
    """Merge and report each dataset folder under ``root``; returns the folders written."""
    written = []
    for folder, files in finished_cells(Path(root)).items():
        rows = pd.concat([read_rows(f) for f in files], ignore_index=True)
        merged = update_rows(folder / "metrics.csv", rows)
        write_reports(merged, folder)
        written.append(folder)
        if not quiet:
            print(f"{folder}: {len(files)} cells, {len(merged)} rows -> table.md, plots")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.collect", description=__doc__)
    p.add_argument("dir", type=Path)
    args = p.parse_args(argv)
    if not args.dir.is_dir():
        print(f"error: {args.dir} is not a folder", file=sys.stderr)
        return 2
    if not collect(args.dir):
        print(f"no finished cells under {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
