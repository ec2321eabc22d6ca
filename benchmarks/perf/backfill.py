"""Add ``train_flops`` (and ``train_flops_once``) to finished cells written before the column existed.

    python -m benchmarks.perf.backfill DIR [--force]

Every finished cell under ``DIR`` (``<dataset>/runs/<cell>`` with a metrics.csv) whose rows lack
``train_flops`` gets the count a run of its ``config.json`` writes today
(``benchmarks.training.flops.cell_flops``: same method, network, batch, steps and stages, the
teacher charged at a stand-in network's forward). The count depends on shapes and step indices,
not on weights or on the machine, so it equals what the run would have written; the rows'
values are left as they are. Then the folder's metrics.csv and reports are rewritten
(``benchmarks.report.collect``). ``--force`` recounts cells that have the column.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from benchmarks.base.cli import OneLineParser
from benchmarks.base.rows import FLOOR, read_rows, write_csv
from benchmarks.base.schema import RunConfig, apply_updates
from benchmarks.data.batches import BatchSampler
from benchmarks.report.collect import cell_folders, report_folder
from benchmarks.report.folders import METRICS, method_of_cell, stored_config
from benchmarks.training import factory
from benchmarks.training.flops import cell_flops
from methods import METHODS

COLUMNS = ("train_flops", "train_flops_once")


def count(d: Path) -> tuple[float, float]:
    """``COLUMNS`` of the finished cell ``d``, from its config.json, on the CPU."""
    conf = stored_config(d)
    seed, name = conf.pop("seed"), method_of_cell(d.name)
    if name == FLOOR:
        return 0.0, 0.0
    cfg = apply_updates(RunConfig(), conf)
    problem = factory.load_problem(cfg, seed)
    interp, shape, cpu = factory.interpolant(cfg), problem.shape, torch.device("cpu")
    teacher = None
    if METHODS[name].needs_teacher or factory.wants_trained_teacher(cfg, name):
        fm = None if cfg.teacher == "exact" else factory.model(cfg, shape).requires_grad_(False)
        teacher = factory.teacher(cfg, problem, interp, fm)
    x1 = BatchSampler(problem.train, cfg.train.batch, seed=seed).next()
    with torch.random.fork_rng():
        return cell_flops(cfg, name, shape, teacher, cpu, interp, x1)


def backfill(root: Path, force: bool = False) -> int:
    """Count and write ``COLUMNS`` for every finished cell under ``root`` that lacks them (all
    with ``force``); rewrite each touched folder's reports. Returns the number of cells written."""
    done = 0
    for folder, cells in cell_folders(root).items():
        touched = []
        for d in cells:
            path = d / METRICS
            if not path.exists():
                continue
            rows = read_rows(path)
            if all(c in rows and rows[c].notna().all() for c in COLUMNS) and not force:
                continue
            flops = count(d)
            write_csv(rows.assign(**dict(zip(COLUMNS, flops, strict=True))), path)
            print(f"{d}: {flops[0]:.4g} FLOPs ({flops[1]:.4g} once)", flush=True)
            touched.append(d)
        if touched:
            report_folder(folder, cells)
            done += len(touched)
    return done


def main(argv: list[str] | None = None) -> None:
    p = OneLineParser(prog="python -m benchmarks.perf.backfill", description=__doc__.split("\n")[0])
    p.add_argument("dir", type=Path, help="a results folder, a sweep's, or anything above")
    p.add_argument("--force", action="store_true", help="recount cells that have the column")
    a = p.parse_args(argv)
    if not a.dir.is_dir():
        p.error(f"{a.dir} is not a folder")
    n = backfill(a.dir, a.force)
    print(f"train_flops written for {n} cells under {a.dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
