"""The search space of a hyper-parameter search: the `tuning:` section of a tuning YAML file, checked and filled in
with defaults, and its resolution against a training config and a grid (see `upt_keras.tuning` for the format).

This module imports no deep-learning framework and no KerasTuner (the command line reads `TUNERS` and `OBJECTIVES`
from it to build its parser).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Annotated, Any, Mapping, Optional, Union

from pydantic import (AfterValidator, BeforeValidator, Discriminator, Field, Strict, Tag, model_serializer,
                      model_validator)

from upt_keras.config import Config, config_from_dict, config_to_dict, read_yaml
from upt_keras.schema import Bool, ConfigError, Float, Section, fmt, leaf_error, one_of, validated

__all__ = [
    "DEFAULT_TUNING",
    "OBJECTIVES",
    "TUNERS",
    "LAMBDAS",
    "SWITCHES",
    "SearchSpace",
    "parse_tuning",
    "load_tuning_config",
    "resolve_space",
    "effective_values",
    "trial_config",
]

#: Objectives a search may minimise: unweighted validation metrics only.
OBJECTIVES = {
    "val_forward_loss": "one-step MSE of the next field on every grid point of the validation split (normalised units)",
    "val_nrmse": "one-step nRMSE ||pred - true|| / ||true|| on the validation split (physical units)",
}
TUNERS = ("random", "bayesian", "hyperband")

LAMBDAS = ("lambda_inv_enc", "lambda_inv_dec")
#: Name of the boolean hyper-parameter that switches a weight on (only present when `allow_zero`).
SWITCHES = {"lambda_inv_enc": "inv_enc_on", "lambda_inv_dec": "inv_dec_on"}


# --------------------------------------------------------------------------------------------------------------------
# The tuning config (framework-free), on the training config's schema machinery and messages
# --------------------------------------------------------------------------------------------------------------------


def _objective(value: Any) -> str:
    if isinstance(value, str) and value in OBJECTIVES:
        return value
    why = ""
    if value in ("loss", "val_loss", "total_loss", "val_total_loss"):
        why = " (the training total includes the weighted inverse terms, so trials with larger weights would " \
              "look worse for that reason alone)"
    raise leaf_error(f"must be one of {' | '.join(OBJECTIVES)}, got {fmt(value)}{why}")


def _choices(item: Any) -> Any:
    """A non-empty list of `item`s (a single one: a list of one), sorted, without repeats."""
    return Annotated[list[item], Field(min_length=1),
                     BeforeValidator(lambda v: list(v) if isinstance(v, (list, tuple)) else [v]),
                     AfterValidator(lambda v: sorted(set(v)))]


Counts = _choices(Annotated[int, Strict(), Field(gt=0)])
Fractions = _choices(Annotated[Float, Field(gt=0.0, le=1.0)])


class WeightRange(Section):
    """A searched weight: a range (`max` null: `training.inverse_loss_max_weight`), with 0 as a choice or not."""

    min: Float = Field(1.0e-4, ge=0.0)
    max: Optional[Float] = None
    sampling: one_of("log", "linear") = "log"
    allow_zero: Bool = True

    @model_validator(mode="after")
    def _ordered(self) -> WeightRange:
        if self.sampling == "log" and self.min == 0:
            raise leaf_error(f"must be > 0 with log sampling (use allow_zero for 0), got {self.min}", key="min")
        if self.max is not None and self.max < self.min:
            raise leaf_error(f"must be >= its min, got {self.max:g} < {self.min:g}", key="max")
        return self


# A weight is null (the training config's), a number (fixed) or a range; the mapping decides which is checked.
Weight = Annotated[Union[Annotated[Float, Field(ge=0.0), Tag("fixed")], Annotated[WeightRange, Tag("range")]],
                   Discriminator(lambda value: "range" if isinstance(value, (Mapping, WeightRange)) else "fixed")]


class QueryChoices(Section):
    """The Q choices: fractions of the grid points, or numbers of points (a bare list: `values`)."""

    fractions: Optional[Fractions] = None
    values: Optional[Counts] = None

    @model_validator(mode="before")
    @classmethod
    def _list_is_values(cls, data: Any) -> Any:
        return data if isinstance(data, Mapping) else {"values": data}

    @model_validator(mode="after")
    def _one_kind(self) -> QueryChoices:
        if (self.fractions is None) == (self.values is None):
            raise leaf_error(f"takes exactly one of 'fractions' or 'values', got {sorted(self.model_fields_set)}")
        return self

    @model_serializer(mode="wrap")
    def _given(self, handler) -> dict:
        return {k: v for k, v in handler(self).items() if v is not None}


class TuningSpace(Section):
    """The `tuning:` section; a null entry takes the training config's value."""

    objective: Annotated[str, BeforeValidator(_objective)] = "val_forward_loss"
    lambda_inv_enc: Optional[Weight] = Field(default_factory=WeightRange)
    lambda_inv_dec: Optional[Weight] = Field(default_factory=WeightRange)
    num_queries: Optional[QueryChoices] = Field(default_factory=lambda: QueryChoices(fractions=[0.25, 0.5, 1.0]))
    inverse_loss_frequency: Optional[Counts] = None


class _TuningFile(Section):
    tuning: TuningSpace = Field(default_factory=TuningSpace)


def parse_tuning(data: Mapping | None) -> dict:
    """Check a tuning space (the content of the `tuning:` section) and fill in `DEFAULT_TUNING` for missing keys.

    Returns a normalised dict: lambdas as None (training config's value), a number (fixed) or a range dict;
    `num_queries` as None, `{"fractions": [...]}` or `{"values": [...]}`; `inverse_loss_frequency` as None or a
    sorted list of ints.

    Raises:
        ConfigError: unknown key (with a suggestion), wrong type, empty list, or an objective that is not one of
            `OBJECTIVES` (a weighted total such as `loss` / `val_loss` is refused).
    """
    return validated(_TuningFile, {"tuning": data}).tuning.model_dump()


#: The search space used when no tuning config is given (see the module doc of `upt_keras.tuning` for the format).
DEFAULT_TUNING: dict = parse_tuning(None)


def load_tuning_config(path: str | os.PathLike | None) -> dict:
    """Read a tuning YAML file holding a `tuning:` section; returns `parse_tuning` of it (None: the defaults)."""
    if path is None:
        return parse_tuning(None)
    data = read_yaml(path, what="tuning config")
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
