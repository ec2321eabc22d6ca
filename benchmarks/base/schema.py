"""The run configuration's schema: frozen dataclasses of its sections, each method's typed options,
and the conversion of YAML and command-line values into them.

Every stage reads a :class:`RunConfig` (or one of its sections), so the schema lives here, below
the stages; loading it (presets, overrides) and checking it (``validate``) is
``benchmarks.config``'s. ``method`` holds, per method given options, that method's own frozen
``Config`` (``methods.build_config``): a key it does not have or a value of the wrong type is a
``ConfigError`` naming it and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from methods import METHODS, build_config


class ConfigError(ValueError):
    """A bad option; the message names the value and what is allowed."""


@dataclass(frozen=True)
class DataCfg:
    n_train: int = 100_000  # 2D sets: points drawn once per seed; images: 0 = the whole set
    n_test: int = 2000  # 2D held-out points for W2
    hflip: bool = False
    resolution: int = 16  # cifar-gmm: images average-pooled to this size (8, 16 or 32)
    rank: int = 16  # cifar-gmm: principal directions per class
    # the data scale sigma-based recipes read (unify.edm: sigma_EDM = (a / b) 0.5 / sigma_data):
    # 0.5 = the laws read a / b as EDM's sigma (chosen by the ablation in docs/recipes.md);
    # 0 = the dataset's declared per-coordinate std (registry: gmm 2.857, images 0.5)
    sigma_data: float = 0.5


@dataclass(frozen=True)
class NetCfg:
    kind: str = "mlp"  # benchmarks.training.nets.NET_KINDS: mlp | tiny | small | paper
    hidden: int = 256
    depth: int = 3
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainCfg:
    steps: int = 2000
    batch: int = 512
    lr: float = 1e-3
    optimizer: str = "adam"  # benchmarks.training.factory.OPTIMIZERS: adam | radam | adamw
    weight_decay: float = 0.0
    warmup: int = 0
    clip: float = 1.0  # max gradient norm, 0 = off
    ema: str = "power"  # evaluation EMA (benchmarks.training.ema): power | constant | none (raw)
    ema_width: float = 0.05  # power EMA: relative width sigma_rel (EDM2)
    ema_decay: float = 0.999  # constant EMA: decay
    log_every: int = 50
    ckpt_every: int = 500
    compile: bool = False  # torch.compile the model's net (benchmarks.training.loop.prepare_model)
    threads: int = 0  # CPU intra-op threads, 0 = torch's default (small 2D nets run best on 1)


@dataclass(frozen=True)
class EvalCfg:
    nfe: tuple[int, ...] = (1, 2, 4, 8, 16)
    n_samples: int = 2000
    # convergence probes: the model is also scored at these fractions of training, on fewer
    # samples, at NFE 1 and the largest NFE (convergence.csv); () = none
    convergence: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    convergence_samples: int = 512
    # 0 = sized to the device (benchmarks.evaluation.evaluate.sample_batch_for)
    sample_batch: int = 4096
    dopri_rtol: float = 1e-5
    dopri_atol: float = 1e-5
    # path to Inception weights for offline FID ("" = torch-fidelity's download)
    fid_weights: str = ""


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "gmm"
    budget: str = "small"
    interpolant: str = "linear"
    # distillation teacher: auto (the run's trained fm) | exact (the oracle's velocity) | PATH to
    # an fm checkpoint; load_config sets the dataset's default (benchmarks.data.registry)
    teacher: str = "auto"
    data_root: str = ""
    data: DataCfg = field(default_factory=DataCfg)
    net: NetCfg = field(default_factory=NetCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    method: dict[str, Any] = field(default_factory=dict)  # name -> its typed Config, when given

    def options(self, name: str) -> Any:
        """The typed ``Config`` of method ``name``: as given, or its defaults."""
        return self.method[name] if name in self.method else build_config(METHODS[name])

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``config.json``); a method's options are those that differ from its
        defaults, so a method without overrides is ``{}``."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in d.items()}
        d["method"] = {name: changed_options(c) for name, c in self.method.items()}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def changed_options(options: Any) -> dict[str, Any]:
    """The fields of a method's ``Config`` that differ from its defaults."""
    default = dataclasses.asdict(type(options)())
    return {k: v for k, v in dataclasses.asdict(options).items() if v != default[k]}


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's type, or raise naming key, value and type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # e.g. float | None: None, or the other type
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value in ("null", "None")):
            if len(args) < len(typing.get_args(hint)):
                return None
        return coerce(value, args[0], key)
    if origin is tuple and isinstance(value, str) and "" in (v.strip() for v in value.split(",")):
        inner = typing.get_args(hint)[0].__name__
        raise ConfigError(
            f"bad value {value!r} for {key}: an empty entry in the comma list; expected a comma "
            f"list of {inner}"
        )
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


def method_options(name: str, current: Any, given: Any, key: str) -> Any:
    """Method ``name``'s typed ``Config``: ``current`` (None: its defaults) with the options
    ``given`` (at ``key``), each converted to its field's type and checked by the ``Config``."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} in overrides; allowed: {', '.join(METHODS)}")
    if not isinstance(given, dict):
        raise ConfigError(f"bad value {given!r} for {key}: expected a mapping")
    cls = METHODS[name]
    hints = typing.get_type_hints(cls.Config)
    values = {k: coerce(v, hints[k], f"{key}.{k}") if k in hints else v for k, v in given.items()}
    before = changed_options(current) if current is not None else {}
    try:
        return build_config(cls, {**before, **values})
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


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
            merged = dict(current)
            for name, given in value.items():
                merged[name] = method_options(name, current.get(name), given, f"{full}.{name}")
            changes[key] = merged
        elif dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"bad value {value!r} for {full}: expected a mapping")
            changes[key] = apply_updates(current, value, f"{full}.")
        else:
            changes[key] = coerce(value, hints[key], full)
    return dataclasses.replace(obj, **changes)
