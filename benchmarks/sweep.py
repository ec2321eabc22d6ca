"""A YAML grid of cells over datasets, methods, seeds and config keys, run as job arrays.

    python -m benchmarks.sweep benchmarks/sweeps/gmm_smoke.yaml [--launcher slurm|local|debug]
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

from benchmarks import slurm
from benchmarks.cells import check_cell
from benchmarks.collect import collect
from benchmarks.config import ConfigError, load_config
from benchmarks.data import DataError
from benchmarks.problems import TOY, load_problem
from benchmarks.run import OneLineParser, parse_methods, plan

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


def expand(
    spec: dict, out: Path, device: str = "auto", data_root: str = ""
) -> list[slurm.CellSpec]:
    """Every cell of the sweep, checked (a stored config that differs is an error)."""
    methods = spec["methods"]
    names = parse_methods(methods if isinstance(methods, str) else ",".join(methods))
    seeds = [int(s) for s in _list(spec.get("seeds", [0]))]
    fixed = [_override(k, v) for k, v in (spec.get("set") or {}).items()]
    cli = {"teacher": spec["teacher"]} if spec.get("teacher") else {}
    if data_root:
        cli["data_root"] = data_root
    cells = []
    for variant, overrides in variants(spec.get("grid") or {}):
        root = out / spec["name"] / variant
        for dataset in _list(spec["datasets"]):
            cfg = load_config(dataset, spec.get("budget", "small"), cli, fixed + overrides)
            oracle = dataset in TOY and load_problem(cfg, seeds[0]).oracle is not None
            for cell in plan(cfg, names, seeds, oracle):
                check_cell(root, cfg, cell, False)
                cells.append(slurm.CellSpec(str(root), cfg, cell, device))
    return cells


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m benchmarks.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="a sweep YAML file, e.g. benchmarks/sweeps/*.yaml")
    p.add_argument("--launcher", choices=("slurm", "local", "debug"), help="default: slurm")
    p.add_argument("--out", help="root folder (default: the file's out, else results/sweeps)")
    p.add_argument("--data-root", default="", help="dataset folder on the cluster (site path)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dry-run", action="store_true", help="print cells and sbatch script only")
    slurm.add_slurm_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        spec = load_sweep(args.sweep)
        out = Path(args.out or spec.get("out") or "results/sweeps")
        cells = expand(spec, out, args.device, args.data_root)
        res = slurm.resources(args, spec.get("slurm"))
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    todo = slurm.to_submit(cells)
    launcher = args.launcher or "slurm"
    print(f"sweep {spec['name']}: {len(cells)} cells, {len(todo)} to run ({launcher}) -> {out}")
    if not todo:
        return 0
    if launcher == "local":
        return _run_local(todo, args.dry_run)
    folder = out / spec["name"] / ".submitit" / "%j"
    slurm.launch(todo, launcher, res, folder, args.wait, args.dry_run)
    if (args.wait or launcher == "debug") and not args.dry_run:
        collect(out / spec["name"])
    return 0


def _run_local(todo: list[slurm.CellSpec], dry_run: bool) -> int:
    """One cell after another in this process (fm teachers first); a failed cell is reported."""
    failed = []
    for group in slurm.phases(todo):
        for s in group:
            print(f"  {s.cell.key:<16} {s.dir}")
            if dry_run:
                continue
            try:
                slurm.CellTask()(s)
            except Exception as e:  # noqa: BLE001 - recorded in the cell's state.json
                failed.append(s)
                print(f"  {s.cell.key} failed: {e!r}", file=sys.stderr)
    if not dry_run:
        collect(Path(todo[0].out).parent)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
