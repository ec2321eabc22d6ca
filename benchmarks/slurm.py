"""Run cells as Slurm job arrays with submitit: one (method, seed) cell = one array task.

``launch`` submits cells (``--launcher slurm``) or runs them through submitit's in-process
``DebugExecutor`` (``--launcher debug``). With ``teacher: auto`` and distillation methods the fm
cells form a first array and the others a second one that starts ``afterok`` the first.

A task is a ``CellTask`` (``submitit.helpers.Checkpointable``): on SIGUSR2 (Slurm's warning
before the time limit, or a preemption) it sets ``distributed.STOP``; the training loop saves a
checkpoint at that exact step and stops, then submitit's handler requeues the same cell, which
resumes bit for bit from that checkpoint. A signal during evaluation is not caught this way (the
task may then time out and be resubmitted; it re-evaluates from the final checkpoint).

Per cell, the submitter writes ``submit.json`` (job id, submitit folder) and the task writes
``state.json`` (running, requeued, done or failed with its error), both atomically; they feed
``python -m benchmarks.status`` and decide what a rerun submits.
"""

from __future__ import annotations

import json
import os
import pdb
import shutil
import signal
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import submitit
import torch
import yaml

from benchmarks import distributed
from benchmarks.cells import TEACHER, Cell, cell_dir, load_teacher_checkpoint, make_teacher
from benchmarks.config import ConfigError, RunConfig
from benchmarks.report import read_rows

SUBMIT, STATE = "submit.json", "state.json"
# our resource names -> submitit AutoExecutor parameters
PARAMS = {
    "partition": "slurm_partition",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "constraint": "slurm_constraint",
    "gpus_per_node": "gpus_per_node",
    "tasks_per_node": "tasks_per_node",
    "cpus_per_task": "cpus_per_task",
    "mem_gb": "mem_gb",
    "timeout_min": "timeout_min",
    "array_parallelism": "slurm_array_parallelism",
    "signal_delay_s": "slurm_signal_delay_s",
    "additional": "slurm_additional_parameters",
    "setup": "slurm_setup",
    "job_name": "name",
}
DEFAULTS = {"timeout_min": 60, "cpus_per_task": 1, "array_parallelism": 64, "job_name": "flowmap"}
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


@dataclass(frozen=True)
class CellSpec:
    """What one task runs: a cell of a run config, written under ``out``."""

    out: str
    cfg: RunConfig
    cell: Cell
    device: str = "auto"

    @property
    def dir(self) -> Path:
        return cell_dir(Path(self.out), self.cfg, self.cell)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------ resources
def add_slurm_args(p) -> None:
    """Resource flags shared by benchmarks.run and benchmarks.sweep (CLI wins over YAML)."""
    g = p.add_argument_group("slurm (with --launcher slurm)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--constraint")
    g.add_argument("--gpus", dest="gpus_per_node", type=int, help="GPUs per node (= DDP ranks)")
    g.add_argument("--cpus", dest="cpus_per_task", type=int, help="CPUs per task")
    g.add_argument("--mem-gb", dest="mem_gb", type=float)
    g.add_argument("--time", dest="timeout_min", type=int, help="time limit in minutes")
    g.add_argument("--parallelism", dest="array_parallelism", type=int, help="array tasks at once")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE", help="extra line")
    g.add_argument("--setup", action="append", default=[], metavar="LINE", help="run before task")
    g.add_argument("--slurm-config", help="site YAML of defaults (or $FLOWMAP_SLURM_CONFIG)")
    g.add_argument("--wait", action="store_true", help="wait for the jobs, then collect")


def resources(args, section: dict | None = None) -> dict[str, Any]:
    """DEFAULTS < site file (not in the repository) < the sweep's ``slurm:`` < CLI flags."""
    res = dict(DEFAULTS)
    site = getattr(args, "slurm_config", None) or os.environ.get("FLOWMAP_SLURM_CONFIG")
    for layer in (yaml.safe_load(Path(site).read_text()) if site else {}, section or {}):
        for k, v in (layer or {}).items():
            if k not in PARAMS:
                raise ConfigError(f"unknown slurm option {k!r}; allowed: {', '.join(PARAMS)}")
            res[k] = {**res.get(k, {}), **v} if k == "additional" else v
    for k in PARAMS:
        if k != "setup" and getattr(args, k, None) is not None:
            res[k] = getattr(args, k)
    extra = dict(res.get("additional") or {})
    for item in getattr(args, "sbatch", []):
        key, sep, value = item.lstrip("-").partition("=")
        extra[key] = value if sep else True
    res["additional"] = extra
    res["setup"] = list(res.get("setup") or []) + list(getattr(args, "setup", []))
    res.setdefault("tasks_per_node", max(1, int(res.get("gpus_per_node") or 1)))
    return res


def make_executor(launcher: str, folder: Path, res: dict, dependency: str | None = None):
    ex = submitit.AutoExecutor(folder=folder, cluster=launcher, slurm_max_num_timeout=100)
    params = {PARAMS[k]: v for k, v in res.items() if v not in (None, {}, [])}
    if dependency:
        params["slurm_additional_parameters"] = {
            **params.get("slurm_additional_parameters", {}),
            "dependency": dependency,
            "kill-on-invalid-dep": "yes",
        }
    ex.update_parameters(**params)
    return ex


def sbatch_text(ex, n_tasks: int) -> str:
    """The sbatch script submitit would write for an array of ``n_tasks``."""
    from submitit.slurm.slurm import _make_sbatch_string

    inner = ex._executor
    params = {**inner.parameters, "map_count": n_tasks} if n_tasks > 1 else inner.parameters
    return _make_sbatch_string(command=inner._submitit_command_str, folder=inner.folder, **params)


# ----------------------------------------------------------------------------------- the task
def run_spec(spec: CellSpec, local_rank: int = 0) -> None:
    from benchmarks.cells import run_cell
    from benchmarks.problems import load_problem
    from methods import METHODS

    cfg, cell, out = spec.cfg, spec.cell, Path(spec.out)
    cuda = torch.cuda.is_available() and spec.device != "cpu"
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    problem = load_problem(cfg, cell.seed)
    teacher_fm, cost = None, (0, 0.0)
    needs = cell.method in METHODS and METHODS[cell.method].needs_teacher
    if cfg.teacher not in ("auto", "exact"):
        teacher_fm = load_teacher_checkpoint(Path(cfg.teacher), cfg, problem.shape, device)
    elif cfg.teacher == "auto" and needs:
        tdir = cell_dir(out, cfg, Cell(TEACHER, cell.seed))
        if not (tdir / "metrics.csv").exists():
            raise RuntimeError(f"the teacher cell {tdir} has not finished")
        teacher_fm = load_teacher_checkpoint(tdir / "ckpt.pt", cfg, problem.shape, device)
        rows = read_rows(tdir / "metrics.csv")
        cost = (int(rows["train_steps"].iloc[0]), float(rows["train_seconds"].iloc[0]))
    teacher = make_teacher(cfg, problem, teacher_fm)
    run_cell(out, cfg, cell, problem, teacher, cost, device, True, False)


class CellTask(submitit.helpers.Checkpointable):
    """One cell as a submitit task; requeued with the same spec after a stop request."""

    def __call__(self, spec: CellSpec) -> str:
        distributed.STOP.clear()
        in_slurm = "SLURM_JOB_ID" in os.environ
        requeue = signal.getsignal(signal.SIGUSR2) if in_slurm else None
        if in_slurm:
            signal.signal(signal.SIGUSR2, lambda *_: distributed.STOP.set())
        rank, local = distributed.init_from_slurm() if in_slurm else (0, 0)
        path, old = spec.dir / STATE, read_json(spec.dir / STATE)
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        info = {
            "job_id": os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "")),
            "task": os.environ.get("SLURM_ARRAY_TASK_ID", ""),
            "host": socket.gethostname(),
            "requeues": max(restarts, int(old.get("requeues", 0))),
            "stopped_at": old.get("stopped_at", []),  # steps of the checkpoints taken on signals
        }
        if rank == 0:
            write_json(path, {**info, "state": "running", "time": time.time()})
        try:
            run_spec(spec, local)
        except distributed.Preempted as e:
            if rank != 0:
                return "preempted"
            info["requeues"] += 1
            info["stopped_at"] = [*info["stopped_at"], e.step]
            write_json(path, {**info, "state": "requeued", "time": time.time()})
            if callable(requeue):  # submitit: checkpoint() -> scontrol requeue -> exit
                requeue(signal.SIGUSR2, None)
            raise
        except Exception as e:
            if rank == 0:
                tb = traceback.format_exc().strip().splitlines()[-12:]
                write_json(path, {**info, "state": "failed", "error": repr(e), "traceback": tb})
            raise
        if rank == 0:
            write_json(path, {**info, "state": "done", "time": time.time()})
        return spec.cell.key


# ------------------------------------------------------------------------------ submission
def job_state(sub: dict) -> str:
    """Slurm's state of a submitted cell (sacct/squeue through submitit), or UNKNOWN."""
    if sub.get("launcher") != "slurm" or not shutil.which("sacct"):
        return "UNKNOWN"
    try:
        return submitit.SlurmJob(sub["folder"], sub["job_id"]).state.split()[0]
    except Exception:  # noqa: BLE001 - no accounting reachable
        return "UNKNOWN"


def to_submit(specs: list[CellSpec]) -> list[CellSpec]:
    """Cells neither finished nor pending/running in Slurm: missing, failed or stopped."""
    todo = []
    for s in specs:
        if (s.dir / "metrics.csv").exists():
            continue
        if job_state(read_json(s.dir / SUBMIT)) in ACTIVE:
            continue
        todo.append(s)
    return todo


def phases(specs: list[CellSpec]) -> list[list[CellSpec]]:
    """[cells that need no trained teacher (fm first), the distillation cells that do]."""
    from methods import METHODS

    def waits(s: CellSpec) -> bool:  # needs the fm cell of its run to have finished
        m = METHODS.get(s.cell.method)
        return s.cfg.teacher == "auto" and m is not None and m.needs_teacher

    first = sorted((s for s in specs if not waits(s)), key=lambda s: s.cell.method != TEACHER)
    return [p for p in (first, [s for s in specs if waits(s)]) if p]


def launch(specs, launcher: str, res: dict, folder: Path, wait: bool, dry_run: bool) -> list:
    """Submit (or, with ``dry_run``, print the sbatch scripts of) the cells; returns the jobs.

    ``debug`` runs each array in this process right away (a failed cell is reported, not debugged).
    """
    jobs, dependency, array_id = [], None, ""
    for i, group in enumerate(phases(specs)):
        ex = make_executor(launcher, folder, res, dependency)
        if dry_run:
            after = " (starts after the first array succeeds)" if i else ""
            print(f"# array {i + 1}: {len(group)} tasks{after}")
            for s in group:
                print(f"#   {s.cell.key:<16} {s.dir}")
            print(sbatch_text(ex, len(group)) if launcher == "slurm" else f"# {launcher} executor")
            dependency = "afterok:FIRST_ARRAY_ID"
            continue
        for s in group:  # a fresh attempt: the old task state is history
            (s.dir / STATE).unlink(missing_ok=True)
        group_jobs = ex.map_array(CellTask(), group)
        array_id = str(group_jobs[0].job_id).split("_")[0]
        for s, j in zip(group, group_jobs):
            sub = {"job_id": j.job_id, "folder": str(folder), "launcher": launcher}
            write_json(s.dir / SUBMIT, {**sub, "time": time.time()})
        jobs += group_jobs
        print(f"submitted array {array_id}: {len(group)} tasks, logs in {folder}")
        if launcher == "debug":
            with mock.patch.object(pdb, "post_mortem", lambda *a, **k: None):
                for j in group_jobs:
                    j.exception()
        dependency = f"afterok:{array_id}"
    if jobs and launcher == "slurm" and not wait:
        print(f"follow it: squeue -j {array_id} or python -m benchmarks.status OUT_DIR")
    if wait and launcher == "slurm":
        for j in jobs:
            try:
                j.exception()  # a failed task is reported by benchmarks.status
            except submitit.core.utils.UncompletedJobError:  # cancelled, timed out, node failed
                pass
    return jobs
