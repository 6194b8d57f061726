"""Typed YAML configuration for training and evaluating UPT models.

The schema is a tree of pydantic models with defaults. A YAML file only needs the keys it changes; everything else takes
the default. Every value is checked (type and range) once, when a config is built (and again on assignment), and
unknown keys are rejected with the nearest valid key, so a typo never silently falls back to a default.

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
import math
import os
from typing import Any, Iterable, Mapping, Optional

import yaml
from pydantic import Field, model_validator

from upt_keras.models.presets import PRESETS, ModelSizes, preset
from upt_keras.objectives.settings import ObjectiveSettings
from upt_keras.schema import (Bool, ConfigError, Float, Int, Section, Text, bool_or, config_error, got,
                              one_of, sections, type_name, unknown_key, validated)

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


# --------------------------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------------------------


class DataConfig(Section):
    """Where the trajectories come from and how they are split and subsampled."""

    source: one_of("default", "hdf5") = "default"
    path: Optional[Text] = None
    reduced_resolution: Int = Field(1, ge=1)
    reduced_resolution_t: Int = Field(1, ge=1)
    time_stride: Int = Field(1, ge=1)
    test_fraction: Float = Field(0.1, ge=0.0, lt=1.0)
    val_fraction: Float = Field(0.1, ge=0.0, lt=1.0)
    max_train_samples: Optional[Int] = Field(None, ge=1)
    rollout_steps: Int = Field(20, ge=1)
    max_val_samples: Optional[Int] = Field(100, ge=1)  # validation trajectories at most (the first of the split)
    max_test_samples: Optional[Int] = Field(100, ge=1)  # test trajectories at most (one-step and rollouts)
    # splits read into memory once (float32: trajectories x frames x points x fields x 4 bytes), or read from the
    # file at every batch (no memory, each batch a few small reads)
    in_memory: Bool = True
    # point clouds: the share of each training sample's points the model is given (a fresh random subset per batch);
    # it is trained to predict at all of them, as it must predict off its input points when scored on the full grid
    input_points_fraction: Float = Field(1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.source == "hdf5" and not self.path:
            raise config_error("data.path is required when data.source is 'hdf5', got null")
        total = self.test_fraction + self.val_fraction
        if total >= 1.0:
            raise config_error("data.test_fraction + data.val_fraction must be < 1, got "
                                f"{self.test_fraction} + {self.val_fraction} = {total:g}")
        return self


class ModelConfig(ModelSizes):
    """Sizes of the encoder, approximator and any-point decoder (`upt_keras.models.presets.ModelSizes`), plus how the
    model decodes.

    `preset` names a set of sizes in `upt_keras.models.presets.PRESETS`: keys left out of the section take the preset's
    value instead of the default; keys given override it.
    """

    preset: Optional[Text] = None  # checked against the presets in `_with_preset`
    decode_chunk_size: Int = Field(65536, ge=1)
    residual: Bool = False  # decode the change: u_t + decode(z_next) - decode(z_t)
    residual_neighbours: Int = Field(12, ge=1)  # points: u_t read off the points from this many nearest

    @model_validator(mode="before")
    @classmethod
    def _with_preset(cls, data: Any) -> Any:
        """The section with the named preset's sizes under the keys it does not give."""
        if not isinstance(data, Mapping) or data.get("preset") is None:
            return data
        name = data["preset"]
        if name not in PRESETS:
            raise config_error(f"model.preset must be one of {' | '.join(PRESETS)} | null, {got(name)}")
        sizes = {k: list(v) if isinstance(v, tuple) else v for k, v in preset(name).items() if k in cls.model_fields}
        return {**sizes, **data}

    @model_validator(mode="after")
    def _heads_divide_widths(self) -> ModelConfig:
        # Attention layers split the width evenly over the heads.
        for width_key, heads_key in (("encoder_dim", "encoder_heads"), ("approximator_width", "approximator_heads"),
                                     ("decoder_width", "decoder_heads")):
            width, heads = getattr(self, width_key), getattr(self, heads_key)
            if width % heads:
                raise config_error(
                    f"model.{width_key} must be divisible by model.{heads_key}, got {width} and {heads}")
        return self


class QuerySamplingConfig(Section):
    """Random subset of query points for the forward and inverse-encoding losses."""

    enabled: Bool = False
    num_queries: Int = Field(2048, ge=1)
    strategy: one_of("uniform", "stratified") = "uniform"


class TrainingConfig(ObjectiveSettings):
    """Optimisation, the objective's terms (`upt_keras.objectives.settings.ObjectiveSettings`: forward, rollout,
    inverse and consistency terms), the inverse-loss curriculum, precision and stopping."""

    epochs: Int = Field(20, ge=1)
    batch_size: Int = Field(32, ge=1)
    learning_rate: Float = Field(1.0e-3, gt=0.0)
    weight_decay: Float = Field(1.0e-4, ge=0.0)
    lr_schedule: one_of("cosine", "constant") = "cosine"
    warmup_steps: Int = Field(0, ge=0)
    time_budget_seconds: Optional[Float] = Field(None, gt=0.0)
    # what the budget covers: "run", the whole call (data, training, validations, test evaluation);
    # "training", the training steps and the validations between them (data and the test evaluation
    # come on top: the time a plain training loop would count)
    time_budget_covers: one_of("run", "training") = "run"
    fit_schedule_to_budget: Bool = True  # with a budget the cosine follows the clock: 0 when the budget ends
    inverse_loss_warmup_epochs: Int = Field(5, ge=0)
    inverse_loss_ramp_epochs: Optional[Int] = Field(None, ge=0)
    inverse_loss_max_weight: Float = Field(0.05, ge=0.0)
    query_sampling: QuerySamplingConfig = Field(default_factory=QuerySamplingConfig)
    amp: bool_or("mixed_float16", "mixed_bfloat16") = False
    jit_compile: bool_or("auto") = "auto"
    early_stopping_patience: Optional[Int] = Field(None, ge=1)
    distribution: Optional[one_of("data_parallel")] = None
    # validation: the one-step forward loss and nRMSE ("forward"), or also the objective's other terms ("all")
    validation_terms: one_of("forward", "all") = "forward"
    validation_every_epochs: Int = Field(1, ge=1)  # validate after every n-th epoch (and after the last)
    validation_every_steps: Optional[Int] = Field(None, ge=1)  # also validate every n training steps
    checkpoint_every_steps: Optional[Int] = Field(50, ge=1)  # resumable state every n steps (and every epoch)

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


class OutputConfig(Section):
    """Where runs write checkpoints, logs and figures."""

    run_dir: Text = "runs/burgers1d"
    tensorboard: Bool = False
    plots: Bool = True
    log_every_steps: Int = Field(10, ge=1)  # a row of history_steps.csv every n training steps


class Config(Section):
    """Root of the configuration tree."""

    seed: Int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


# --------------------------------------------------------------------------------------------------------------------
# dict <-> Config
# --------------------------------------------------------------------------------------------------------------------


def config_from_dict(data: Mapping[str, Any] | None) -> Config:
    """Build and validate a Config from a (partial) nested dict; missing keys take their defaults."""
    return validated(Config, data)


def config_to_dict(cfg: Config) -> dict:
    """Nested plain dict (only str/int/float/bool/None/list), suitable for YAML or JSON."""
    return cfg.model_dump()


def validate_config(cfg: Config) -> Config:
    """Check `cfg` again; returns it. A Config is checked when built and on assignment: this is for one whose lists
    were changed in place.

    Raises:
        ConfigError: naming the offending dotted key(s) and value(s).
    """
    if not isinstance(cfg, Config):
        raise ConfigError(f"expected a Config, got {type_name(cfg)}")
    config_from_dict(config_to_dict(cfg))
    return cfg


def validate_for_grid(cfg: Config, grid_shape: Iterable[int], num_points: int | None = None) -> None:
    """Checks that need the spatial grid the model will see (after `data.reduced_resolution`).

    Args:
        cfg: a validated Config.
        grid_shape: spatial sizes, e.g. `(256,)` or `(64, 64)`.
        num_points: for a file of scattered points, the points per sample: the queries are drawn from them (uniform
            only), and the patch checks (grid encoders) do not apply.

    Raises:
        ConfigError: when `model.patch_size` does not divide every grid dimension, when average pooling's
            `model.num_latent_tokens` does not divide the number of patches (each message suggests a value that
            fits), or when query sampling is enabled and `training.query_sampling.num_queries` exceeds the number of
            grid points (or the points of a sample).
    """
    shape = tuple(int(n) for n in grid_shape)
    if not shape or any(n < 1 for n in shape):
        raise ConfigError(f"grid shape must be non-empty with positive sizes, got {shape}")
    qs = cfg.training.query_sampling
    if num_points is not None:
        if qs.enabled and qs.num_queries > num_points:
            raise ConfigError(
                f"training.query_sampling.num_queries={qs.num_queries} exceeds the {num_points} points of each "
                "sample; lower it or set training.query_sampling.enabled=false")
        if qs.enabled and qs.strategy != "uniform":
            raise ConfigError(
                f"training.query_sampling.strategy={qs.strategy} cuts the grid into blocks; scattered points are "
                "sampled uniformly: set training.query_sampling.strategy=uniform")
        return
    m = cfg.model
    patch = m.patch_size
    bad = [n for n in shape if n % patch]
    if bad:
        fits = _largest_divisor(math.gcd(*shape), patch)
        raise ConfigError(
            f"model.patch_size={patch} must divide every grid dimension, got grid shape {shape} "
            f"({', '.join(str(n) for n in bad)} not divisible by {patch}); e.g. --set model.patch_size={fits}"
        )
    patches = math.prod(n // patch for n in shape)
    if m.pooling == "average" and patches % m.num_latent_tokens:
        fits = _largest_divisor(patches, m.num_latent_tokens)
        raise ConfigError(
            f"model.num_latent_tokens={m.num_latent_tokens} must divide the {patches} patches of grid shape {shape} "
            f"(model.patch_size={patch}, model.pooling=average); e.g. --set model.num_latent_tokens={fits}"
        )
    num_points = math.prod(shape)
    if qs.enabled and qs.num_queries > num_points:
        raise ConfigError(
            f"training.query_sampling.num_queries={qs.num_queries} exceeds the {num_points} points of grid shape "
            f"{shape}; lower it or set training.query_sampling.enabled=false"
        )


def _largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of `n` that is at most `at_most` (1 at least)."""
    return max(d for d in range(1, max(1, min(n, at_most)) + 1) if n % d == 0)


# --------------------------------------------------------------------------------------------------------------------
# Overrides and files
# --------------------------------------------------------------------------------------------------------------------


def _set_dotted(data: dict, dotted: str, value: Any, override: str) -> None:
    parts = dotted.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {override!r}: malformed key {dotted!r}")
    node: Any = data
    cls: type[Section] = Config
    for depth, part in enumerate(parts[:-1]):
        prefix = ".".join(parts[:depth])
        prefix = prefix + "." if prefix else ""
        if part not in sections(cls):
            raise ConfigError(f"override {override!r}: {unknown_key(dotted, cls, prefix, Config)}")
        cls = sections(cls)[part]
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
            raise ConfigError(f"{os.fspath(path)} must hold a mapping of keys, got {type_name(data)}")
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
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config_to_dict(cfg), fh, sort_keys=False, default_flow_style=False)
