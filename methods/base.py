"""The Method contract and the registry. A method is a loss (plus a sampler) over one FlowMap.

The training loop calls, and knows nothing else: ``setup(flow_map, total_steps)`` once, then per
step ``loss(flow_map, x1, step)`` -> backward -> optimiser step -> ``after_step(flow_map, step)``.
Evaluation calls ``supports(nfe)`` and ``sample(flow_map, x0, nfe)``; the student ``FlowMap`` is
always ``flow_map`` (``fm`` names the flow-matching method). ``state_dict`` carries what a resumed
run needs (target networks, stage teachers, trainable heads of the method). ``parameters()`` lists
trainable parameters the method owns besides the FlowMap's (sCM's learned log-variance weight): the
trainer optimises and clips them with the model's; the evaluation EMA stays of the model only.
Methods find the data, the interpolant and the teacher only through these arguments: no config or
argparse object reaches the maths.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

import unify
from unify.flowmap import FlowMap
from unify.interpolant import Interpolant
from unify.teacher import Teacher

Logs = dict[str, Tensor]
#: consistency: maps to the data end (CM, CTM, sCM); teacher-distilled: from a velocity (FMM's
#: LMD/EMD/PFMM, PD, DSNO, AYF); self-distilled: from data alone (FMM, LSD/ESD/PSD, MeanFlow,
#: shortcut, IMM); teacher: the flow-matching velocity itself
FAMILIES = ("consistency", "teacher-distilled", "self-distilled", "teacher")
METHODS: dict[str, type[Method]] = {}
M = TypeVar("M", bound="type[Method]")


class NotApplicable(ValueError):
    """Raised when a method cannot sample at the requested NFE (reported as n/a, never a number)."""


def register(name: str):
    """Class decorator: add a Method subclass to ``METHODS`` under ``name``."""

    def deco(cls: M) -> M:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


@dataclasses.dataclass(frozen=True)
class NoConfig:
    """A method without hyperparameters of its own."""


class Method(ABC):
    """Base class. Subclasses set ``Config`` (a frozen dataclass with the published defaults)."""

    name: ClassVar[str] = "method"
    Config: ClassVar[type] = NoConfig
    needs_teacher: ClassVar[bool] = False
    #: logged terms that vanish when the model is the exact flow map (checked by the exact test)
    exact_terms: ClassVar[tuple[str, ...]] = ()
    #: False when the loss value is no measure of progress (a target built from the model's own
    #: derivatives, as in MeanFlow); tests then track the sampled map's error against an oracle
    loss_is_progress: ClassVar[bool] = True
    #: True when the target is built from the model's own current weights under stop-gradient
    #: (MeanFlow, sCT/sCD, AYF, IMM): training follows a semi-gradient, which vanishes in expectation
    #: at the exact map without the exact map minimising the loss value. The exact test then checks
    #: stationarity and that the semi-gradient points back to the exact map, not a strict minimum.
    semigradient: ClassVar[bool] = False
    #: Config overrides under which the exact map is a stationary point of the expected loss, for a
    #: method whose published defaults make it stationary only in a limit (docs/methods.md says
    #: which and by how much). The exact test runs with them and checks that the defaults are
    #: measurably further from stationary, so the declaration cannot hide a real defect. That test
    #: uses Gaussian data: a bias that vanishes when the noise given I_t is centrally symmetric
    #: (normalised tangents, MeanFlow's adaptive weight, IMM's own-pair Laplace term) is invisible
    #: there and is stated, with its measured size, in docs/methods.md instead.
    exact_with: ClassVar[dict[str, Any]] = {}
    #: paper, (s, t) trained on, target, sampler NFEs: one row of the README unification table
    summary: ClassVar[dict[str, str]] = {}
    #: the group a method is shown with (``FAMILIES``): figures draw one panel per family
    family: ClassVar[str] = "self-distilled"
    #: published as fine-tuned from the trained teacher network: the harness starts it from the
    #: teacher's weights whenever the teacher is a trained fm (not the exact oracle)
    init_from_teacher: ClassVar[bool] = False

    def __init__(
        self,
        cfg: Any | None = None,
        interpolant: Interpolant | None = None,
        teacher: Teacher | None = None,
        *,
        sigma_data: float = 0.5,
    ) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        #: per-coordinate standard deviation of the data x1, read by every sigma-based recipe through
        #: ``unify.edm`` (docs/recipes.md); 0.5 = EDM's own scale, i.e. sigma_EDM = a / b
        self.sigma_data = float(sigma_data)
        self.interpolant = interpolant if interpolant is not None else unify.Linear()
        if self.needs_teacher and teacher is None:
            raise ValueError(f"method {self.name!r} needs a teacher (an fm run or an exact oracle)")
        self.teacher = teacher
        self.total_steps = 1
        self.nets: dict[str, nn.Module] = {}  # target networks, trainable heads: in state_dict
        self.init = "scratch"  # "teacher" when the harness started the network from the teacher

    # ----------------------------------------------------------------- training hooks
    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        """Called once before training (and before a resume loads state): build targets here."""
        self.total_steps = max(1, int(total_steps))

    @abstractmethod
    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        """Scalar loss on a data batch x1 (B, ...) and detached per-term logs. x0 ~ N(0, I) if None."""

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        """Called after each optimiser step (target EMA, stage changes)."""

    def sample_times(
        self,
        n: int,
        step: int = 0,
        generator: torch.Generator | None = None,
        like: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """The training times ``loss`` draws for a batch of n at ``step``, in our time, from
        ``generator`` (else the global RNG) with the dtype and device of ``like``; each method says
        which times it returns (docs/recipes.md, checked by tests/test_recipes_*.py)."""
        raise NotImplementedError(f"method {self.name!r} does not expose its time law")

    # ----------------------------------------------------------------- schedule
    def stage(self, step: int) -> int:
        """Training stage of a step (non-decreasing in ``step``); staged methods override."""
        return 0

    def stage_bounds(self, step: int) -> tuple[int, int]:
        """[start, end) steps of the stage holding ``step``: the evaluation EMA restarts at start."""
        k = self.stage(step)

        def first(lo: int, hi: int, pred) -> int:  # smallest s in [lo, hi] with pred(s)
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if pred(mid) else (mid + 1, hi)
            return lo

        start = first(0, step, lambda s: self.stage(s) >= k)
        end = first(step + 1, self.total_steps, lambda s: self.stage(s) > k)
        return start, max(end, step + 1)

    def lr_scale(self, step: int) -> float:
        """Factor on the learning rate at ``step`` (a published per-stage anneal); default 1."""
        return 1.0

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters owned by the method (built in ``setup``, kept in ``self.nets`` so
        that ``state_dict`` saves them), optimised and clipped together with the model's."""
        return []

    # ----------------------------------------------------------------- sampling
    def supports(self, nfe: int) -> bool:
        """Whether ``sample`` can run at this NFE."""
        return nfe >= 1

    def check_nfe(self, nfe: int) -> None:
        if not self.supports(nfe):
            raise NotApplicable(f"method {self.name!r} cannot sample with nfe={nfe}")

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Default sampler: flow-map composition over the uniform grid (exactly nfe network calls)."""
        self.check_nfe(nfe)
        return unify.sample(flow_map, x0, nfe, getattr(self.cfg, "grid", "uniform"))

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {k: v.state_dict() for k, v in self.nets.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            self.nets[k].load_state_dict(v)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with gradients off: the weights are frozen, the graph through it is not."""
    out = copy.deepcopy(module)
    out.requires_grad_(False)
    return out


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, mu: float) -> None:
    """theta^- <- mu theta^- + (1 - mu) theta (buffers copied)."""
    for p_t, p in zip(target.parameters(), online.parameters()):
        p_t.lerp_(p.detach(), 1 - mu)
    for b_t, b in zip(target.buffers(), online.buffers()):
        b_t.copy_(b)


def build_config(cls: type[Method], overrides: dict[str, Any] | None = None) -> Any:
    """Config of ``cls`` with keyword overrides; unknown keys raise naming the allowed ones."""
    overrides = overrides or {}
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(
            f"unknown option(s) {bad} for method {cls.name!r}; allowed: {sorted(fields) or 'none'}"
        )
    return cls.Config(**overrides)
