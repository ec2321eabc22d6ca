"""Run configuration: frozen dataclasses, YAML presets that list only what differs, dotted overrides.

Order of precedence: dataclass defaults < ``configs/<dataset>.yaml`` < its ``budgets.<budget>``
section < CLI flags < ``key=value`` overrides. Every bad key or value raises ``ConfigError`` with
one line naming it and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
BUDGETS = ("smoke", "small", "paper")


class ConfigError(ValueError):
    """A bad option; the message names the value and what is allowed."""


@dataclass(frozen=True)
class DataCfg:
    n_train: int = 100_000  # 2D sets: points drawn once per seed; images: 0 = the whole set
    n_test: int = 2000  # 2D held-out points for W2
    hflip: bool = False


@dataclass(frozen=True)
class NetCfg:
    kind: str = "mlp"  # mlp | tiny | small | paper
    hidden: int = 256
    depth: int = 3
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainCfg:
    steps: int = 2000
    batch: int = 512
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | radam | adamw
    weight_decay: float = 0.0
    warmup: int = 0
    clip: float = 1.0  # max gradient norm, 0 = off
    ema: float = 0.999  # evaluation EMA decay
    log_every: int = 50
    ckpt_every: int = 500
    compile: bool = False  # torch.compile the model's net (benchmarks.train.prepare_model)
    threads: int = 0  # CPU intra-op threads, 0 = torch's default (small 2D nets run best on 1)


@dataclass(frozen=True)
class EvalCfg:
    nfe: tuple[int, ...] = (1, 2, 4, 8, 16)
    n_samples: int = 2000
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
    teacher: str = "auto"  # auto | exact | PATH to an fm checkpoint
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


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's type, or raise naming key, value and type."""
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(_coerce(v, typing.get_args(hint)[0], key) for v in items)
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


def _apply(obj: Any, updates: dict[str, Any], prefix: str = "") -> Any:
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
            changes[key] = _apply(current, value, f"{full}.")
        else:
            changes[key] = _coerce(value, hints[key], full)
    return dataclasses.replace(obj, **changes)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "method.cd.mu=0.9"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad override {item!r}: expected key=value, e.g. train.lr=1e-4")
        try:
            value = yaml.safe_load(raw)
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
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(dataset: str, budget: str, cli: dict[str, Any], overrides: list[str]) -> RunConfig:
    """Defaults < preset < preset budget < CLI flags (already nested) < dotted overrides."""
    if dataset not in datasets():
        raise ConfigError(f"unknown dataset {dataset!r}; allowed: {', '.join(datasets())}")
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; allowed: {', '.join(BUDGETS)}")
    preset = yaml.safe_load((CONFIG_DIR / f"{dataset}.yaml").read_text()) or {}
    budgets = preset.pop("budgets", {}) or {}
    cfg = _apply(RunConfig(dataset=dataset, budget=budget), preset)
    cfg = _apply(cfg, budgets.get(budget, {}) or {})
    cfg = _apply(cfg, cli)
    cfg = _apply(cfg, parse_overrides(overrides))
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Range checks that types alone cannot express."""
    for n in cfg.eval.nfe:
        if n < 1:
            raise ConfigError(f"bad NFE {n}: NFE must be an integer >= 1")
    t = cfg.train
    if cfg.eval.sample_batch < 0:
        raise ConfigError(f"bad value {cfg.eval.sample_batch} for eval.sample_batch: must be >= 0")
    for key in ("steps", "batch", "log_every", "ckpt_every"):
        if getattr(t, key) < 1:
            raise ConfigError(f"bad value {getattr(t, key)} for train.{key}: must be >= 1")
    if t.ckpt_every % t.log_every:
        raise ConfigError(
            f"train.ckpt_every={t.ckpt_every} must be a multiple of train.log_every={t.log_every}"
        )
    if not 0 <= t.ema < 1:
        raise ConfigError(f"bad value {t.ema} for train.ema: must be in [0, 1)")
    if t.optimizer not in ("adam", "radam", "adamw"):
        raise ConfigError(f"bad value {t.optimizer!r} for train.optimizer: adam, radam or adamw")
