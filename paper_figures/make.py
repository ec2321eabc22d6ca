"""Build the paper figures from the harness's results; never trains.

    python -m paper_figures.make [--results results] [--out paper_figures/out] [--only NAME[,NAME]]

Prints ``wrote <path>`` per file, ``note <name>: ...`` for parts left out, and ``skip <name>:
<reason> (run: <command>)`` when a figure's inputs are missing. Exit status: 0 (skips included),
1 if a figure failed with an error, 2 for a bad argument (one line naming the allowed names).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

from benchmarks.base.cli import OneLineParser
from paper_figures import FIGURES
from paper_figures.common import Skip


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m paper_figures.make", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results", type=Path, help="the harness's --out folder")
    p.add_argument("--out", default="paper_figures/out", type=Path, help="where figures go")
    p.add_argument("--only", help=f"comma list of: {', '.join(FIGURES)}")
    return p


def selected(only: str | None) -> list[str]:
    """Figure names to build, in the canonical order; ValueError naming a bad one."""
    if only is None:
        return list(FIGURES)
    names = [n.strip() for n in only.split(",") if n.strip()]
    bad = [n for n in names if n not in FIGURES] or ([] if names else [only])
    if bad:
        raise ValueError(f"unknown figure {bad[0]!r}; allowed: {', '.join(FIGURES)}")
    return [n for n in FIGURES if n in names]


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        names = selected(args.only)
    except ValueError as e:
        p.error(str(e))
    failed = 0
    for name in names:
        module = importlib.import_module(f"paper_figures.{name}")
        try:
            made = module.make(args.results, args.out)
        except Skip as e:
            print(f"skip {name}: {e}")
            continue
        except Exception:  # a real error: report it, build the other figures, exit 1
            failed += 1
            print(f"error {name}:", file=sys.stderr)
            traceback.print_exc()
            continue
        for note in getattr(made, "notes", []):
            print(f"note {name}: {note}")
        for path in made:
            print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
