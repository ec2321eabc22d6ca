"""Run cells as Slurm job arrays with submitit: one (method, seed) cell = one array task.

``launch`` submits cells (``--launcher slurm``) or runs them through submitit's in-process
``DebugExecutor`` (``--launcher debug``). With ``teacher: auto`` and distillation methods the fm
cells form a first array and the others a second one that starts ``afterok`` the first.
``--dry-run`` prints the exact sbatch scripts: submitit submits to a stand-in ``sbatch`` that
records them (``preview``), so a sweep can be prepared on a machine without Slurm.

A task is a ``CellTask`` (``submitit.helpers.Checkpointable``): SIGUSR2 (Slurm's warning before
the time limit, or a preemption) requests a stop (``benchmarks.base.stop``); the training loop saves a
checkpoint at that exact step, then submitit requeues the same cell, which resumes bit for bit.
Per cell, the submitter writes ``submit.json`` (job id, submitit folder) and the task writes
``state.json`` (running, requeued, done or failed with its error); they feed
``python -m benchmarks.report.status`` and decide what a rerun submits.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import submitit
import torch
import yaml

from benchmarks.base import stop
from benchmarks.base.atomic import read_json, write_json
from benchmarks.cells import run_cell
from benchmarks.cluster.preview import preview
from benchmarks.config import ConfigError
from benchmarks.local import CellSpec, device_for, phases
from benchmarks.report.collect import collect
from benchmarks.report.folders import METRICS, STATE, SUBMIT
from benchmarks.report.status import ACTIVE, job_state
from benchmarks.training import distributed

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


# ------------------------------------------------------------------------------------ resources
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


# ----------------------------------------------------------------------------------- the task
class CellTask(submitit.helpers.Checkpointable):
    """One cell as a submitit task; requeued with the same spec after a stop request."""

    def __call__(self, spec: CellSpec) -> str:
        stop.reset()
        in_slurm = "SLURM_JOB_ID" in os.environ
        requeue = signal.getsignal(signal.SIGUSR2) if in_slurm else None
        if in_slurm:
            signal.signal(signal.SIGUSR2, lambda signum, _: stop.request(signum))
        rank, local = distributed.init_from_slurm() if in_slurm else (0, 0)
        old = read_json(spec.dir / STATE)
        info = {
            "job_id": os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "")),
            "task": os.environ.get("SLURM_ARRAY_TASK_ID", ""),
            "host": socket.gethostname(),
            "requeues": max(
                int(os.environ.get("SLURM_RESTART_COUNT", "0")), int(old.get("requeues", 0))
            ),
            "stopped_at": old.get("stopped_at", []),  # steps of the checkpoints taken on signals
        }
        try:
            state = self._run(spec, local, info, rank)
        except stop.Stopped as e:
            if rank == 0:
                info["requeues"] += 1
                info["stopped_at"] = [*info["stopped_at"], e.step]
                write_json(spec.dir / STATE, {**info, "state": "requeued", "time": time.time()})
            if rank == 0 and callable(requeue):  # submitit: checkpoint() -> scontrol requeue
                requeue(signal.SIGUSR2, None)
            raise
        finally:
            distributed.shutdown()
        if state.get("state") == "failed":  # Slurm marks the task FAILED; dependents never start
            raise RuntimeError(f"{spec.cell.key} failed: {state.get('reason', '')}")
        return spec.cell.key

    @staticmethod
    def _run(spec: CellSpec, local: int, info: dict, rank: int) -> dict:
        device = device_for(spec.device, local)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if rank == 0:
            spec.dir.mkdir(parents=True, exist_ok=True)
            write_json(spec.dir / STATE, {**info, "state": "running", "time": time.time()})
        state = run_cell(out=Path(spec.out), cfg=spec.cfg, cell=spec.cell, device=device)
        if rank == 0:
            write_json(spec.dir / STATE, {**read_json(spec.dir / STATE), **info})
        return state


# ------------------------------------------------------------------------------ submission
def to_submit(specs: list[CellSpec]) -> list[CellSpec]:
    """Cells neither finished nor pending/running in Slurm: missing, failed or stopped."""
    todo = []
    for s in specs:
        if (s.dir / METRICS).exists() or job_state(read_json(s.dir / SUBMIT)) in ACTIVE:
            continue
        todo.append(s)
    return todo


def launch(
    specs: list[CellSpec], launcher: str, res: dict, folder: Path, *, wait: bool, dry_run: bool
) -> list:
    """Submit (or, with ``dry_run``, print the sbatch scripts of) the cells; returns the jobs.

    ``debug`` runs each array in this process right away (a failed cell is recorded, not raised).
    """
    if dry_run:
        make = lambda dep, where: make_executor(launcher, where, res, dep)  # noqa: E731
        preview(phases(specs), launcher, make, CellTask(), folder)
        return []
    jobs, dependency, array_id = [], None, ""
    for group in phases(specs):
        ex = make_executor(launcher, folder, res, dependency)
        for s in group:  # a fresh attempt: the old task state is history
            (s.dir / STATE).unlink(missing_ok=True)
        group_jobs = ex.map_array(CellTask(), group)
        array_id = str(group_jobs[0].job_id).split("_")[0]
        for s, j in zip(group, group_jobs):
            sub = {"job_id": j.job_id, "folder": str(folder), "launcher": launcher}
            write_json(s.dir / SUBMIT, {**sub, "time": time.time()})
        jobs += group_jobs
        print(f"submitted array {array_id}: {len(group)} tasks, logs in {folder}")
        if launcher == "debug" or wait:
            _wait(group_jobs)
        dependency = f"afterok:{array_id}"
    if jobs and launcher == "slurm" and not wait:
        print(f"follow it: squeue -j {array_id} or python -m benchmarks.report.status OUT_DIR")
    return jobs


def _wait(jobs: list) -> None:
    for j in jobs:
        try:
            j.exception()  # a failed task is reported by benchmarks.report.status
        except submitit.core.utils.UncompletedJobError:  # cancelled, timed out, node failed
            pass


def submit(args, specs: list[CellSpec], folder: Path) -> int:
    """``benchmarks.run --launcher slurm|debug``: the cells as one job array (two with an auto
    teacher); with ``--wait`` (or debug) the results are collected afterwards."""
    try:
        res = resources(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.force and not args.dry_run:
        for s in specs:
            shutil.rmtree(s.dir, ignore_errors=True)
    specs = specs if args.dry_run else to_submit(specs)
    if specs:
        launch(
            specs,
            args.launcher,
            res,
            Path(args.out) / ".submitit" / "%j",
            wait=args.wait,
            dry_run=args.dry_run,
        )
    if not args.dry_run and (args.wait or args.launcher == "debug"):
        collect(folder)
    return 0
