"""What every command line of the project shares: the one-line parser, and the Slurm resource
flags of ``benchmarks.run`` and ``benchmarks.cluster.sweep`` (declared here, so that a parser
has them without importing the cluster launcher and submitit)."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line with status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message}\n")


def add_slurm_args(p: argparse.ArgumentParser) -> None:
    """Resource flags shared by benchmarks.run and the sweep CLI (CLI wins over YAML); their
    names are the keys of ``benchmarks.cluster.launcher.PARAMS``."""
    g = p.add_argument_group("slurm (with --launcher slurm)")
    for flag, dest, typ, text in (
        ("--partition", None, str, None),
        ("--account", None, str, None),
        ("--qos", None, str, None),
        ("--constraint", None, str, None),
        ("--gpus", "gpus_per_node", int, "GPUs per node (= data-parallel ranks)"),
        ("--cpus", "cpus_per_task", int, "CPUs per task"),
        ("--mem-gb", "mem_gb", float, None),
        ("--time", "timeout_min", int, "time limit in minutes"),
        ("--parallelism", "array_parallelism", int, "array tasks at once"),
    ):
        g.add_argument(flag, dest=dest or flag[2:], type=typ, help=text)
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE", help="extra line")
    g.add_argument("--setup", action="append", default=[], metavar="LINE", help="run before task")
    g.add_argument("--slurm-config", help="site YAML of defaults (or $FLOWMAP_SLURM_CONFIG)")
    g.add_argument("--wait", action="store_true", help="wait for the jobs, then collect")
