"""Hyper-parameter search (KerasTuner) over the inverse-loss weights, the number of queries and the inverse-loss
frequency of a UPT, starting from a training config.

```python
from upt_keras.config import load_config
from upt_keras import tuning

cfg = load_config("configs/train_burgers1d.yaml", overrides=["training.epochs=8"])
space = tuning.load_tuning_config("tuning.yaml")          # or None: DEFAULT_TUNING
result = tuning.tune(cfg, space, tuner="bayesian", max_trials=12, directory="tuning", project_name="b1d")
print(tuning.format_table(result.rows, result.objective))
# tuning/b1d/summary.md, summary.csv, best_config.yaml  (upt-keras train --config tuning/b1d/best_config.yaml)
```

What is searched, and where it enters (`UPTHyperModel`):

| hyper-parameter          | KerasTuner name                   | enters in                                          |
|--------------------------|-----------------------------------|----------------------------------------------------|
| `num_queries` Q          | `num_queries` (choice of ints)    | `build(hp)`: a constructor argument of `UPT`       |
| `inverse_loss_frequency` | `inverse_loss_frequency` (choice) | `build(hp)`: a constructor argument of `UPT`       |
| `lambda_inv_enc`         | `lambda_inv_enc` (+ `inv_enc_on`) | `fit(hp, model)`: the model's variable, attribute, |
|                          |                                   | and the trial's `InverseLossCurriculum`            |
| `lambda_inv_dec`         | `lambda_inv_dec` (+ `inv_dec_on`) | `fit(hp, model)`: likewise                         |

The objective is always an unweighted validation metric, minimised: `val_forward_loss` (the one-step MSE on all grid
points, as logged by `UPT`; the default) or `val_nrmse` (one-step nRMSE in physical units on the validation split,
computed at the end of every epoch). The training total, whose inverse-loss terms change with the trial's weights,
is never a valid objective: trials with larger weights would look worse for that reason alone.

The search space is a `tuning:` section in its own YAML file (the training config is not changed):

```yaml
tuning:
  objective: val_forward_loss      # or val_nrmse
  lambda_inv_enc:                  # a range ...
    min: 1.0e-4
    max: null                      # null: training.inverse_loss_max_weight (the curriculum's cap)
    sampling: log                  # log | linear
    allow_zero: true               # also try 0 (the term switched off), via the boolean `inv_enc_on`
  lambda_inv_dec: 0.01             # ... or a fixed number, or null (the training config's value)
  num_queries:
    fractions: [0.25, 0.5, 1.0]    # of the N grid points (1.0: every point, query sampling off) ...
    # values: [64, 128, 256]       # ... or absolute counts (<= N), or a single int, or null
  inverse_loss_frequency: [1, 2]   # a list of ints, an int, or null (the training config's value)
```

Keys left out take the values of `DEFAULT_TUNING`. A search directory `D/P` holds KerasTuner's files (`oracle.json`,
`trial_*/`), `search.json` (the base config and the resolved space, checked when a search resumes), and, once the
search ends, `summary.md`, `summary.csv` and `best_config.yaml` (the base config with the best trial's values; it is
a complete training config). Rerunning the same search resumes it: finished trials are kept, an interrupted trial
is run again, and `max_trials` may be raised to add trials.

This module does not import KerasTuner (nor, by itself, Keras) when it is loaded: `UPTHyperModel` and the callbacks
are created on first use, so that the command line builds its parser cheaply.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import difflib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from upt_keras.config import Config, ConfigError, config_from_dict, config_to_dict, load_config, validate_config

__all__ = [
    "DEFAULT_TUNING",
    "OBJECTIVES",
    "TUNERS",
    "SearchSpace",
    "TuneResult",
    "UPTHyperModel",
    "StepTimer",
    "ValidationNRMSE",
    "parse_tuning",
    "load_tuning_config",
    "resolve_space",
    "effective_values",
    "trial_config",
    "make_tuner",
    "tune",
    "summary_rows",
    "format_table",
    "write_summary",
    "write_best_config",
    "run_tune",
]

#: Objectives a search may minimise: unweighted validation metrics only.
OBJECTIVES = {
    "val_forward_loss": "one-step MSE of the next field on every grid point of the validation split (normalised units)",
    "val_nrmse": "one-step nRMSE ||pred - true|| / ||true|| on the validation split (physical units)",
}
TUNERS = ("random", "bayesian", "hyperband")

#: The search space used when no tuning config is given (see the module doc for the format).
DEFAULT_TUNING: dict = {
    "objective": "val_forward_loss",
    "lambda_inv_enc": {"min": 1.0e-4, "max": None, "sampling": "log", "allow_zero": True},
    "lambda_inv_dec": {"min": 1.0e-4, "max": None, "sampling": "log", "allow_zero": True},
    "num_queries": {"fractions": [0.25, 0.5, 1.0]},
    "inverse_loss_frequency": None,
}

LAMBDAS = ("lambda_inv_enc", "lambda_inv_dec")
#: Name of the boolean hyper-parameter that switches a weight on (only present when `allow_zero`).
SWITCHES = {"lambda_inv_enc": "inv_enc_on", "lambda_inv_dec": "inv_dec_on"}
_RANGE_KEYS = ("min", "max", "sampling", "allow_zero")

SEARCH_FILE = "search.json"
SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
BEST_CONFIG = "best_config.yaml"


# --------------------------------------------------------------------------------------------------------------------
# The tuning config (framework-free)
# --------------------------------------------------------------------------------------------------------------------


def _unknown(key: str, valid, where: str) -> ConfigError:
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.6)
    hint = f" (did you mean '{where}{close[0]}'?)" if close else f" (valid keys: {', '.join(valid)})"
    return ConfigError(f"unknown key '{where}{key}'{hint}")


def _number(key: str, value: Any, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads 1e-3 as a string
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _int_list(key: str, value: Any) -> list[int]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ConfigError(f"{key} must not be empty")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ConfigError(f"{key}[{i}] must be a positive integer, got {item!r}")
        out.append(int(item))
    return sorted(set(out))


def _parse_lambda(key: str, value: Any):
    if value is None:
        return None
    if not isinstance(value, Mapping):
        number = _number(key, value)
        if number < 0:
            raise ConfigError(f"{key} must be >= 0, got {value!r}")
        return number
    for k in value:
        if k not in _RANGE_KEYS:
            raise _unknown(k, _RANGE_KEYS, key + ".")
    spec = {"min": 1.0e-4, "max": None, "sampling": "log", "allow_zero": True}
    spec.update(value)
    spec["min"] = _number(key + ".min", spec["min"])
    spec["max"] = _number(key + ".max", spec["max"], allow_none=True)
    if spec["sampling"] not in ("log", "linear"):
        raise ConfigError(f"{key}.sampling must be log or linear, got {spec['sampling']!r}")
    if not isinstance(spec["allow_zero"], bool):
        raise ConfigError(f"{key}.allow_zero must be true or false, got {spec['allow_zero']!r}")
    if spec["sampling"] == "log" and not spec["min"] > 0:
        raise ConfigError(f"{key}.min must be > 0 with log sampling (use allow_zero for 0), got {spec['min']!r}")
    if spec["min"] < 0:
        raise ConfigError(f"{key}.min must be >= 0, got {spec['min']!r}")
    if spec["max"] is not None and spec["max"] < spec["min"]:
        raise ConfigError(f"{key}.max must be >= {key}.min, got {spec['max']!r} < {spec['min']!r}")
    return spec


def _parse_queries(key: str, value: Any):
    if value is None:
        return None
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in ("fractions", "values"):
            bad = [k for k in value if k not in ("fractions", "values")]
            if bad:
                raise _unknown(bad[0], ("fractions", "values"), key + ".")
            raise ConfigError(f"{key} takes exactly one of 'fractions' or 'values', got {sorted(value)}")
        kind, items = next(iter(value.items()))
        if kind == "values":
            return {"values": _int_list(key + ".values", items)}
        items = items if isinstance(items, (list, tuple)) else [items]
        if not items:
            raise ConfigError(f"{key}.fractions must not be empty")
        fracs = []
        for i, item in enumerate(items):
            f = _number(f"{key}.fractions[{i}]", item)
            if not 0.0 < f <= 1.0:
                raise ConfigError(f"{key}.fractions[{i}] must be in (0, 1], got {item!r}")
            fracs.append(f)
        return {"fractions": sorted(set(fracs))}
    return {"values": _int_list(key, value)}


def parse_tuning(data: Mapping | None) -> dict:
    """Check a tuning space (the content of the `tuning:` section) and fill in `DEFAULT_TUNING` for missing keys.

    Returns a normalised dict: lambdas as None (training config's value), a number (fixed) or a range dict;
    `num_queries` as None, `{"fractions": [...]}` or `{"values": [...]}`; `inverse_loss_frequency` as None or a
    sorted list of ints.

    Raises:
        ConfigError: unknown key (with a suggestion), wrong type, empty list, or an objective that is not one of
            `OBJECTIVES` (a weighted total such as `loss` / `val_loss` is refused).
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"tuning must be a mapping of keys, got {type(data).__name__}")
    for key in data:
        if key not in DEFAULT_TUNING:
            raise _unknown(key, list(DEFAULT_TUNING), "tuning.")
    merged = copy.deepcopy(DEFAULT_TUNING)
    merged.update(data)
    objective = merged["objective"]
    if objective not in OBJECTIVES:
        why = ""
        if objective in ("loss", "val_loss", "total_loss", "val_total_loss"):
            why = " (the training total includes the weighted inverse terms, so trials with larger weights would " \
                  "look worse for that reason alone)"
        raise ConfigError(f"tuning.objective must be one of {' | '.join(OBJECTIVES)}, got {objective!r}{why}")
    out = {"objective": objective}
    for name in LAMBDAS:
        out[name] = _parse_lambda("tuning." + name, merged[name])
    out["num_queries"] = _parse_queries("tuning.num_queries", merged["num_queries"])
    freq = merged["inverse_loss_frequency"]
    out["inverse_loss_frequency"] = None if freq is None else _int_list("tuning.inverse_loss_frequency", freq)
    return out


def load_tuning_config(path: str | os.PathLike | None) -> dict:
    """Read a tuning YAML file holding a `tuning:` section; returns `parse_tuning` of it (None: the defaults)."""
    if path is None:
        return parse_tuning(None)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"tuning config file not found: {os.fspath(path)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML in {os.fspath(path)}: {exc}") from None
    data = {} if data is None else data
    if not isinstance(data, Mapping) or set(data) - {"tuning"}:
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ConfigError(f"{os.fspath(path)} must hold a single 'tuning:' section, got {keys}")
    try:
        return parse_tuning(data.get("tuning"))
    except ConfigError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from None


# --------------------------------------------------------------------------------------------------------------------
# The resolved space (against a training config and a grid)
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class SearchSpace:
    """A tuning space made concrete for one training config and grid.

    Attributes:
        objective: name of the minimised metric (a key of `OBJECTIVES`).
        lambdas: per weight, `{"fixed": value}` or `{"min", "max", "sampling", "allow_zero"}`.
        num_queries: the Q choices (ints in [1, num_points]); one entry means fixed.
        inverse_loss_frequency: the k choices; one entry means fixed.
        num_points: N, the number of grid points (Q = N means every point, query sampling off).
    """

    objective: str
    lambdas: dict
    num_queries: list
    inverse_loss_frequency: list
    num_points: int

    def declare(self, hp) -> dict:
        """Declare the hyper-parameters on `hp` (idempotent) and return the trial's effective values."""
        values = {}
        for name in LAMBDAS:
            spec = self.lambdas[name]
            if "fixed" in spec:
                values[name] = float(hp.Fixed(name, spec["fixed"]))
                continue
            if spec["allow_zero"]:
                switch = SWITCHES[name]
                on = hp.Boolean(switch, default=True)
                with hp.conditional_scope(switch, [True]):
                    value = self._weight(hp, name, spec)
                values[name] = float(value) if on and value is not None else 0.0
            else:
                values[name] = float(self._weight(hp, name, spec))
        for name in ("num_queries", "inverse_loss_frequency"):
            choices = getattr(self, name)
            if len(choices) == 1:
                values[name] = int(hp.Fixed(name, choices[0]))
            else:
                values[name] = int(hp.Choice(name, choices, ordered=True))
        return values

    @staticmethod
    def _weight(hp, name, spec):
        if spec["min"] == spec["max"]:  # with allow_zero: "this value or 0"
            return hp.Fixed(name, spec["min"])
        return hp.Float(name, spec["min"], spec["max"], sampling=spec["sampling"])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_space(tuning: Mapping | None, cfg: Config, num_points: int) -> SearchSpace:
    """Make a tuning space concrete for `cfg` on a grid of `num_points` points.

    `None` entries take the training config's values; a lambda range without `max` ends at
    `training.inverse_loss_max_weight`; `num_queries` fractions become `round(f * N)` (at least 1).

    Raises:
        ConfigError: a weight above `training.inverse_loss_max_weight` (the curriculum would clip it, so trials
            would differ only in name), Q above N, inverse weights searched while `training.use_inverse_losses` is
            false, or so few epochs that the curriculum keeps the weights at 0 throughout (they would have no
            effect).
    """
    space = parse_tuning(tuning)
    t = cfg.training
    cap = t.inverse_loss_max_weight
    lambdas = {}
    for name in LAMBDAS:
        spec = space[name]
        if spec is None:
            spec = getattr(t, name)
        if isinstance(spec, float):
            if spec > cap:
                raise ConfigError(f"tuning.{name}={spec:g} exceeds training.inverse_loss_max_weight={cap:g}, which "
                                  "caps the weight; raise the cap or lower the value")
            lambdas[name] = {"fixed": spec}
            continue
        spec = dict(spec)
        if spec["max"] is None:
            spec["max"] = cap
        if spec["max"] > cap:
            raise ConfigError(f"tuning.{name}.max={spec['max']:g} exceeds training.inverse_loss_max_weight={cap:g}, "
                              "which caps the weight (larger values would all train alike); raise the cap or lower "
                              "the range")
        if spec["min"] > spec["max"]:
            raise ConfigError(f"tuning.{name}.min={spec['min']:g} exceeds its max {spec['max']:g} "
                              f"(training.inverse_loss_max_weight={cap:g} when max is null)")
        if spec["min"] == spec["max"] and not spec["allow_zero"]:
            lambdas[name] = {"fixed": spec["min"]}
        else:
            lambdas[name] = spec
    searched = [n for n in LAMBDAS if "fixed" not in lambdas[n]]
    if searched and not t.use_inverse_losses:
        raise ConfigError(f"the search varies {', '.join(searched)} but training.use_inverse_losses is false, so "
                          "the weights have no effect; set it true or fix the weights (tuning.<name>: null)")
    # The curriculum's weight is 0 before epoch W, and still 0 at epoch W when it ramps (R > 0).
    first_weighted_epoch = t.inverse_loss_warmup_epochs + (1 if t.ramp_epochs > 0 else 0)
    if searched and t.epochs <= first_weighted_epoch:
        raise ConfigError(f"with training.epochs={t.epochs}, the inverse-loss curriculum "
                          f"(training.inverse_loss_warmup_epochs={t.inverse_loss_warmup_epochs}, ramp "
                          f"{t.ramp_epochs} epochs) keeps the weights at 0 in every epoch, so "
                          f"{', '.join(searched)} would have no effect; train at least {first_weighted_epoch + 1} "
                          "epochs or shorten the warmup / ramp")

    n = int(num_points)
    q = space["num_queries"]
    if q is None:
        qs = t.query_sampling
        choices = [min(qs.num_queries, n) if qs.enabled else n]
    elif "fractions" in q:
        choices = sorted({max(1, int(round(f * n))) for f in q["fractions"]})
    else:
        too_many = [v for v in q["values"] if v > n]
        if too_many:
            raise ConfigError(f"tuning.num_queries values {too_many} exceed the {n} grid points")
        choices = list(q["values"])
    freq = space["inverse_loss_frequency"]
    freq = [t.inverse_loss_frequency] if freq is None else list(freq)
    return SearchSpace(objective=space["objective"], lambdas=lambdas, num_queries=choices,
                       inverse_loss_frequency=freq, num_points=n)


def effective_values(values: Mapping) -> dict:
    """The weights, Q and k a trial trains with, from its hyper-parameter values (a switch that is off gives 0)."""
    out = {}
    for name in LAMBDAS:
        on = values.get(SWITCHES[name], True)
        out[name] = float(values[name]) if on and values.get(name) is not None else 0.0
    out["num_queries"] = int(values["num_queries"])
    out["inverse_loss_frequency"] = int(values["inverse_loss_frequency"])
    return out


def trial_config(base: Config, values: Mapping, num_points: int, lambdas: bool = True) -> Config:
    """`base` with a trial's effective values (see `effective_values`) applied; a validated Config.

    Q = N switches query sampling off (every point is a query); Q < N switches it on with Q queries.
    `lambdas=False` keeps the base config's weights (the model is built with them; `fit` sets the trial's).
    """
    d = config_to_dict(base)
    t = d["training"]
    if lambdas:
        t["lambda_inv_enc"], t["lambda_inv_dec"] = float(values["lambda_inv_enc"]), float(values["lambda_inv_dec"])
    t["inverse_loss_frequency"] = int(values["inverse_loss_frequency"])
    q = int(values["num_queries"])
    t["query_sampling"]["enabled"] = q < int(num_points)
    t["query_sampling"]["num_queries"] = q
    return config_from_dict(d)


# --------------------------------------------------------------------------------------------------------------------
# Keras pieces, created on first use
# --------------------------------------------------------------------------------------------------------------------


def _make_callbacks_classes():
    import numpy as np

    import keras

    class StepTimer(keras.callbacks.Callback):
        """Records the wall time of every training step (batch begin to batch end, after the step's results are
        available) and of the whole `fit`.

        Attributes:
            times: seconds per step, in order.
            fit_seconds: wall time of the last `fit`.
        """

        def __init__(self):
            super().__init__()
            self.times, self.fit_seconds = [], 0.0
            self._t0 = self._fit0 = None

        def on_train_begin(self, logs=None):
            self._fit0 = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:  # wait for the step (asynchronous devices)
                float(keras.ops.convert_to_numpy(logs["loss"]))
            self.times.append(time.perf_counter() - self._t0)

        def on_train_end(self, logs=None):
            self.fit_seconds = time.perf_counter() - self._fit0

        def step_time(self):
            """Median seconds per step, leaving out the first step (tracing / compilation) when there are others."""
            times = self.times[1:] if len(self.times) > 1 else self.times
            return float(statistics.median(times)) if times else float("nan")

    class ValidationNRMSE(keras.callbacks.Callback):
        """Adds `val_nrmse` (one-step nRMSE in physical units on `dataset`) to the logs at the end of every epoch.

        Place it before any callback that reads `val_nrmse` (early stopping, the tuner's own callbacks).
        """

        def __init__(self, dataset, batch_size=None):
            super().__init__()
            self.dataset, self.batch_size = dataset, batch_size

        def on_epoch_end(self, epoch, logs=None):
            from upt_keras import evaluation
            from upt_keras.metrics import nrmse

            x, y = evaluation.collect_pairs(self.dataset)
            batch = self.batch_size or getattr(self.dataset, "batch_size", 32)
            pred = evaluation._predict(self.model, x, batch)
            if logs is not None:
                logs["val_nrmse"] = float(nrmse(pred, y)) if np.all(np.isfinite(pred)) else float("nan")

    return StepTimer, ValidationNRMSE


def _make_hypermodel_class():
    import numpy as np

    import keras_tuner

    from upt_keras import training
    from upt_keras.callbacks import InverseLossCurriculum

    class UPTHyperModel(keras_tuner.HyperModel):
        """A KerasTuner hyper-model of `UPT` built from a training config.

        `build(hp)` builds and compiles the model exactly as `upt-keras train` does (`training.build_model`), with
        the trial's Q and inverse-loss frequency (constructor arguments). `fit(hp, model, ...)` sets the trial's
        inverse-loss weights on the model (`model.lambda_inv_enc`/`lambda_inv_dec` and the model-owned variables
        `inv_enc_weight`/`inv_dec_weight`), schedules them with an `InverseLossCurriculum` built from those
        weights and the config's warmup, ramp and cap, and trains on `data.train`, validating on `data.val`, for
        `training.epochs` epochs (unless `search` passes other data or epochs). It also honours
        `training.early_stopping_patience` (on the objective) and `training.time_budget_seconds` (per trial).

        `fit` returns a dict that KerasTuner records with the trial: the objective (its best epoch), `best_epoch`,
        `epochs`, `step_time` (median seconds per training step), `fit_seconds`, and the logged metrics of the best
        epoch.

        Args:
            base_cfg: the training Config the trials start from.
            data: `training.PreparedData` with a validation split.
            space: a tuning space (dict, see the module doc), or a `SearchSpace`; None: `DEFAULT_TUNING`.
        """

        def __init__(self, base_cfg, data, space=None, name="upt"):
            super().__init__(name=name, tunable=True)
            validate_config(base_cfg)
            if data.val is None:
                raise ConfigError("a search needs a validation split; set data.val_fraction > 0")
            self.base_cfg, self.data = base_cfg, data
            self.num_points = int(np.prod(data.grid_shape))
            self.space = space if isinstance(space, SearchSpace) else resolve_space(space, base_cfg, self.num_points)
            self.last_callbacks = []

        @property
        def objective(self):
            return self.space.objective

        def declare_hyperparameters(self, hp):
            self.space.declare(hp)

        def trial_values(self, hp) -> dict:
            """The trial's effective weights, Q and k (declares the hyper-parameters if needed)."""
            return self.space.declare(hp)

        def trial_config(self, hp, lambdas=True):
            return trial_config(self.base_cfg, self.trial_values(hp), self.num_points, lambdas=lambdas)

        def build(self, hp):
            model = training.build_model(self.trial_config(hp, lambdas=False), self.data)
            # Create the optimizer's slots now: Hyperband continues a trial from the checkpoint of an earlier one,
            # and a checkpoint's optimizer state only loads into a built optimizer.
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            return model

        def trial_callbacks(self, cfg, values):
            """The per-trial callbacks, in the order they must run (metrics first, then what reads them)."""
            import keras

            StepTimer, ValidationNRMSE = _callback_classes()
            t = cfg.training
            callbacks = []
            if self.objective == "val_nrmse":
                callbacks.append(ValidationNRMSE(self.data.val))
            if t.use_inverse_losses:
                callbacks.append(InverseLossCurriculum(
                    lambda_inv_enc=values["lambda_inv_enc"], lambda_inv_dec=values["lambda_inv_dec"],
                    warmup_epochs=t.inverse_loss_warmup_epochs, ramp_epochs=t.ramp_epochs,
                    max_weight=t.inverse_loss_max_weight,
                ))
            callbacks.append(StepTimer())
            if t.time_budget_seconds is not None:
                callbacks.append(training.TimeBudget(t.time_budget_seconds))
            if t.early_stopping_patience is not None:
                callbacks.append(keras.callbacks.EarlyStopping(monitor=self.objective, mode="min",
                                                               patience=t.early_stopping_patience))
            return callbacks

        def fit(self, hp, model, *args, callbacks=None, **kwargs):
            values = self.trial_values(hp)
            cfg = trial_config(self.base_cfg, values, self.num_points)
            set_inverse_weights(model, values["lambda_inv_enc"], values["lambda_inv_dec"])
            own = self.trial_callbacks(cfg, values)
            self.last_callbacks = own
            if not args:
                args = (self.data.train,)
                kwargs.setdefault("validation_data", self.data.val)
            kwargs.setdefault("epochs", cfg.training.epochs)
            history = model.fit(*args, callbacks=own + list(callbacks or []), **kwargs)
            return _trial_metrics(history, self.objective, own, kwargs.get("initial_epoch", 0))

    return UPTHyperModel


def set_inverse_weights(model, lambda_inv_enc, lambda_inv_dec):
    """Give `model` new base inverse-loss weights: its attributes and its model-owned weight variables."""
    model.lambda_inv_enc, model.lambda_inv_dec = float(lambda_inv_enc), float(lambda_inv_dec)
    model.inv_enc_weight.assign(float(lambda_inv_enc))
    model.inv_dec_weight.assign(float(lambda_inv_dec))


def _trial_metrics(history, objective, callbacks, initial_epoch=0) -> dict:
    import keras_tuner

    logs = history.history
    values = [float(v) for v in logs.get(objective, [])]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        raise keras_tuner.errors.FailedTrialError(
            f"no finite value of {objective} was logged (got {values}); the trial diverged or has no validation data"
        )
    best = values.index(min(finite))
    timer = next(c for c in callbacks if type(c).__name__ == "StepTimer")
    out = {name: float(vals[best]) for name, vals in logs.items()
           if len(vals) > best and isinstance(vals[best], (int, float)) and math.isfinite(float(vals[best]))}
    out.update({objective: min(finite),
                "best_epoch": float(initial_epoch + best), "epochs": float(len(values)),
                "step_time": timer.step_time(), "fit_seconds": float(timer.fit_seconds)})
    return out


_CLASSES: dict = {}


def _callback_classes():
    if "StepTimer" not in _CLASSES:
        _CLASSES["StepTimer"], _CLASSES["ValidationNRMSE"] = _make_callbacks_classes()
        for name in ("StepTimer", "ValidationNRMSE"):
            _CLASSES[name].__module__ = __name__
    return _CLASSES["StepTimer"], _CLASSES["ValidationNRMSE"]


def __getattr__(name):
    if name in ("StepTimer", "ValidationNRMSE"):
        return dict(zip(("StepTimer", "ValidationNRMSE"), _callback_classes()))[name]
    if name == "UPTHyperModel":
        if name not in _CLASSES:
            _CLASSES[name] = _make_hypermodel_class()
            _CLASSES[name].__module__ = __name__
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------------------------------
# Tuners and the search
# --------------------------------------------------------------------------------------------------------------------


def make_tuner(hypermodel, tuner: str = "random", max_trials: int = 10, directory="tuning", project_name="upt",
               overwrite: bool = False, seed: int | None = None, hyperband_factor: int = 3):
    """A KerasTuner tuner minimising `hypermodel.objective`, storing its state in `directory/project_name`.

    `tuner`: `random` (RandomSearch), `bayesian` (BayesianOptimization) or `hyperband` (Hyperband with
    `max_epochs = training.epochs` and `factor = hyperband_factor`; `max_trials` caps its number of trials too).
    With `overwrite=False` an existing search in that directory is resumed. `seed` (None: unseeded) is passed to
    KerasTuner as `seed + 1`, because KerasTuner treats a seed of 0 as "no seed" and draws a random one.
    """
    import keras_tuner

    if tuner not in TUNERS:
        raise ConfigError(f"tuner must be one of {' | '.join(TUNERS)}, got {tuner!r}")
    common = dict(
        hypermodel=hypermodel, objective=keras_tuner.Objective(hypermodel.objective, direction="min"),
        directory=os.fspath(directory), project_name=project_name, overwrite=overwrite,
        seed=None if seed is None else int(seed) + 1,
    )
    if tuner == "random":
        return keras_tuner.RandomSearch(max_trials=max_trials, **common)
    if tuner == "bayesian":
        try:
            return keras_tuner.BayesianOptimization(max_trials=max_trials, **common)
        except ImportError as err:
            raise ConfigError(f"the bayesian tuner needs scikit-learn (pip install scikit-learn): {err}") from None
    tuner_obj = keras_tuner.Hyperband(max_epochs=hypermodel.base_cfg.training.epochs, factor=hyperband_factor,
                                      **common)
    tuner_obj.oracle.max_trials = max_trials
    return tuner_obj


@dataclass
class TuneResult:
    """What `tune` returns.

    Attributes:
        tuner: the KerasTuner tuner (its oracle holds every trial).
        rows: `summary_rows` of the search, best first.
        objective: the minimised metric.
        best_trial_id: id of the best completed trial (None if none completed).
        best_config: the best trial's training Config (None if none completed).
        project_dir: `directory/project_name`.
        files: paths written (`summary_md`, `summary_csv`, `best_config`).
        new_trials: ids of the trials this call ran (a resumed search skips the finished ones).
    """

    tuner: Any
    rows: list
    objective: str
    best_trial_id: str | None
    best_config: Config | None
    project_dir: str
    files: dict = field(default_factory=dict)
    new_trials: list = field(default_factory=list)


def _comparable(cfg: Config) -> dict:
    d = json.loads(json.dumps(config_to_dict(cfg)))
    d.pop("output", None)  # where and how visibly a trained model is written does not change the trials
    return d


def _flat(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + str(k)] = v
    return out


def _write_json(path, payload) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")


def _check_search(project_dir: str, record: dict, overwrite: bool) -> None:
    """Refuse to resume a search in `project_dir` that was started with other settings."""
    path = os.path.join(project_dir, SEARCH_FILE)
    if os.path.exists(path) and not overwrite:
        try:
            with open(path, encoding="utf-8") as fh:
                previous = json.load(fh)
        except (OSError, ValueError):
            previous = None
        if previous is not None and previous != json.loads(json.dumps(record)):
            old, new = _flat(previous), _flat(json.loads(json.dumps(record)))
            diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:3])
            raise ConfigError(f"{project_dir} holds a search with different settings ({shown}); rerun with the same "
                              "config and tuning space to resume it, or pass another project name, or overwrite it")


def tune(cfg: Config, space=None, tuner: str = "random", max_trials: int = 10, directory="tuning",
         project_name: str = "upt", overwrite: bool = False, seed: int | None = None, verbose=1,
         data=None, hypermodel_cls=None, progress: bool = True) -> TuneResult:
    """Run (or resume) a search from the training config `cfg` and write its summary and best config.

    Args:
        cfg: the base training Config (its `output` section is not used by the trials).
        space: tuning space dict (`parse_tuning` format or raw), or None for `DEFAULT_TUNING`.
        tuner: `random`, `bayesian` or `hyperband`.
        max_trials: total number of trials of the search (a resumed search runs only the missing ones).
        directory, project_name: the search lives in `directory/project_name`.
        overwrite: start afresh, deleting an earlier search there (default: resume it).
        seed: the tuner's seed (default: `cfg.seed`).
        verbose: KerasTuner and `fit` verbosity (0, 1, 2).
        data: a `training.PreparedData` to use instead of preparing `cfg`'s data.
        hypermodel_cls: a subclass of `UPTHyperModel` to use (default `UPTHyperModel`).
        progress: progress bar if the default data set has to be generated.

    Raises:
        ConfigError: invalid config or space, no validation split, or a resumed search with different settings.
    """
    from upt_keras import training

    validate_config(cfg)
    if int(max_trials) < 1:
        raise ConfigError(f"max_trials must be >= 1, got {max_trials}")
    parsed = parse_tuning(space) if not isinstance(space, SearchSpace) else space
    if data is None:
        data = training.prepare_data(cfg, splits=("train", "val"), progress=progress)
    cls = hypermodel_cls or __getattr__("UPTHyperModel")
    hypermodel = cls(cfg, data, parsed)
    project_dir = os.path.join(os.fspath(directory), project_name)
    record = {"tuner": tuner, "base_config": _comparable(cfg), "space": hypermodel.space.to_dict()}
    _check_search(project_dir, record, overwrite)
    tuner_obj = make_tuner(hypermodel, tuner, max_trials, directory, project_name, overwrite=overwrite,
                           seed=cfg.seed if seed is None else seed)
    _write_json(os.path.join(project_dir, SEARCH_FILE), record)  # after the tuner: overwrite empties the folder
    before = set(_completed_ids(tuner_obj))
    tuner_obj.search(verbose=verbose)
    new = sorted(set(_completed_ids(tuner_obj)) - before)
    rows = summary_rows(tuner_obj, hypermodel.space.objective)
    files = write_summary(project_dir, rows, hypermodel.space.objective, hypermodel.num_points)
    best_id, best_cfg = None, None
    completed = [r for r in rows if r["status"] == "COMPLETED" and r["objective"] is not None]
    if completed:
        best_id = completed[0]["trial"]
        values = tuner_obj.oracle.get_trial(best_id).hyperparameters.values
        best_cfg = trial_config(cfg, effective_values(values), hypermodel.num_points)
        files["best_config"] = write_best_config(os.path.join(project_dir, BEST_CONFIG), best_cfg, completed[0],
                                                 hypermodel.space.objective, project_dir)
        best_cfg = load_config(files["best_config"])
    return TuneResult(tuner=tuner_obj, rows=rows, objective=hypermodel.space.objective, best_trial_id=best_id,
                      best_config=best_cfg, project_dir=project_dir, files=files, new_trials=new)


def _completed_ids(tuner) -> list:
    return [tid for tid, trial in tuner.oracle.trials.items() if trial.status == "COMPLETED"]


# --------------------------------------------------------------------------------------------------------------------
# Summary and best config
# --------------------------------------------------------------------------------------------------------------------


def _metric(trial, name):
    if trial.metrics.exists(name):
        value = trial.metrics.get_last_value(name)
        return None if value is None else float(value)
    return None


def summary_rows(tuner, objective: str) -> list[dict]:
    """One dict per trial, best objective first (trials without a result last, by id).

    Keys: trial, status, lambda_inv_enc, lambda_inv_dec, num_queries, inverse_loss_frequency, objective,
    best_epoch, epochs, step_time_ms, fit_seconds, message (last line of a failed trial's error).
    """
    rows = []
    for trial_id, trial in tuner.oracle.trials.items():
        status = str(trial.status)
        try:
            values = effective_values(trial.hyperparameters.values)
        except KeyError:
            values = dict.fromkeys(("lambda_inv_enc", "lambda_inv_dec", "num_queries", "inverse_loss_frequency"))
        score = _metric(trial, objective)
        step = _metric(trial, "step_time")
        message = (trial.message or "").strip().splitlines()[-1] if getattr(trial, "message", None) else ""
        rows.append({
            "trial": trial_id, "status": status, **values, "objective": score,
            "best_epoch": None if _metric(trial, "best_epoch") is None else int(_metric(trial, "best_epoch")),
            "epochs": None if _metric(trial, "epochs") is None else int(_metric(trial, "epochs")),
            "step_time_ms": None if step is None else 1000.0 * step,
            "fit_seconds": _metric(trial, "fit_seconds"), "message": message,
        })
    rows.sort(key=lambda r: (r["objective"] is None, r["objective"] if r["objective"] is not None else 0.0,
                             r["trial"]))
    return rows


_COLUMNS = (("trial", "trial"), ("lambda_inv_enc", "lambda_inv_enc"), ("lambda_inv_dec", "lambda_inv_dec"),
            ("num_queries", "Q"), ("inverse_loss_frequency", "frequency"), ("objective", None),
            ("best_epoch", "best epoch"), ("epochs", "epochs"), ("step_time_ms", "step time (ms)"),
            ("fit_seconds", "fit (s)"),
            ("status", "status"))


def _cell(key, value, num_points=None):
    if value is None:
        return "-"
    if key in LAMBDAS:
        return "0" if value == 0 else f"{value:.3g}"
    if key == "objective":
        return f"{value:.5g}"
    if key in ("step_time_ms", "fit_seconds"):
        return f"{value:.1f}"
    if key == "num_queries" and num_points is not None and value >= num_points:
        return f"{value} (all)"
    return str(value)


def format_table(rows, objective: str, num_points: int | None = None) -> str:
    """The summary as a Markdown table (best first)."""
    header = [objective if title is None else title for _, title in _COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(k, r.get(k), num_points) for k, _ in _COLUMNS) + " |")
    return "\n".join(lines)


def write_summary(project_dir, rows, objective: str, num_points: int | None = None) -> dict:
    """Write `summary.md` (a Markdown table) and `summary.csv` into `project_dir`; returns their paths."""
    os.makedirs(project_dir, exist_ok=True)
    md = os.path.join(project_dir, SUMMARY_MD)
    with open(md, "w", encoding="utf-8") as fh:
        fh.write(f"# Search summary\n\nObjective: `{objective}` (minimised; the value of the trial's best epoch), best "
                 "first. Q: query points per training step ((all): every grid point, no sampling). frequency: the "
                 "inverse terms are added on every k-th step. epochs: epochs this trial trained. step time: median "
                 "wall time of a training step (the first step, which traces or compiles, left out).\n\n")
        fh.write(format_table(rows, objective, num_points) + "\n")
    path_csv = os.path.join(project_dir, SUMMARY_CSV)
    keys = ["trial", "status", "lambda_inv_enc", "lambda_inv_dec", "num_queries", "inverse_loss_frequency",
            "objective", "best_epoch", "epochs", "step_time_ms", "fit_seconds", "message"]
    with open(path_csv, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return {"summary_md": md, "summary_csv": path_csv}


def write_best_config(path, cfg: Config, row: Mapping, objective: str, project_dir) -> str:
    """Write `cfg` (with `output.run_dir = project_dir/best_run`) as a complete training YAML, and check that
    `load_config` reads it back to the same Config. Returns the path."""
    d = config_to_dict(cfg)
    d["output"]["run_dir"] = os.path.join(os.fspath(project_dir), "best_run")
    cfg = config_from_dict(d)
    header = (f"# Best trial {row['trial']} of the search in {os.fspath(project_dir)}: {objective} = "
              f"{row['objective']:.6g}\n"
              f"# lambda_inv_enc={row['lambda_inv_enc']:g} lambda_inv_dec={row['lambda_inv_dec']:g} "
              f"num_queries={row['num_queries']} inverse_loss_frequency={row['inverse_loss_frequency']}\n"
              "# Train it with: upt-keras train --config <this file>\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(header)
        yaml.safe_dump(config_to_dict(cfg), fh, sort_keys=False, default_flow_style=False)
    if config_to_dict(load_config(path)) != config_to_dict(cfg):  # pragma: no cover (a bug if it happens)
        raise ConfigError(f"{path} does not read back to the best configuration")
    return os.fspath(path)


# --------------------------------------------------------------------------------------------------------------------
# Command line: `upt-keras tune`
# --------------------------------------------------------------------------------------------------------------------


def run_tune(args) -> int:
    """Handler of `upt-keras tune` (parsed by `upt_keras.cli.add_tune_parser`); returns the exit status (0)."""
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    cfg = load_config(args.config, overrides)  # checked before any backend is imported
    space = load_tuning_config(args.tuning_config)
    if args.objective:
        space["objective"] = args.objective
    import keras

    print(f"upt-keras: Keras {keras.__version__}, backend {keras.backend.backend()} (set KERAS_BACKEND to change "
          "it)", flush=True)
    project_dir = os.path.join(args.directory, args.project_name)
    print(f"upt-keras: search in {os.path.abspath(project_dir)} ({args.tuner}, up to {args.max_trials} trials, "
          f"objective {space['objective']})", flush=True)
    result = tune(cfg, space, tuner=args.tuner, max_trials=args.max_trials, directory=args.directory,
                  project_name=args.project_name, overwrite=args.overwrite, seed=args.seed, verbose=args.verbose)
    num_points = result.tuner.hypermodel.num_points
    print(format_table(result.rows, result.objective, num_points))
    print(f"upt-keras: {len(result.new_trials)} trial(s) run now, {len(result.rows)} in the search")
    for key in ("summary_md", "summary_csv", "best_config"):
        if key in result.files:
            print(f"upt-keras: wrote {result.files[key]}")
    if result.best_config is None:
        print("upt-keras: no trial completed; see the status column and the trial folders", flush=True)
    return 0
