"""A YAML grid of cells over datasets, methods, seeds and config keys, run as job arrays.

    python -m benchmarks.cluster.sweep benchmarks/sweeps/gmm_smoke.yaml [--launcher slurm|local|debug]
        [--dry-run] [--wait] [--out DIR] [--partition P --gpus 1 --time 600 ...]

A sweep file::

    name: gmm-lr                  # cells go to <out>/<name>/<variant>/<dataset>/runs/<cell>
    budget: smoke                 # smoke | small | paper
    datasets: [gmm]
    methods: [fm, lmd]            # or: all
    seeds: [0, 1]
    teacher: exact                # optional: auto | exact | PATH
    set: {eval.nfe: [1, 2]}       # overrides shared by every variant
    grid: {train.lr: [1e-4, 2e-4]}  # one variant per combination (folder "train.lr=1e-4")
    slurm: {partition: gpu, gpus_per_node: 1, timeout_min: 600, array_parallelism: 16}

Slurm options come from, in rising order: built-in defaults, a site file named by
``--slurm-config`` or ``$FLOWMAP_SLURM_CONFIG`` (accounts, partitions, setup lines: keep it out
of the repository), the file's ``slurm:`` section, CLI flags. A rerun submits only the cells that
are neither finished nor pending/running: failed, cancelled or never-run ones.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import yaml

from benchmarks import cells
from benchmarks.base.cli import OneLineParser, add_slurm_args
from benchmarks.cluster import launcher
from benchmarks.config import ConfigError, load_config, parse_methods
from benchmarks.data.loaders import DataError
from benchmarks.local import CellSpec, run_local
from benchmarks.report.collect import collect

KEYS = ("name", "budget", "datasets", "methods", "seeds", "teacher", "set", "grid", "slurm", "out")


def _list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _override(key: str, value) -> str:
    text = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    return f"{key}={text}"


def variants(grid: dict) -> list[tuple[str, list[str]]]:
    """(folder name, overrides) per combination of the grid; one ``base`` variant when empty."""
    if not grid:
        return [("base", [])]
    keys = list(grid)
    out = []
    for combo in itertools.product(*(_list(grid[k]) for k in keys)):
        overrides = [_override(k, v) for k, v in zip(keys, combo)]
        out.append((",".join(o.replace("/", "_") for o in overrides), overrides))
    return out


def load_sweep(path: Path) -> dict:
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read sweep file {path}: {e}") from None
    bad = [k for k in spec if k not in KEYS]
    if bad:
        raise ConfigError(f"unknown sweep key {bad[0]!r}; allowed: {', '.join(KEYS)}")
    for key in ("datasets", "methods"):
        if not spec.get(key):
            raise ConfigError(f"sweep file {path} needs {key!r}")
    spec.setdefault("name", path.stem)
    return spec


def expand(spec: dict, out: Path, device: str = "auto", data_root: str = "") -> list[CellSpec]:
    """Every cell of the sweep, checked (a stored config that differs is an error)."""
    methods = spec["methods"]
    names = parse_methods(methods if isinstance(methods, str) else ",".join(methods))
    seeds = [int(s) for s in _list(spec.get("seeds", [0]))]
    fixed = [_override(k, v) for k, v in (spec.get("set") or {}).items()]
    cli = {"teacher": spec["teacher"]} if spec.get("teacher") else {}
    if data_root:
        cli["data_root"] = data_root
    found = []
    for variant, overrides in variants(spec.get("grid") or {}):
        root = out / spec["name"] / variant
        for dataset in _list(spec["datasets"]):
            cfg = load_config(dataset, spec.get("budget", "small"), cli, fixed + overrides, names)
            for cell in cells.plan(cfg, names, seeds):
                cells.status(root, cfg, cell)  # a stored config that differs is an error
                found.append(CellSpec(str(root), cfg, cell, device))
    return found


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m benchmarks.cluster.sweep", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("sweep", type=Path, help="a sweep YAML file, e.g. benchmarks/sweeps/*.yaml")
    p.add_argument("--launcher", choices=("slurm", "local", "debug"), help="default: slurm")
    p.add_argument("--out", help="root folder (default: the file's out, else results/sweeps)")
    p.add_argument("--data-root", default="", help="dataset folder on the cluster (site path)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dry-run", action="store_true", help="print cells and sbatch script only")
    p.add_argument("--jobs", type=int, default=1, help="local launcher: cells at once")
    add_slurm_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        spec = load_sweep(args.sweep)
        out = Path(args.out or spec.get("out") or "results/sweeps")
        found = expand(spec, out, args.device, args.data_root)
        res = launcher.resources(args, spec.get("slurm"))
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    todo = launcher.to_submit(found)
    how = args.launcher or "slurm"
    print(f"sweep {spec['name']}: {len(found)} cells, {len(todo)} to run ({how}) -> {out}")
    if not todo:
        return 0
    if how == "local":
        for s in todo:
            print(f"  {s.cell.key:<16} {s.dir}")
        if args.dry_run:
            return 0
        ran = run_local(todo, jobs=args.jobs)
        collect(out / spec["name"])
        return 1 if any(st.get("state") != "done" for _, st in ran) else 0
    folder = out / spec["name"] / ".submitit" / "%j"
    launcher.launch(todo, how, res, folder, wait=args.wait, dry_run=args.dry_run)
    if (args.wait or how == "debug") and not args.dry_run:
        collect(out / spec["name"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
