"""The main job: train every method under one protocol, sweep NFE, write tables and plots.

    python -m benchmarks.run --methods all --dataset gmm --budget small [--jobs 2]

Bad input exits with status 2 and one line naming the bad value, before anything is written.
A cell that fails is reported as failed (``diverged (step N)`` in the tables) and the others go
on; the run then exits 1 with one line per failed cell. Ctrl-C or SIGTERM saves every running
cell at its current step and exits 130 or 143; rerunning the same command resumes it, skips
finished cells and retries failed ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import cells
from benchmarks.base import stop
from benchmarks.base.cli import OneLineParser, add_slurm_args
from benchmarks.base.rows import failure_note
from benchmarks.config import (
    BUDGETS,
    ConfigError,
    Here,
    RunConfig,
    comma_list,
    load_config,
    parse_methods,
    parse_seeds,
)
from benchmarks.config import datasets as dataset_names
from benchmarks.data.loaders import DataError
from benchmarks.local import CellSpec, device_for, run_local
from benchmarks.report.collect import print_all_failed, report_folder
from benchmarks.report.folders import ERROR_LOG
from benchmarks.training import factory
from methods import METHODS


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", required=True, help=f"all or a comma list of: {', '.join(METHODS)}")
    p.add_argument("--dataset", default="gmm", help=f"one of: {', '.join(dataset_names())}")
    p.add_argument("--budget", default="small", help=f"one of: {', '.join(BUDGETS)}")
    p.add_argument("--nfe", help="comma list of NFEs, e.g. 1,2,4,8,16")
    p.add_argument("--seeds", default="0", help="comma list of integer seeds")
    p.add_argument("--out", default="results")
    p.add_argument("--data-root", help="folder (or .npz) holding the dataset")
    p.add_argument("--teacher", help="auto | exact | PATH to an fm checkpoint (default: dataset's)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--fid-weights", help="Inception weights file for offline FID")
    p.add_argument(
        "--launcher",
        default="local",
        choices=("local", "slurm", "debug"),
        help="local: this machine; slurm: job arrays (benchmarks.cluster)",
    )
    p.add_argument("--jobs", type=int, default=1, help="local: cells at once (one GPU each)")
    p.add_argument("--force", action="store_true", help="redo finished cells")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show a failed cell's traceback, stop")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("overrides", nargs="*", help="dotted key=value, e.g. train.lr=1e-4")
    add_slurm_args(p)
    return p


def build(args: argparse.Namespace) -> tuple[RunConfig, list[str], list[int]]:
    """The run config, methods and seeds, every one checked by ``config.validate``
    (ConfigError or DataError names the bad value)."""
    cli: dict = {"eval": {}}
    if args.nfe is not None:
        comma_list(args.nfe, "--nfe", "expected comma-separated integers >= 1, e.g. 1,2,4")
        cli["eval"]["nfe"] = args.nfe
    if args.fid_weights:
        cli["eval"]["fid_weights"] = args.fid_weights
    if args.data_root is not None:
        cli["data_root"] = args.data_root
    if args.teacher is not None:
        cli["teacher"] = args.teacher
    names = parse_methods(args.methods)
    here = Here(device=args.device, jobs=args.jobs, data=not args.dry_run)
    cfg = load_config(args.dataset, args.budget, cli, args.overrides, names, here)
    return cfg, names, parse_seeds(args.seeds)


def to_run(out: Path, cfg: RunConfig, plan_: list[cells.Cell], force: bool) -> dict:
    """{cell: status} of the cells that run: new, resumed, failed (retried), or a finished fm
    teacher whose checkpoint is gone while a distillation cell of its seed still needs it."""
    status = {c: cells.status(out, cfg, c, force) for c in plan_}
    todo = {c: s for c, s in status.items() if s != "done"}
    for c in plan_:
        needs = c.method in METHODS and factory.wants_trained_teacher(cfg, c.method)
        teacher = cells.Cell(cells.TEACHER, c.seed)
        gone = not (cells.cell_dir(out, cfg, teacher) / "ckpt.pt").exists()
        if c in todo and needs and cfg.teacher == "auto" and status.get(teacher) == "done" and gone:
            todo[teacher] = "retrain"
    return todo


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.out)
    try:
        cfg, names, seeds = build(args)
        cells_ = cells.plan(cfg, names, seeds)
        todo = to_run(out, cfg, cells_, args.force)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = device_for(args.device)
    if args.dry_run or not args.quiet:
        print(
            f"{len(cells_)} cells on {cfg.dataset} ({cfg.budget}: {cfg.train.steps} steps x batch "
            f"{cfg.train.batch}, net {cfg.net.kind}, NFE {list(cfg.eval.nfe)}, teacher "
            f"{cfg.teacher}) on {device} -> {out / cfg.dataset}"
        )
        for c in cells_:
            print(f"  {c.key:<16} {todo.get(c, 'done'):<7} {cells.cell_dir(out, cfg, c)}")
    specs = [CellSpec(str(out), cfg, c, args.device) for c in cells_ if c in todo]
    if args.launcher != "local":
        from benchmarks.cluster import launcher  # submitit: only for Slurm and its debug executor

        return launcher.submit(args, specs, out / cfg.dataset)
    if args.dry_run:
        return 0
    if args.force:
        for s in specs:
            cells.reset(s.dir)
    t0 = time.perf_counter()
    ran = run_local(specs, jobs=args.jobs, quiet=args.quiet, debug=args.debug)
    if stop.received() is not None:
        print(interrupted_line(ran), file=sys.stderr)
        return stop.exit_code()
    written = report_folder(out / cfg.dataset, [cells.cell_dir(out, cfg, c) for c in cells_])
    failed = [(s, st) for s, st in ran if st.get("state") == "failed"]
    if failed:
        print_all_failed(out / cfg.dataset)
    for s, st in failed:
        note = failure_note(st.get("kind", "error"), st.get("step"), st.get("reason", ""))
        print(
            f"{s.cell.key}: {note}: {st.get('reason', '')} (log: {s.dir / ERROR_LOG})",
            file=sys.stderr,
        )
    if not args.quiet:
        print(
            f"done in {time.perf_counter() - t0:.1f} s; wrote {len(written)} files under "
            f"{out / cfg.dataset}"
        )
    return 1 if failed else 0


def interrupted_line(ran: list[tuple[CellSpec, dict]]) -> str:
    """One line: where each stopped cell is, and how to go on."""
    parts = []
    for spec, st in ran:
        if st.get("state") != "stopped":
            continue
        step, total = st.get("step", 0), st.get("total", spec.cfg.train.steps)
        where = "in evaluation" if step >= total else f"at step {step} of {total}"
        parts.append(f"{spec.cell.key} {where}")
    what = ", ".join(parts) or "before any cell started"
    return f"interrupted: {what}; rerun the same command to resume"


if __name__ == "__main__":
    sys.exit(main())
