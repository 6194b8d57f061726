"""Typed YAML configuration for training and evaluating UPT models.

The schema is a tree of dataclasses with defaults. A YAML file only needs the keys it changes; everything else takes the
default. Every value is checked (type and range) when a config is built, and unknown keys are rejected with the nearest
valid key, so a typo never silently falls back to a default.

Example:

```python
cfg = load_config("configs/train_burgers1d.yaml", overrides=["training.lambda_inv_enc=0.02"])
cfg.training.query_sampling.num_queries  # 2048
validate_for_grid(cfg, grid_shape=(256,))
save_config(cfg, "runs/burgers1d/config.yaml")
```

Notes:
- Values are read with `yaml.safe_load` only.
- YAML 1.1 reads `1e-3` (no dot) as a string. Float fields accept such strings when they parse as a number, so
  `learning_rate: 1e-3` works as expected.
- Ints are accepted where floats are expected (and stored as floats); bools are never accepted as numbers.
- Relative paths (`data.path`, `output.run_dir`) are kept as written and resolved against the working directory by
  whoever opens them.

This module imports no deep-learning framework.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import yaml

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "QuerySamplingConfig",
    "TrainingConfig",
    "OutputConfig",
    "Config",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "read_yaml",
    "save_config",
    "validate_config",
    "validate_for_grid",
    "apply_overrides",
]


class ConfigError(ValueError):
    """Raised for any invalid configuration: unknown key, wrong type, out-of-range value, unreadable file."""


# --------------------------------------------------------------------------------------------------------------------
# Field specifications. Each leaf field carries its check in `metadata["spec"]`; `validate_config` walks the tree.
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Spec:
    kind: str  # int | float | bool | str | number_list | bool_or_choice | any_choice
    nullable: bool = False
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple = ()


def _leaf(default: Any, kind: str, **spec_kwargs: Any) -> Any:
    spec = _Spec(kind=kind, **spec_kwargs)
    if isinstance(default, list):
        return field(default_factory=lambda d=tuple(default): list(d), metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def _section(cls: type) -> Any:
    return field(default_factory=cls)


# --------------------------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Where the trajectories come from and how they are split and subsampled."""

    source: str = _leaf("default", "str", choices=("default", "hdf5"))
    path: str | None = _leaf(None, "str", nullable=True)
    reduced_resolution: int = _leaf(1, "int", ge=1)
    reduced_resolution_t: int = _leaf(1, "int", ge=1)
    time_stride: int = _leaf(1, "int", ge=1)
    test_fraction: float = _leaf(0.1, "float", ge=0.0, lt=1.0)
    val_fraction: float = _leaf(0.1, "float", ge=0.0, lt=1.0)
    max_train_samples: int | None = _leaf(None, "int", nullable=True, ge=1)
    rollout_steps: int = _leaf(20, "int", ge=1)


@dataclass
class ModelConfig:
    """Sizes of the encoder, approximator and any-point decoder.

    `preset` names a set of sizes in `upt_keras.presets.PRESETS`: keys left out of the section take the preset's
    value instead of the default below; keys given override it.
    """

    preset: str | None = _leaf(None, "str", nullable=True)  # checked against the presets in `_with_preset`
    patch_size: int = _leaf(4, "int", ge=1)
    encoder_dim: int = _leaf(64, "int", ge=1)
    encoder_depth: int = _leaf(1, "int", ge=0)
    encoder_heads: int = _leaf(4, "int", ge=1)
    num_latent_tokens: int = _leaf(32, "int", ge=1)
    latent_dim: int = _leaf(64, "int", ge=1)
    pooling: str = _leaf("perceiver", "str", choices=("perceiver", "average"))
    approximator_width: int = _leaf(128, "int", ge=1)
    approximator_depth: int = _leaf(4, "int", ge=1)
    approximator_heads: int = _leaf(4, "int", ge=1)
    approximator_zero_init: bool = _leaf(False, "bool")  # untrained approximator = identity
    mlp_ratio: int = _leaf(4, "int", ge=1)
    decoder_width: int = _leaf(128, "int", ge=1)
    decoder_depth: int = _leaf(2, "int", ge=1)
    decoder_heads: int = _leaf(4, "int", ge=1)
    decoder_mlp_dim: int = _leaf(256, "int", ge=1)
    frequencies: list = _leaf([1, 2, 4, 8, 16, 32], "number_list", gt=0.0)
    decoder_locality: bool = _leaf(False, "bool")  # distance bias in the decoder's attention (average pooling)
    decode_chunk_size: int = _leaf(65536, "int", ge=1)


@dataclass
class QuerySamplingConfig:
    """Random subset of query points for the forward and inverse-encoding losses."""

    enabled: bool = _leaf(False, "bool")
    num_queries: int = _leaf(2048, "int", ge=1)
    strategy: str = _leaf("uniform", "str", choices=("uniform", "stratified"))


@dataclass
class TrainingConfig:
    """Optimisation, inverse losses and their curriculum, precision and stopping."""

    epochs: int = _leaf(20, "int", ge=1)
    batch_size: int = _leaf(32, "int", ge=1)
    learning_rate: float = _leaf(1.0e-3, "float", gt=0.0)
    weight_decay: float = _leaf(1.0e-4, "float", ge=0.0)
    lr_schedule: str = _leaf("cosine", "str", choices=("cosine", "constant"))
    warmup_steps: int = _leaf(0, "int", ge=0)
    time_budget_seconds: float | None = _leaf(None, "float", nullable=True, gt=0.0)
    fit_schedule_to_budget: bool = _leaf(True, "bool")  # cosine spans the steps that fit into the budget (measured)
    use_inverse_losses: bool = _leaf(True, "bool")
    lambda_inv_enc: float = _leaf(0.01, "float", ge=0.0)
    lambda_inv_dec: float = _leaf(0.01, "float", ge=0.0)
    inverse_loss_warmup_epochs: int = _leaf(5, "int", ge=0)
    inverse_loss_ramp_epochs: int | None = _leaf(None, "int", nullable=True, ge=0)
    inverse_loss_max_weight: float = _leaf(0.05, "float", ge=0.0)
    inverse_loss_frequency: int = _leaf(1, "int", ge=1)
    query_sampling: QuerySamplingConfig = _section(QuerySamplingConfig)
    amp: bool | str = _leaf(False, "bool_or_choice", choices=("mixed_float16", "mixed_bfloat16"))
    jit_compile: bool | str = _leaf("auto", "bool_or_choice", choices=("auto",))
    early_stopping_patience: int | None = _leaf(None, "int", nullable=True, ge=1)
    rollout_loss_steps: int = _leaf(1, "int", ge=1)  # K > 1: forward loss over K latent steps (K-step targets)
    lambda_latent_consistency: float = _leaf(0.0, "float", ge=0.0)  # ||step(enc(u_t)) - sg(enc(u_t+1))||^2 / norm
    latent_noise: float = _leaf(0.0, "float", ge=0.0)  # noise on enc(u_t) before stepping, relative to its RMS
    # what the inverse decoding re-encodes: the full grid, or only the Q sampled points (point-cloud encoders)
    inverse_decoding_points: str = _leaf("all", "str", choices=("all", "queries"))
    latent_consistency_steps: int = _leaf(1, "int", ge=1)  # M > 1: consistency of step^q(enc(u_t)), q = 1..M
    # what the consistency error is relative to: the target latent's second moment, or the latent step itself
    latent_consistency_norm: str = _leaf("latent", "str", choices=("latent", "step"))
    distribution: str | None = _leaf(None, "str", nullable=True, choices=("data_parallel",))

    @property
    def amp_policy(self) -> str | None:
        """The Keras mixed-precision policy name `amp` asks for, or None for full float32."""
        if self.amp is True:
            return "mixed_float16"
        if self.amp is False:
            return None
        return str(self.amp)

    @property
    def ramp_epochs(self) -> int:
        """Length of the linear ramp of the inverse-loss weights (`inverse_loss_ramp_epochs`, null = warmup)."""
        if self.inverse_loss_ramp_epochs is None:
            return self.inverse_loss_warmup_epochs
        return self.inverse_loss_ramp_epochs


@dataclass
class OutputConfig:
    """Where runs write checkpoints, logs and figures."""

    run_dir: str = _leaf("runs/burgers1d", "str")
    tensorboard: bool = _leaf(False, "bool")
    plots: bool = _leaf(True, "bool")


@dataclass
class Config:
    """Root of the configuration tree."""

    seed: int = _leaf(0, "int", ge=0)
    data: DataConfig = _section(DataConfig)
    model: ModelConfig = _section(ModelConfig)
    training: TrainingConfig = _section(TrainingConfig)
    output: OutputConfig = _section(OutputConfig)


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def _is_section(f: dataclasses.Field) -> bool:
    return "spec" not in f.metadata


def _section_type(cls: type, name: str) -> type:
    # Section fields use default_factory=<dataclass>, which is the type we need (annotations are strings here).
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory  # type: ignore[return-value]


def _all_leaf_paths(cls: type = Config, prefix: str = "") -> list[str]:
    paths = []
    for f in dataclasses.fields(cls):
        dotted = prefix + f.name
        if _is_section(f):
            paths.append(dotted)
            paths.extend(_all_leaf_paths(_section_type(cls, f.name), dotted + "."))
        else:
            paths.append(dotted)
    return paths


def _suggest(dotted: str, local_names: Sequence[str], prefix: str) -> str:
    """Nearest valid key: first among siblings, then among every dotted path in the schema."""
    last = dotted.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(last, list(local_names), n=1, cutoff=0.6)
    if close:
        return prefix + close[0]
    close = difflib.get_close_matches(dotted, _all_leaf_paths(), n=1, cutoff=0.6)
    if close:
        return close[0]
    # A key placed in the wrong section (e.g. `lambda_inv_enc` at top level): match on the last component.
    by_last = {p.rsplit(".", 1)[-1]: p for p in _all_leaf_paths()}
    close = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.8)
    return by_last[close[0]] if close else ""


def _unknown_key_error(dotted: str, local_names: Sequence[str], prefix: str) -> ConfigError:
    hint = _suggest(dotted, local_names, prefix)
    msg = f"unknown key '{dotted}'"
    if hint:
        msg += f" (did you mean '{hint}'?)"
    else:
        msg += f" (valid keys here: {', '.join(prefix + n for n in local_names)})"
    return ConfigError(msg)


_FLOAT_STRING = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_number(key: str, value: Any, spec: _Spec) -> None:
    if spec.ge is not None and not value >= spec.ge:
        raise ConfigError(f"{key} must be >= {spec.ge:g}, got {_fmt(value)}")
    if spec.gt is not None and not value > spec.gt:
        raise ConfigError(f"{key} must be > {spec.gt:g}, got {_fmt(value)}")
    if spec.lt is not None and not value < spec.lt:
        raise ConfigError(f"{key} must be < {spec.lt:g}, got {_fmt(value)}")


def _coerce_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got bool {value}")
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
        return value
    if isinstance(value, str) and _FLOAT_STRING.match(value.strip()):
        return float(value)
    raise ConfigError(f"{key} must be a number, got {_type_name(value)} {_fmt(value)}")


def _check_leaf(key: str, value: Any, spec: _Spec) -> Any:
    """Return the (possibly coerced) value, or raise ConfigError naming the key and the value."""
    if value is None:
        if spec.nullable:
            return None
        raise ConfigError(f"{key} must not be null")

    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {_type_name(value)} {_fmt(value)}")
        _check_number(key, value, spec)
        return value

    if spec.kind == "float":
        value = _coerce_float(key, value)
        _check_number(key, value, spec)
        return value

    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {_type_name(value)} {_fmt(value)}")
        return value

    if spec.kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {_type_name(value)} {_fmt(value)}")
        if spec.choices and value not in spec.choices:
            options = " | ".join(spec.choices) + (" | null" if spec.nullable else "")
            raise ConfigError(f"{key} must be one of {options}, got {_fmt(value)}")
        if not spec.choices and not value.strip():
            raise ConfigError(f"{key} must be a non-empty string, got {_fmt(value)}")
        return value

    if spec.kind == "bool_or_choice":
        if isinstance(value, bool) or (isinstance(value, str) and value in spec.choices):
            return value
        options = "true | false | " + " | ".join(spec.choices)
        raise ConfigError(f"{key} must be one of {options}, got {_type_name(value)} {_fmt(value)}")

    if spec.kind == "number_list":
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list of numbers, got {_type_name(value)} {_fmt(value)}")
        if not value:
            raise ConfigError(f"{key} must be a non-empty list, got []")
        out = []
        for i, item in enumerate(value):
            item_key = f"{key}[{i}]"
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ConfigError(f"{item_key} must be a number, got {_type_name(item)} {_fmt(item)}")
            if not math.isfinite(item):
                raise ConfigError(f"{item_key} must be a finite number, got {item}")
            _check_number(item_key, item, spec)
            out.append(item)
        return out

    raise AssertionError(f"unhandled spec kind {spec.kind}")  # pragma: no cover


# --------------------------------------------------------------------------------------------------------------------
# dict <-> dataclasses
# --------------------------------------------------------------------------------------------------------------------


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        where = prefix[:-1] if prefix else "the configuration"
        raise ConfigError(f"{where} must be a mapping of keys, got {_type_name(data)} {_fmt(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if not isinstance(key, str) or key not in fields:
            raise _unknown_key_error(prefix + str(key), list(fields), prefix)
    if cls is ModelConfig and data.get("preset") is not None:
        data = _with_preset(data, prefix)
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        if _is_section(f):
            kwargs[name] = _build(_section_type(cls, name), data[name], prefix + name + ".")
        else:
            kwargs[name] = _check_leaf(prefix + name, data[name], f.metadata["spec"])
    return cls(**kwargs)


def _with_preset(data: Mapping[str, Any], prefix: str) -> dict:
    """The `model:` section with the named preset's sizes under the keys it gives."""
    from upt_keras.presets import GRID_PRESETS, preset  # the sizes only: imports no framework

    name = _check_leaf(prefix + "preset", data["preset"], _Spec(kind="str", nullable=True, choices=GRID_PRESETS))
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    sizes = {k: list(v) if isinstance(v, tuple) else v for k, v in preset(name).items() if k in names}
    return {**sizes, **data}


def _validate_tree(obj: Any, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if _is_section(f):
            expected = _section_type(type(obj), f.name)
            if not isinstance(value, expected):
                raise ConfigError(f"{prefix + f.name} must be a {expected.__name__}, got {_type_name(value)}")
            _validate_tree(value, prefix + f.name + ".")
        else:
            setattr(obj, f.name, _check_leaf(prefix + f.name, value, f.metadata["spec"]))


def validate_config(cfg: Config) -> Config:
    """Check every value of `cfg` and the rules that tie several keys together; returns `cfg` (values coerced in place).

    Raises:
        ConfigError: naming the offending dotted key(s) and value(s).
    """
    if not isinstance(cfg, Config):
        raise ConfigError(f"expected a Config, got {_type_name(cfg)}")
    _validate_tree(cfg, "")

    d, m, t = cfg.data, cfg.model, cfg.training
    if d.source == "hdf5" and not d.path:
        raise ConfigError("data.path is required when data.source is 'hdf5', got null")
    if d.test_fraction + d.val_fraction >= 1.0:
        raise ConfigError(
            "data.test_fraction + data.val_fraction must be < 1, got "
            f"{d.test_fraction} + {d.val_fraction} = {d.test_fraction + d.val_fraction:g}"
        )
    # Attention layers split the width evenly over the heads.
    for width_key, heads_key in (
        ("encoder_dim", "encoder_heads"),
        ("approximator_width", "approximator_heads"),
        ("decoder_width", "decoder_heads"),
    ):
        width, heads = getattr(m, width_key), getattr(m, heads_key)
        if width % heads:
            raise ConfigError(
                f"model.{width_key} must be divisible by model.{heads_key}, got {width} and {heads}"
            )
    return cfg


def validate_for_grid(cfg: Config, grid_shape: Iterable[int]) -> None:
    """Checks that need the spatial grid the model will see (after `data.reduced_resolution`).

    Args:
        cfg: a validated Config.
        grid_shape: spatial sizes, e.g. `(256,)` or `(64, 64)`.

    Raises:
        ConfigError: when `model.patch_size` does not divide every grid dimension, or when query sampling is enabled
            and `training.query_sampling.num_queries` exceeds the number of grid points.
    """
    shape = tuple(int(n) for n in grid_shape)
    if not shape or any(n < 1 for n in shape):
        raise ConfigError(f"grid shape must be non-empty with positive sizes, got {shape}")
    patch = cfg.model.patch_size
    bad = [n for n in shape if n % patch]
    if bad:
        raise ConfigError(
            f"model.patch_size={patch} must divide every grid dimension, got grid shape {shape} "
            f"({', '.join(str(n) for n in bad)} not divisible by {patch})"
        )
    qs = cfg.training.query_sampling
    num_points = math.prod(shape)
    if qs.enabled and qs.num_queries > num_points:
        raise ConfigError(
            f"training.query_sampling.num_queries={qs.num_queries} exceeds the {num_points} points of grid shape "
            f"{shape}; lower it or set training.query_sampling.enabled=false"
        )


def config_from_dict(data: Mapping[str, Any] | None) -> Config:
    """Build and validate a Config from a (partial) nested dict; missing keys take their defaults."""
    return validate_config(_build(Config, data, ""))


def config_to_dict(cfg: Config) -> dict:
    """Nested plain dict (only str/int/float/bool/None/list), suitable for YAML or JSON."""
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------------------------------------
# Overrides and files
# --------------------------------------------------------------------------------------------------------------------


def _set_dotted(data: dict, dotted: str, value: Any, override: str) -> None:
    parts = dotted.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {override!r}: malformed key {dotted!r}")
    node: Any = data
    cls: type = Config
    for depth, part in enumerate(parts[:-1]):
        prefix = ".".join(parts[:depth])
        prefix = prefix + "." if prefix else ""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields or not _is_section(fields[part]):
            err = _unknown_key_error(".".join(parts), list(fields), prefix)
            raise ConfigError(f"override {override!r}: {err}")
        cls = _section_type(cls, part)
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {prefix + part} is not a mapping in the base config")
        node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(data: Mapping[str, Any] | None, overrides: Iterable[str]) -> dict:
    """Return a deep copy of the raw config dict with `key.path=value` overrides applied.

    Values are parsed with `yaml.safe_load`, so `x=3` is an int, `x=0.5` a float, `x=true` a bool, `x=null` None,
    `x=[1,2]` a list and anything else a string. Unknown keys are reported by validation, with a suggestion.
    """
    out = copy.deepcopy(dict(data or {}))
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, _, raw = item.partition("=")
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"override {item!r}: cannot parse value {raw!r}: {reason}") from None
        _set_dotted(out, key, value, item)
    return out


def read_yaml(path: str | os.PathLike, what: str = "config") -> Any:
    """The content of the YAML file `path` (`yaml.safe_load`; None when it is empty).

    Raises:
        ConfigError: the file does not exist ("<what> file not found: ...") or is not valid YAML.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {os.fspath(path)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML in {os.fspath(path)}: {exc}") from None


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (or start from the defaults when `path` is None), apply overrides, validate.

    Args:
        path: YAML file; keys not present take their defaults.
        overrides: strings like `"training.lambda_inv_enc=0.02"` applied after reading the file.

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown key, or invalid value (naming the dotted key).
    """
    data: Any = {}
    if path is not None:
        data = read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{os.fspath(path)} must hold a mapping of keys, got {_type_name(data)}")
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError(f"{os.fspath(path)}: {exc}") from None


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the full config (every key, defaults included) as YAML; `load_config(path)` gives an equal Config."""
    validate_config(cfg)
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config_to_dict(cfg), fh, sort_keys=False, default_flow_style=False)
