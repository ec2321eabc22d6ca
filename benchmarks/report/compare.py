"""Do new numbers agree with the committed ones? The reproducibility verdict of ``make demo``.

    python -m benchmarks.report.compare NEW REFERENCE [--seeds 0] [--methods fm,lmd,...]

Judges the metrics rows of ``NEW/metrics.csv`` of ``--seeds`` (default: every seed NEW has)
against the rows of the same seed in ``REFERENCE/metrics.csv``, with a tolerance built from
REFERENCE's seed spread (``benchmarks.report.verdict``; docs/reproducibility.md). ``--methods``
keeps the rows of those methods' cells on both sides (with the ``exact`` cell's baselines), for a
NEW that ran a subset. Prints one
verdict line first, ``NEW vs REFERENCE: identical | consistent | differs: ...``, then the rows
outside the seed-noise band (worst first) and the rows only one side has. Exit status 0 for
identical or consistent, 1 for differs, 2 when a folder has no metrics.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmarks.base.cli import OneLineParser
from benchmarks.base.rows import read_rows
from benchmarks.report.folders import method_of_cell
from benchmarks.report.verdict import Verdict, judge


def _of_cells(rows: pd.DataFrame, methods: Sequence[str] | None) -> pd.DataFrame:
    """The rows written by the cells of ``methods`` and the ``exact`` cell (None: every row)."""
    if methods is None:
        return rows
    return rows[rows["run"].astype(str).map(method_of_cell).isin([*methods, "exact"])]


def compare(
    new: Path, ref: Path, seeds: Sequence[int] | None = None, methods: Sequence[str] | None = None
) -> Verdict:
    """The verdict on ``new``'s rows of ``seeds`` (of ``methods``' cells) against ``ref``."""
    rows = [_of_cells(read_rows(Path(d) / "metrics.csv"), methods) for d in (new, ref)]
    return judge(rows[0], rows[1], seeds)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m benchmarks.report.compare", description=__doc__)
    p.add_argument("new", type=Path, help="a dataset folder, e.g. results/demo/gmm")
    p.add_argument("reference", type=Path, help="e.g. results/gmm")
    p.add_argument("--seeds", help="comma list of seeds to compare (default: NEW's seeds)")
    p.add_argument("--methods", help="comma list: compare only these methods' cells")
    p.add_argument("--limit", type=int, default=20, help="rows listed per kind (default 20)")
    # kept for old command lines: the exit status always says the verdict now
    p.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for folder in (args.new, args.reference):
        if not (folder / "metrics.csv").is_file():
            print(f"error: no metrics.csv in {folder}", file=sys.stderr)
            return 2
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    methods = args.methods.split(",") if args.methods else None
    v = compare(args.new, args.reference, seeds, methods)
    print(f"{args.new} vs {args.reference}: {v.headline()}")
    for line in v.lines(args.limit):
        print(f"  {line}")
    return 1 if v.kind == "differs" else 0


if __name__ == "__main__":
    sys.exit(main())
