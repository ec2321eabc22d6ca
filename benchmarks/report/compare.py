"""Do two results folders hold the same numbers? The reproducibility verdict of ``make demo``.

    python -m benchmarks.report.compare NEW REFERENCE [--seeds 0]

Compares the metrics rows (``value`` and ``note``) that both ``<folder>/metrics.csv`` files have
for the same (method, dataset, seed, NFE, metric), restricted to ``--seeds``; an adaptive solver's
counted NFE is compared too. Prints one verdict line (identical, or the largest absolute and
relative differences and where they are) and the rows only one side has. Exit status 0 (with
``--check``: 1 when they differ); 2 when a folder has no metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.base.cli import OneLineParser
from benchmarks.base.rows import KEY, is_adaptive, read_rows


def _load(folder: Path, seeds: list[int] | None) -> pd.DataFrame:
    rows = read_rows(folder / "metrics.csv")
    if seeds is not None:
        rows = rows[rows["seed"].isin(seeds)]
    rows = rows.assign(counted=rows["nfe"])
    rows.loc[rows["method"].map(is_adaptive).astype(bool), "nfe"] = -1
    return rows.set_index(list(KEY))[["value", "note", "counted"]]


def compare(new: Path, ref: Path, seeds: list[int] | None = None) -> tuple[bool, list[str]]:
    """(identical, report lines) for the rows of ``new`` and ``ref`` (see the module doc)."""
    a, b = _load(new, seeds), _load(ref, seeds)
    both = a.add_suffix("_new").join(b.add_suffix("_ref"), how="inner")
    only = [
        f"only in {new}: {len(a.index.difference(b.index))} rows",
        f"only in {ref}: {len(b.index.difference(a.index))} rows",
    ]
    va, vb = both["value_new"].to_numpy(float), both["value_ref"].to_numpy(float)
    same = (va == vb) | (np.isnan(va) & np.isnan(vb))
    same &= (both["note_new"] == both["note_ref"]).to_numpy()
    same &= (both["counted_new"] == both["counted_ref"]).to_numpy()
    if len(both) and same.all():
        return True, [f"identical: {len(both)} rows equal bit for bit", *only]
    if not len(both):
        return False, ["no rows in common", *only]
    diff = np.abs(va - vb)
    rel = diff / np.maximum(np.abs(vb), 1e-12)
    worst = int(np.nanargmax(np.where(same, -1.0, rel)))
    where = ", ".join(f"{k}={v}" for k, v in zip(KEY, both.index[worst]))
    lines = [
        f"differs: {int((~same).sum())} of {len(both)} rows; largest relative difference "
        f"{rel[worst]:.3g} ({va[worst]:.6g} vs {vb[worst]:.6g} at {where}); largest absolute "
        f"{np.nanmax(np.where(same, 0.0, diff)):.3g}",
        *only,
    ]
    return False, lines


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m benchmarks.report.compare", description=__doc__)
    p.add_argument("new", type=Path, help="a dataset folder, e.g. results/demo/gmm")
    p.add_argument("reference", type=Path, help="e.g. results/gmm")
    p.add_argument("--seeds", help="comma list of seeds to compare (default: all)")
    p.add_argument("--check", action="store_true", help="exit 1 when the numbers differ")
    args = p.parse_args(argv)
    for folder in (args.new, args.reference):
        if not (folder / "metrics.csv").is_file():
            print(f"error: no metrics.csv in {folder}", file=sys.stderr)
            return 2
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    same, lines = compare(args.new, args.reference, seeds)
    print(f"{args.new} vs {args.reference}: " + "\n  ".join(lines))
    return 1 if args.check and not same else 0


if __name__ == "__main__":
    sys.exit(main())
