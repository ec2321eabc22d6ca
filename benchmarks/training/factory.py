"""Every object of a run is made here, from a ``RunConfig``: interpolant, network + FlowMap + EMA,
method, optimiser and schedule, teacher, and a checkpoint's weights. Cells, the perf benchmark
and the Slurm tasks call these; nothing else constructs them.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.base.schema import ConfigError, RunConfig, TrainCfg, apply_updates
from benchmarks.data import registry
from benchmarks.data.registry import Problem
from benchmarks.training.ema import EMALaw
from benchmarks.training.nets import make_net
from methods import METHODS, Method
from unify import FlowMap, FlowMapTeacher, Interpolant, VelocityTeacher, make_interpolant
from unify.teacher import Teacher

TEACHER_MAX_DT = 1 / 32  # a teacher ODE step is Heun with sub-steps of at most this length
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "radam": torch.optim.RAdam,
    "adamw": torch.optim.AdamW,
}


@functools.lru_cache(maxsize=1)
def _problem(data_json: str, seed: int) -> Problem:
    cfg = apply_updates(RunConfig(), json.loads(data_json))
    return registry.get(cfg.dataset).load(cfg, seed)


def load_problem(cfg: RunConfig, seed: int) -> Problem:
    """The dataset's problem for ``seed``; the last one is kept, so the cells of one seed share
    it within a process."""
    keys = ("dataset", "data_root", "data")
    return _problem(json.dumps({k: cfg.to_dict()[k] for k in keys}, sort_keys=True), seed)


def interpolant(cfg: RunConfig) -> Interpolant:
    return make_interpolant(cfg.interpolant)


def model(cfg: RunConfig, shape: tuple[int, ...]) -> FlowMap:
    """The FlowMap of ``cfg.net`` for data of per-sample ``shape`` (CPU, fresh weights)."""
    n = cfg.net
    kw = {"hidden": n.hidden, "depth": n.depth} if n.kind == "mlp" else {"dropout": n.dropout}
    return FlowMap(make_net(n.kind, shape, **kw))


def sigma_data(cfg: RunConfig) -> float:
    """The data scale sigma-based recipes read: ``data.sigma_data`` (default 0.5, EDM's frame), or
    when 0 the dataset's declared per-coordinate std."""
    return cfg.data.sigma_data or registry.get(cfg.dataset).sigma_data


def method(cfg: RunConfig, name: str, interp: Interpolant, teacher: Teacher | None) -> Method:
    """Method ``name`` with its typed options (``cfg.options``) and the run's data scale
    (``sigma_data``); the teacher only if it needs one."""
    cls = METHODS[name]
    teacher = teacher if cls.needs_teacher else None
    return cls(cfg.options(name), interp, teacher, sigma_data=sigma_data(cfg))


def optimizer(
    params, cfg: TrainCfg, lr_scale=lambda step: 1.0
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser of ``cfg.optimizer``; its schedule is a linear warm-up over ``cfg.warmup``
    steps times the method's own factor ``lr_scale(step)`` (a published per-stage anneal)."""
    opt = OPTIMIZERS[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.warmup)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * lr_scale(k)
    )
    return opt, schedule


def ema_law(cfg: TrainCfg) -> EMALaw:
    return EMALaw(cfg.ema, cfg.ema_width, cfg.ema_decay)


def teacher(
    cfg: RunConfig, problem: Problem, interp: Interpolant, fm: FlowMap | None
) -> Teacher | None:
    """The distillation teacher: a velocity integrated by Heun sub-steps of at most TEACHER_MAX_DT.

    ``cfg.teacher == "exact"``: the oracle's closed-form velocity; otherwise the trained fm's
    velocity v(x, t, t) (``fm``; None when there is none yet). Either way every distillation
    method sees the same kind of teacher step.
    """
    if cfg.teacher == "exact":
        oracle = problem.oracle
        if oracle is None:
            raise ConfigError(f"teacher 'exact' needs an oracle; dataset {problem.name!r} has none")
        return VelocityTeacher(lambda x, t: oracle.velocity(x, t, interp), max_dt=TEACHER_MAX_DT)
    return None if fm is None else FlowMapTeacher(fm, "heun", max_dt=TEACHER_MAX_DT)


def load_weights(
    path: Path, cfg: RunConfig, shape: tuple[int, ...], device: torch.device, key: str = "ema"
) -> FlowMap:
    """A frozen FlowMap with the ``key`` weights ("ema" or "model") of a harness checkpoint.

    Raises ConfigError naming the file when it is not such a checkpoint.
    """
    fm = model(cfg, shape).to(device)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        fm.load_state_dict(state[key] if isinstance(state, dict) and key in state else state)
    except Exception as e:  # unreadable file, other network, not a state dict: all the same
        raise ConfigError(
            f"{path} is not a checkpoint of this network ({type(e).__name__}); "
            f"expected a ckpt.pt of an fm run with net.kind={cfg.net.kind!r}"
        ) from None
    return fm.requires_grad_(False).eval()


@dataclass
class Parts:
    """What the training loop of one cell works on."""

    fm: FlowMap
    ema: FlowMap
    method: Method
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema_law: EMALaw

    def nets(self) -> list[nn.Module]:
        return [self.fm, self.ema, *self.method.nets.values()]


def wants_trained_teacher(cfg: RunConfig, name: str) -> bool:
    """Whether a cell of ``name`` needs the run's trained fm (``teacher: auto``) or a teacher
    checkpoint: to distil from, or only to start from (sCT: published initialised from a
    diffusion model, its loss needs no teacher)."""
    cls = METHODS[name]
    return cfg.teacher != "exact" and (cls.needs_teacher or cls.init_from_teacher)


def init_of(cfg: RunConfig, name: str) -> str:
    """How a method's network starts: "teacher" (the trained fm's weights) or "scratch"."""
    cls = METHODS[name]
    return "teacher" if cls.init_from_teacher and cfg.teacher != "exact" else "scratch"


def parts(
    cfg: RunConfig,
    name: str,
    shape: tuple[int, ...],
    teacher_: Teacher | None,
    device: torch.device,
    interp: Interpolant | None = None,
) -> Parts:
    """Model (the caller seeds, so every method of a seed gets the same initial weights, or the
    trained teacher's for methods published as fine-tuned from it), EMA copy, method (set up for
    ``cfg.train.steps``), optimiser and schedule, on ``device``; ``interp``: the run's
    interpolant (default: built from ``cfg``)."""
    fm = model(cfg, shape).to(device)
    m = method(cfg, name, interp if interp is not None else interpolant(cfg), teacher_)
    if init_of(cfg, name) == "teacher" and isinstance(teacher_, FlowMapTeacher):
        fm.load_state_dict(teacher_.fm.state_dict())
        m.init = "teacher"
    ema = copy.deepcopy(fm).requires_grad_(False)
    m.setup(fm, cfg.train.steps)  # first: it may build trainable heads (m.parameters())
    opt, sched = optimizer([*fm.parameters(), *m.parameters()], cfg.train, m.lr_scale)
    return Parts(fm, ema, m, opt, sched, ema_law(cfg.train))
