"""The main job: train every method under one protocol, sweep NFE, write tables and plots.

    python -m benchmarks.run --methods all --dataset gmm --budget small

Bad input exits with status 2 and one line naming the bad value, before anything is written.
Rerunning skips finished cells and resumes unfinished ones from their checkpoints.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks import slurm
from benchmarks.cells import (
    EXACT,
    TEACHER,
    Cell,
    cell_dir,
    check_cell,
    load_teacher_checkpoint,
    make_teacher,
    run_cell,
)
from benchmarks.collect import collect
from benchmarks.config import BUDGETS, ConfigError, RunConfig, datasets, load_config
from benchmarks.data import DataError
from benchmarks.problems import load_problem
from benchmarks.report import update_rows, write_reports
from methods import METHODS, build_config


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        self.exit(2, f"error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", required=True, help=f"all or a comma list of: {', '.join(METHODS)}")
    p.add_argument("--dataset", default="gmm", help=f"one of: {', '.join(datasets())}")
    p.add_argument("--budget", default="small", help=f"one of: {', '.join(BUDGETS)}")
    p.add_argument("--nfe", help="comma list of NFEs, e.g. 1,2,4,8,16")
    p.add_argument("--seeds", default="0", help="comma list of integer seeds")
    p.add_argument("--out", default="results")
    p.add_argument("--data-root", help="folder (or .npz) holding the dataset")
    p.add_argument("--teacher", help="auto | exact | PATH to an fm checkpoint (default: preset)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--fid-weights", help="Inception weights file for offline FID")
    p.add_argument(
        "--launcher",
        default="local",
        choices=("local", "slurm", "debug"),
        help="local: this process; slurm: one job array (benchmarks.slurm); debug: submitit in-process",
    )
    p.add_argument("--force", action="store_true", help="redo finished cells")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("overrides", nargs="*", help="dotted key=value, e.g. train.lr=1e-4")
    slurm.add_slurm_args(p)
    return p


def parse_methods(text: str) -> list[str]:
    names = list(METHODS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ConfigError(
            f"unknown method {(bad or [text])[0]!r}; allowed: all, {', '.join(METHODS)}"
        )
    return names


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"bad --seeds {text!r}: expected comma-separated integers") from None
    if any(s < 0 for s in seeds):
        raise ConfigError(f"bad --seeds {text!r}: seeds must be >= 0")
    return seeds


def build(args: argparse.Namespace) -> tuple[RunConfig, list[str], list[int]]:
    cli: dict = {"eval": {}}
    if args.nfe is not None:
        cli["eval"]["nfe"] = args.nfe
    if args.fid_weights:
        if not Path(args.fid_weights).is_file():
            raise ConfigError(f"--fid-weights {args.fid_weights!r} is not a file")
        cli["eval"]["fid_weights"] = args.fid_weights
    if args.data_root is not None:
        if not Path(args.data_root).exists():
            raise ConfigError(f"--data-root {args.data_root!r} does not exist")
        cli["data_root"] = args.data_root
    if args.teacher is not None:
        cli["teacher"] = args.teacher
    cfg = load_config(args.dataset, args.budget, cli, args.overrides)
    names = parse_methods(args.methods)
    for name in cfg.method:
        if name not in METHODS:
            raise ConfigError(
                f"unknown method {name!r} in overrides; allowed: {', '.join(METHODS)}"
            )
        try:
            build_config(METHODS[name], cfg.method[name])
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
    if cfg.teacher not in ("auto", "exact") and not Path(cfg.teacher).is_file():
        raise ConfigError(
            f"--teacher {cfg.teacher!r}: expected auto, exact or an existing checkpoint file"
        )
    return cfg, names, parse_seeds(args.seeds)


def plan(cfg: RunConfig, names: list[str], seeds: list[int], oracle: bool) -> list[Cell]:
    """Cells in run order: the fm teacher first when auto-distillation needs it, the exact floor."""
    needs = any(METHODS[m].needs_teacher for m in names)
    if needs and cfg.teacher == "exact" and not oracle:
        raise ConfigError(
            f"--teacher exact needs an oracle dataset; {cfg.dataset!r} has none (use auto)"
        )
    order = [TEACHER] if (TEACHER in names or (needs and cfg.teacher == "auto")) else []
    order += [m for m in names if m != TEACHER] + ([EXACT] if oracle else [])
    return [Cell(m, s) for s in seeds for m in order]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg, names, seeds = build(args)
        problems = {s: load_problem(cfg, s) for s in seeds[:1]}
        oracle = problems[seeds[0]].oracle is not None
        cells = plan(cfg, names, seeds, oracle)
        out = Path(args.out)
        status = {c: check_cell(out, cfg, c, args.force) for c in cells}
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if args.dry_run or not args.quiet:
        print(
            f"{len(cells)} cells on {cfg.dataset} ({cfg.budget}: {cfg.train.steps} steps x batch "
            f"{cfg.train.batch}, net {cfg.net.kind}, NFE {list(cfg.eval.nfe)}, teacher {cfg.teacher}) "
            f"on {device} -> {out / cfg.dataset}"
        )
        for c in cells:
            print(f"  {c.key:<16} {status[c]:<7} {cell_dir(out, cfg, c)}")
    if args.launcher != "local":
        return _launch(args, cfg, [c for c in cells if args.force or status[c] != "done"], out)
    if args.dry_run:
        return 0
    frames, t0 = [], time.perf_counter()
    for seed in seeds:
        problem = problems.get(seed) or load_problem(cfg, seed)
        teacher_fm, cost = None, (0, 0.0)
        if cfg.teacher not in ("auto", "exact"):
            teacher_fm = load_teacher_checkpoint(Path(cfg.teacher), cfg, problem.shape, device)
        teacher = make_teacher(cfg, problem, teacher_fm)
        for cell in (c for c in cells if c.seed == seed):
            need = cell.method == TEACHER and cfg.teacher == "auto" and len(cells) > 1
            rows, model = run_cell(
                out, cfg, cell, problem, teacher, cost, device, args.quiet, args.force, need
            )
            if cell.method == TEACHER and cfg.teacher == "auto":
                teacher = make_teacher(cfg, problem, model)
                cost = (int(rows["train_steps"].iloc[0]), float(rows["train_seconds"].iloc[0]))
            frames.append(rows)
    rows = update_rows(out / cfg.dataset / "metrics.csv", pd.concat(frames, ignore_index=True))
    written = write_reports(rows, out / cfg.dataset)
    if not args.quiet:
        print(
            f"done in {time.perf_counter() - t0:.1f} s; wrote {len(written)} files under {out / cfg.dataset}"
        )
    return 0


def _launch(args: argparse.Namespace, cfg: RunConfig, cells: list[Cell], out: Path) -> int:
    """Cells as one job array (two with an auto teacher), submitted through submitit."""
    try:
        res = slurm.resources(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    specs = [slurm.CellSpec(str(out), cfg, c, args.device) for c in cells]
    if args.force and not args.dry_run:
        for s in specs:
            shutil.rmtree(s.dir, ignore_errors=True)
    specs = specs if args.dry_run else slurm.to_submit(specs)
    if specs:
        slurm.launch(specs, args.launcher, res, out / ".submitit" / "%j", args.wait, args.dry_run)
    if not args.dry_run and (args.wait or args.launcher == "debug"):
        collect(out / cfg.dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
