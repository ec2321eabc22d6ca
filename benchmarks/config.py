"""Run configuration: frozen dataclasses, YAML presets that list only what differs, dotted overrides.

Order of precedence: dataclass defaults < ``configs/<dataset>.yaml`` < its ``budgets.<budget>``
section < CLI flags < ``key=value`` overrides. Every bad key or value raises ``ConfigError`` with
one line naming it and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks import datasets as registry
from benchmarks.ema import KINDS
from benchmarks.nets import NET_KINDS
from unify.interpolant import INTERPOLANTS

CONFIG_DIR = Path(__file__).parent / "configs"
BUDGETS = ("smoke", "small", "paper")
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "radam": torch.optim.RAdam,
    "adamw": torch.optim.AdamW,
}


class ConfigError(ValueError):
    """A bad option; the message names the value and what is allowed."""


@dataclass(frozen=True)
class DataCfg:
    n_train: int = 100_000  # 2D sets: points drawn once per seed; images: 0 = the whole set
    n_test: int = 2000  # 2D held-out points for W2
    hflip: bool = False
    resolution: int = 16  # cifar-gmm: images average-pooled to this size (8, 16 or 32)
    rank: int = 16  # cifar-gmm: principal directions per class


@dataclass(frozen=True)
class NetCfg:
    kind: str = "mlp"  # benchmarks.nets.NET_KINDS: mlp | tiny | small | paper
    hidden: int = 256
    depth: int = 3
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainCfg:
    steps: int = 2000
    batch: int = 512
    lr: float = 1e-3
    optimizer: str = "adam"  # OPTIMIZERS: adam | radam | adamw
    weight_decay: float = 0.0
    warmup: int = 0
    clip: float = 1.0  # max gradient norm, 0 = off
    ema: str = "power"  # evaluation EMA (benchmarks.ema): power | constant | none (raw weights)
    ema_width: float = 0.05  # power EMA: relative width sigma_rel (EDM2)
    ema_decay: float = 0.999  # constant EMA: decay
    log_every: int = 50
    ckpt_every: int = 500
    compile: bool = False  # torch.compile the model's net (benchmarks.train.prepare_model)
    threads: int = 0  # CPU intra-op threads, 0 = torch's default (small 2D nets run best on 1)


@dataclass(frozen=True)
class EvalCfg:
    nfe: tuple[int, ...] = (1, 2, 4, 8, 16)
    n_samples: int = 2000
    # convergence probes: the model is also scored at these fractions of training, on fewer
    # samples, at NFE 1 and the largest NFE (convergence.csv); () = none
    convergence: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    convergence_samples: int = 512
    sample_batch: int = 4096  # 0 = sized to the device (benchmarks.evaluate.sample_batch_for)
    dopri_rtol: float = 1e-5
    dopri_atol: float = 1e-5
    fid_weights: str = (
        ""  # path to Inception weights for offline FID ("" = torch-fidelity's download)
    )


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "gmm"
    budget: str = "small"
    interpolant: str = "linear"
    # distillation teacher: auto (the run's trained fm) | exact (the oracle's velocity) | PATH to
    # an fm checkpoint; load_config sets the dataset's default (benchmarks.datasets)
    teacher: str = "auto"
    data_root: str = ""
    data: DataCfg = field(default_factory=DataCfg)
    net: NetCfg = field(default_factory=NetCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    method: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method options

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's type, or raise naming key, value and type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # e.g. float | None: None, or the other type
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value in ("null", "None")):
            if len(args) < len(typing.get_args(hint)):
                return None
        return coerce(value, args[0], key)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(coerce(v, typing.get_args(hint)[0], key) for v in items)
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"bad value {value!r} for {key}: expected {name}")


def apply_updates(obj: Any, updates: dict[str, Any], prefix: str = "") -> Any:
    """Return a copy of dataclass ``obj`` with nested ``updates`` applied and type-checked."""
    hints = typing.get_type_hints(type(obj))
    changes: dict[str, Any] = {}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in hints:
            allowed = ", ".join(f"{prefix}{k}" for k in hints)
            raise ConfigError(f"unknown option {full!r}; allowed: {allowed}")
        current = getattr(obj, key)
        if key == "method":
            if not isinstance(value, dict):
                raise ConfigError(f"bad value {value!r} for {full}: expected a mapping")
            merged = {k: dict(v) for k, v in current.items()}
            for name, opts in value.items():
                merged.setdefault(name, {}).update(opts)
            changes[key] = merged
        elif dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"bad value {value!r} for {full}: expected a mapping")
            changes[key] = apply_updates(current, value, f"{full}.")
        else:
            changes[key] = coerce(value, hints[key], full)
    return dataclasses.replace(obj, **changes)


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
    """Registered dataset names (``benchmarks.datasets.DATASETS``)."""
    return sorted(registry.DATASETS)


def load_config(dataset: str, budget: str, cli: dict[str, Any], overrides: list[str]) -> RunConfig:
    """Defaults < dataset default teacher < preset < preset budget < CLI flags < dotted overrides."""
    if dataset not in registry.DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; allowed: {', '.join(datasets())}")
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; allowed: {', '.join(BUDGETS)}")
    path = CONFIG_DIR / f"{dataset}.yaml"
    preset = (yaml.safe_load(path.read_text()) if path.exists() else {}) or {}
    budgets = preset.pop("budgets", {}) or {}
    spec = registry.get(dataset)
    cfg = RunConfig(dataset=dataset, budget=budget, teacher=spec.default_teacher)
    for layer in (preset, budgets.get(budget, {}) or {}, cli, parse_overrides(overrides)):
        cfg = apply_updates(cfg, layer)
    validate(cfg)
    return cfg


def _one_of(value: str, allowed, key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"bad value {value!r} for {key}; allowed: {', '.join(allowed)}")


def validate(cfg: RunConfig) -> None:
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
    _one_of(t.ema, KINDS, "train.ema")
    if not 0 <= t.ema_decay < 1:
        raise ConfigError(f"bad value {t.ema_decay} for train.ema_decay: must be in [0, 1)")
    if not 0 < t.ema_width < 0.2887:
        raise ConfigError(f"bad value {t.ema_width} for train.ema_width: must be in (0, 0.2887)")
    _one_of(t.optimizer, list(OPTIMIZERS), "train.optimizer")
    _one_of(cfg.net.kind, NET_KINDS, "net.kind")
    _one_of(cfg.interpolant, list(INTERPOLANTS), "interpolant")
    kind = registry.get(cfg.dataset).kind
    if (cfg.net.kind == "mlp") != (kind == "points"):
        nets = "mlp" if kind == "points" else ", ".join(k for k in NET_KINDS if k != "mlp")
        raise ConfigError(f"net.kind={cfg.net.kind!r} does not fit {kind} data; use {nets}")
