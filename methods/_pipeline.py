"""Two training stages over one FlowMap: a first method for a fraction of the steps, then a second one
that starts from the same network weights (e.g. consistency mid-training, then consistency training).

``two_stage`` builds and registers such a method from two Method classes. Its ``Config`` holds the
second stage's options under their own names (so ``method.<name>.<key>`` reads as for that method),
the first stage's under a prefix, and the split: the first ``round(frac * total_steps)`` steps run
the first stage (``first_frac``, named per pipeline). Everything the trainer asks is delegated to the
stage a step falls in, with the step counted from that stage's start, so each stage runs its own
schedule as over a run of its own length; ``post_lr`` scales the learning rate of the second stage
and ``anneal`` decays it linearly to 0 within each stage (a published per-stage schedule). ``stage`` numbers the stages (the trainer restarts the
evaluation EMA at each), the hand-off sets the second stage up again from the trained weights
(target copies start there; a module the optimiser holds keeps its identity), ``state_dict`` holds
both stages, so a checkpoint of either resumes, and sampling is the second stage's.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from methods.base import Logs, Method, register
from unify.flowmap import FlowMap


class TwoStage(Method):
    """Base of the registered pipelines; ``two_stage`` fills the class attributes."""

    first: ClassVar[type[Method]]
    second: ClassVar[type[Method]]
    prefix: ClassVar[str] = ""  # the first stage's options are ``prefix + name`` in Config
    frac_name: ClassVar[str] = "first_frac"

    def __init__(self, cfg: Any | None = None, interpolant=None, teacher=None, **kwargs: Any):
        super().__init__(cfg, interpolant, teacher, **kwargs)
        c1, c2 = self.cfg.stage_configs()
        t1 = teacher if self.first.needs_teacher else None
        t2 = teacher if self.second.needs_teacher else None
        self.stages = (
            self.first(c1, self.interpolant, t1, **kwargs),
            self.second(c2, self.interpolant, t2, **kwargs),
        )

    # ---------------------------------------------------------------- the split
    @property
    def n_first(self) -> int:
        """Steps of the first stage: round(frac * total_steps)."""
        return int(round(getattr(self.cfg, self.frac_name) * self.total_steps))

    def _at(self, step: int) -> tuple[Method, int]:
        """The stage method a step falls in and the step counted from that stage's start."""
        if step < self.n_first:
            return self.stages[0], step
        return self.stages[1], step - self.n_first

    # ---------------------------------------------------------------- training hooks
    def setup(self, flow_map: FlowMap, total_steps: int) -> None:
        super().setup(flow_map, total_steps)
        for m in self.stages:
            m.init = self.init
        self.stages[0].setup(flow_map, max(1, self.n_first))
        self.stages[1].setup(flow_map, max(1, self.total_steps - self.n_first))
        self._collect_nets()

    def _collect_nets(self) -> None:
        """The stages' networks in ``self.nets`` (the harness moves and lays out these)."""
        self.nets = {f"{i}.{k}": v for i, m in enumerate(self.stages) for k, v in m.nets.items()}

    def handoff(self, flow_map: FlowMap) -> None:
        """Set the second stage up again from the trained weights; keep module identities."""
        second = self.stages[1]
        old = dict(second.nets)
        second.setup(flow_map, max(1, self.total_steps - self.n_first))
        for k, net in list(second.nets.items()):
            if k in old:
                old[k].load_state_dict(net.state_dict())
                second.nets[k] = old[k]
        self._collect_nets()

    def loss(
        self, flow_map: FlowMap, x1: Tensor, step: int, x0: Tensor | None = None
    ) -> tuple[Tensor, Logs]:
        method, local = self._at(step)
        loss, logs = method.loss(flow_map, x1, local, x0)
        logs = {**logs, "stage": torch.tensor(float(self.stage(step)), device=x1.device)}
        return loss, logs

    def after_step(self, flow_map: FlowMap, step: int) -> None:
        method, local = self._at(step)
        method.after_step(flow_map, local)
        if step + 1 == self.n_first:
            self.handoff(flow_map)

    def sample_times(self, n: int, step: int = 0, generator=None, like: Tensor | None = None):
        """The training times of the stage ``step`` falls in (its own ``sample_times``)."""
        method, local = self._at(step)
        return method.sample_times(n, local, generator=generator, like=like)

    # ---------------------------------------------------------------- schedule
    def stage(self, step: int) -> int:
        """The first stage's stages, then the second's after them."""
        first, second = self.stages
        if step < self.n_first:
            return first.stage(step)
        return (first.stage(self.n_first - 1) + 1 if self.n_first > 0 else 0) + second.stage(
            step - self.n_first
        )

    def lr_scale(self, step: int) -> float:
        """The stage's own factor, times ``post_lr`` in the second stage, times 1 - (step - start)
        / length of the stage with ``anneal``."""
        method, local = self._at(step)
        first = step < self.n_first
        scale = method.lr_scale(local) * (1.0 if first else self.cfg.post_lr)
        if self.cfg.anneal:
            length = self.n_first if first else self.total_steps - self.n_first
            scale *= max(0.0, 1.0 - local / max(1, length))
        return scale

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.stages for p in m.parameters()]

    # ---------------------------------------------------------------- sampling
    def supports(self, nfe: int) -> bool:
        return self.stages[1].supports(nfe)

    def check_nfe(self, nfe: int) -> None:
        self.stages[1].check_nfe(nfe)

    def sample(
        self, flow_map: FlowMap, x0: Tensor, nfe: int, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.stages[1].sample(flow_map, x0, nfe, generator)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"first": self.stages[0].state_dict(), "second": self.stages[1].state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stages[0].load_state_dict(state["first"])
        self.stages[1].load_state_dict(state["second"])
        self._collect_nets()


def _fields(config: type, prefix: str) -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(config)
    return [
        (prefix + f.name, hints[f.name], dataclasses.field(default=f.default))
        for f in dataclasses.fields(config)
    ]


def _declarations(
    first: type[Method], second: type[Method], prefix: str, frac_name: str
) -> dict[str, Any]:
    """The pipeline's class attributes combined from its stages' (see ``two_stage``)."""
    return {
        "first": first,
        "second": second,
        "prefix": prefix,
        "frac_name": frac_name,
        "needs_teacher": first.needs_teacher or second.needs_teacher,
        "family": second.family,
        "init_from_teacher": first.init_from_teacher or second.init_from_teacher,
        "semigradient": first.semigradient or second.semigradient,
        "loss_is_progress": first.loss_is_progress and second.loss_is_progress,
        "exact_with": {**{prefix + k: v for k, v in first.exact_with.items()}, **second.exact_with},
        "exact_terms": tuple(t for t in first.exact_terms if t in second.exact_terms),
    }


def two_stage(
    name: str,
    first: type[Method],
    second: type[Method],
    *,
    prefix: str,
    frac_name: str = "first_frac",
    frac: float,
    anneal: bool = False,
    post_lr: float = 1.0,
    doc: str,
    summary: dict[str, str],
    module: str,
) -> type[TwoStage]:
    """Build and register the pipeline ``name``: ``first`` for ``frac`` of the steps, then ``second``.

    ``anneal`` and ``post_lr`` are the defaults of the learning-rate options of the same names.
    Declarations combine the stages': a teacher if either needs one; the second stage's family;
    started from the teacher if either stage is; a semi-gradient if either is; the loss a measure of
    progress only if both are; the exact overrides of both (the first's prefixed); logged exact
    terms only those both stages declare."""
    names1 = [prefix + f.name for f in dataclasses.fields(first.Config)]
    names2 = [f.name for f in dataclasses.fields(second.Config)]
    clash = set(names1) & set(names2) | {frac_name, "anneal", "post_lr"} & set(names1 + names2)
    if clash:
        raise ValueError(f"pipeline {name!r}: option names clash: {sorted(clash)}")

    def stage_configs(cfg: Any) -> tuple[Any, Any]:
        c1 = first.Config(**{n[len(prefix) :]: getattr(cfg, n) for n in names1})
        c2 = second.Config(**{n: getattr(cfg, n) for n in names2})
        return c1, c2

    def post_init(cfg: Any) -> None:
        if not 0.0 <= getattr(cfg, frac_name) <= 1.0:
            raise ValueError(f"{frac_name} must lie in [0, 1], got {getattr(cfg, frac_name)}")
        if not cfg.post_lr > 0:
            raise ValueError(f"post_lr must be > 0, got {cfg.post_lr}")
        stage_configs(cfg)  # each stage validates its own options

    fields = [(frac_name, float, dataclasses.field(default=frac))]
    fields += [("anneal", bool, dataclasses.field(default=anneal))]
    fields += [("post_lr", float, dataclasses.field(default=post_lr))]
    fields += _fields(second.Config, "") + _fields(first.Config, prefix)
    cls_name = "".join(part.capitalize() for part in name.replace("+", "_").split("_"))
    config = dataclasses.make_dataclass(
        "Config",
        fields,
        frozen=True,
        namespace={"__post_init__": post_init, "stage_configs": stage_configs},
    )
    attrs = {"__doc__": doc, "__module__": module, "Config": config, "summary": summary}
    attrs |= _declarations(first, second, prefix, frac_name)
    cls = type(cls_name, (TwoStage,), attrs)
    config.__module__, config.__qualname__ = module, f"{cls_name}.Config"
    return register(name)(cls)
