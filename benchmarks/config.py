"""Run configuration: YAML presets that list only what differs, dotted overrides, and the one
``validate``.

Order of precedence: dataclass defaults < ``configs/<dataset>.yaml`` < its ``budgets.<budget>``
section < CLI flags < ``key=value`` overrides. ``method.<name>.<key>`` options become that
method's typed ``Config`` as they are read. Every bad key or value raises ``ConfigError`` (a
dataset that cannot be had: ``DataError``) with one line naming it and what is allowed, before
anything is written. The schema (``RunConfig`` and its sections) is ``benchmarks.base.schema``,
which every stage reads; it is re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.base.schema import (
    ConfigError,
    DataCfg,
    EvalCfg,
    NetCfg,
    RunConfig,
    TrainCfg,
    apply_updates,
    coerce,
)
from benchmarks.data import registry
from benchmarks.training import factory
from benchmarks.training.ema import KINDS
from benchmarks.training.nets import NET_KINDS
from methods import METHODS
from unify.interpolant import INTERPOLANTS

__all__ = [
    "BUDGETS",
    "ConfigError",
    "DataCfg",
    "EvalCfg",
    "Here",
    "NetCfg",
    "RunConfig",
    "TrainCfg",
    "apply_updates",
    "coerce",
    "comma_list",
    "load_config",
    "parse_methods",
    "parse_overrides",
    "parse_seeds",
    "validate",
]

CONFIG_DIR = Path(__file__).parent / "configs"
BUDGETS = ("smoke", "small", "long", "paper")  # a dataset defines each it supports


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with only true/false as booleans (YAML 1.2): ``train.ema=none`` or a value "off"
    stays a string instead of YAML 1.1's False."""


_Yaml12Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "method.cd.mu=0.9"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad override {item!r}: expected key=value, e.g. train.lr=1e-4")
        try:
            value = yaml.load(raw, Loader=_Yaml12Loader)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def datasets() -> list[str]:
    """Registered dataset names (``benchmarks.data.registry.DATASETS``)."""
    return sorted(registry.DATASETS)


def comma_list(text: str, flag: str, expected: str) -> list[str]:
    """The entries of a comma list; an empty one (``a,,b``, a leading or trailing comma) is a
    ConfigError naming ``flag`` and what is ``expected``."""
    items = [s.strip() for s in text.split(",")]
    if "" in items:
        raise ConfigError(f"bad {flag} {text!r}: an empty entry in the comma list; {expected}")
    return items


def parse_methods(text: str) -> list[str]:
    """``all`` or a comma list of registered methods."""
    allowed = f"allowed: all, {', '.join(METHODS)}"
    names = list(METHODS) if text == "all" else comma_list(text, "--methods", allowed)
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ConfigError(
            f"unknown method {(bad or [text])[0]!r}; allowed: all, {', '.join(METHODS)}"
        )
    return names


def parse_seeds(text: str) -> list[int]:
    """A comma list of integer seeds >= 0."""
    items = comma_list(text, "--seeds", "expected comma-separated integers >= 0, e.g. 0,1,2")
    try:
        seeds = [int(s) for s in items]
    except ValueError:
        raise ConfigError(f"bad --seeds {text!r}: expected comma-separated integers") from None
    if any(s < 0 for s in seeds):
        raise ConfigError(f"bad --seeds {text!r}: seeds must be >= 0")
    return seeds


@dataclass(frozen=True)
class Here:
    """A run on this machine (not a sweep prepared for another): ``validate`` also checks the
    files the config names, the device and ``--jobs``, and, with ``data``, that the dataset can
    be had (off for ``--dry-run``, which loads no data)."""

    device: str = "auto"
    jobs: int = 1
    data: bool = True


def load_config(
    dataset: str,
    budget: str,
    cli: dict[str, Any],
    overrides: list[str],
    methods: Sequence[str] = (),
    here: Here | None = None,
) -> RunConfig:
    """Defaults < dataset default teacher < preset < preset budget < CLI flags < dotted overrides;
    then ``validate(cfg, methods, here)``."""
    if dataset not in registry.DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; allowed: {', '.join(datasets())}")
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; allowed: {', '.join(BUDGETS)}")
    path = CONFIG_DIR / f"{dataset}.yaml"
    preset = (yaml.safe_load(path.read_text()) if path.exists() else {}) or {}
    budgets = preset.pop("budgets", {}) or {}
    if budget not in budgets:
        raise ConfigError(
            f"budget {budget!r} is not defined for dataset {dataset!r} ({path.name}); "
            f"defined: {', '.join(b for b in BUDGETS if b in budgets)}"
        )
    spec = registry.get(dataset)
    cfg = RunConfig(dataset=dataset, budget=budget, teacher=spec.default_teacher)
    for layer in (preset, budgets.get(budget, {}) or {}, cli, parse_overrides(overrides)):
        cfg = apply_updates(cfg, layer)
    validate(cfg, methods, here)
    return cfg


def validate(cfg: RunConfig, methods: Sequence[str] = (), here: Here | None = None) -> None:
    """Every check of a run's inputs. Types, unknown keys and each method's own options were
    checked as the config was read (``apply_updates``, the method's ``Config``); here: ranges and
    choices, the network against the data, the teacher against the ``methods`` that need one,
    and with ``here`` this machine (the files named, CUDA, ``--jobs``, the data)."""
    _check_ranges(cfg)
    _check_choices(cfg)
    _check_teacher(cfg, methods)
    if here is not None:
        _check_here(cfg, here)


def _one_of(value: str, allowed, key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"bad value {value!r} for {key}; allowed: {', '.join(allowed)}")


def _check_ranges(cfg: RunConfig) -> None:
    """Range checks that types alone cannot express."""
    for n in cfg.eval.nfe:
        if n < 1:
            raise ConfigError(f"bad NFE {n}: NFE must be an integer >= 1")
    t = cfg.train
    if any(not 0 < f <= 1 for f in cfg.eval.convergence) or cfg.eval.convergence_samples < 1:
        raise ConfigError("eval.convergence fractions must lie in (0, 1], convergence_samples >= 1")
    if cfg.eval.sample_batch < 0:
        raise ConfigError(f"bad value {cfg.eval.sample_batch} for eval.sample_batch: must be >= 0")
    for key in ("steps", "batch", "log_every", "ckpt_every"):
        if getattr(t, key) < 1:
            raise ConfigError(f"bad value {getattr(t, key)} for train.{key}: must be >= 1")
    if t.ckpt_every % t.log_every:
        raise ConfigError(
            f"train.ckpt_every={t.ckpt_every} must be a multiple of train.log_every={t.log_every}"
        )
    if not 0 <= t.ema_decay < 1:
        raise ConfigError(f"bad value {t.ema_decay} for train.ema_decay: must be in [0, 1)")
    if not 0 < t.ema_width < 0.2887:
        raise ConfigError(f"bad value {t.ema_width} for train.ema_width: must be in (0, 0.2887)")
    if cfg.data.sigma_data < 0:
        raise ConfigError(
            f"bad value {cfg.data.sigma_data} for data.sigma_data: must be > 0, or 0 for the "
            "dataset's own"
        )


def _check_choices(cfg: RunConfig) -> None:
    """Names from a registry, and the network that fits the data."""
    _one_of(cfg.train.ema, KINDS, "train.ema")
    _one_of(cfg.train.optimizer, list(factory.OPTIMIZERS), "train.optimizer")
    _one_of(cfg.net.kind, NET_KINDS, "net.kind")
    _one_of(cfg.interpolant, list(INTERPOLANTS), "interpolant")
    kind = registry.get(cfg.dataset).kind
    if (cfg.net.kind == "mlp") != (kind == "points"):
        nets = "mlp" if kind == "points" else ", ".join(k for k in NET_KINDS if k != "mlp")
        raise ConfigError(f"net.kind={cfg.net.kind!r} does not fit {kind} data; use {nets}")


def _check_teacher(cfg: RunConfig, methods: Sequence[str]) -> None:
    """``--teacher exact`` needs an oracle when one of ``methods`` distils from a teacher."""
    if cfg.teacher == "exact" and any(METHODS[m].needs_teacher for m in methods):
        if not registry.get(cfg.dataset).has_oracle:
            raise ConfigError(
                f"--teacher exact needs an oracle; {cfg.dataset!r} has none (use auto)"
            )


def _check_here(cfg: RunConfig, here: Here) -> None:
    """What this machine must hold: the files named (a teacher checkpoint is loaded to check
    it), CUDA when asked for, a worker count, and the data unless ``here.data`` is off."""
    for value, flag in ((cfg.eval.fid_weights, "--fid-weights"), (cfg.data_root, "--data-root")):
        if value and not Path(value).exists():
            raise ConfigError(f"{flag} {value!r} does not exist")
    if here.jobs < 1:
        raise ConfigError(f"bad --jobs {here.jobs}: must be >= 1")
    if here.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use cpu or auto")
    spec = registry.get(cfg.dataset)
    if cfg.teacher not in ("auto", "exact"):
        if not Path(cfg.teacher).is_file():
            raise ConfigError(
                f"--teacher {cfg.teacher!r}: expected auto, exact or a checkpoint file"
            )
        factory.load_weights(Path(cfg.teacher), cfg, spec.shape(cfg), torch.device("cpu"))
    if here.data:
        spec.check(cfg)
