"""The search: `UPTHyperModel` (what a trial builds and fits), `make_tuner`, `tune`, the summaries and the
`upt-keras tune` command (`run_tune`). The format of a search and of its directory: see `upt_keras.tuning`."""


from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import keras
import numpy as np
import yaml

from upt_keras import training
from upt_keras._optional import require
from upt_keras.training.callbacks import InverseLossCurriculum, StepTimer, TimeBudget, ValidationNRMSE
from upt_keras.config import Config, ConfigError, config_from_dict, config_to_dict, load_config
from upt_keras.run_files import comparable_config, settings_changes, write_json
from upt_keras.tuning.search_space import (
    LAMBDAS,
    TUNERS,
    SearchSpace,
    effective_values,
    load_tuning_config,
    parse_tuning,
    resolve_space,
    trial_config,
)

__all__ = [
    "TuneResult",
    "UPTHyperModel",
    "set_inverse_weights",
    "make_tuner",
    "tune",
    "summary_rows",
    "format_table",
    "write_summary",
    "write_best_config",
    "run_tune",
]

keras_tuner = require("keras_tuner")

SEARCH_FILE = "search.json"
SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
BEST_CONFIG = "best_config.yaml"


# --------------------------------------------------------------------------------------------------------------------
# The hyper-model
# --------------------------------------------------------------------------------------------------------------------


class UPTHyperModel(keras_tuner.HyperModel):
    """A KerasTuner hyper-model of `UPT` built from a training config.

    `build(hp)` builds and compiles the model exactly as `upt-keras train` does (`training.build_model`), with
    the trial's Q and inverse-loss frequency (constructor arguments). `fit(hp, model, ...)` sets the trial's
    inverse-loss weights on the model's objective (its `lambda_inv_enc`/`lambda_inv_dec` and the weight variables
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
            callbacks.append(TimeBudget(t.time_budget_seconds))
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


def set_inverse_weights(model, lambda_inv_enc, lambda_inv_dec):
    """Give `model`'s objective new base inverse-loss weights (`UPTObjective.set_inverse_weights`)."""
    model.objective.set_inverse_weights(lambda_inv_enc, lambda_inv_dec)


def _trial_metrics(history, objective, callbacks, initial_epoch=0) -> dict:
    logs = history.history
    values = [float(v) for v in logs.get(objective, [])]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        raise keras_tuner.errors.FailedTrialError(
            f"no finite value of {objective} was logged (got {values}); the trial diverged or has no validation data"
        )
    best = values.index(min(finite))
    timer = next(c for c in callbacks if isinstance(c, StepTimer))
    out = {name: float(vals[best]) for name, vals in logs.items()
           if len(vals) > best and isinstance(vals[best], (int, float)) and math.isfinite(float(vals[best]))}
    out.update({objective: min(finite),
                "best_epoch": float(initial_epoch + best), "epochs": float(len(values)),
                "step_time": timer.step_time(), "fit_seconds": float(timer.fit_seconds)})
    return out


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
        require("sklearn")
        return keras_tuner.BayesianOptimization(max_trials=max_trials, **common)
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


#: The settings a search may be resumed with changed: where and how visibly the best model is trained (`output`).
SEARCH_MAY_CHANGE = ("output",)


def _check_search(project_dir: str, record: dict, overwrite: bool) -> None:
    """Refuse to resume a search in `project_dir` that was started with other settings."""
    path = os.path.join(project_dir, SEARCH_FILE)
    if os.path.exists(path) and not overwrite:
        try:
            with open(path, encoding="utf-8") as fh:
                previous = json.load(fh)
        except (OSError, ValueError):
            previous = None
        changes = None if previous is None else settings_changes(previous, json.loads(json.dumps(record)))
        if changes is not None:
            raise ConfigError(f"{project_dir} holds a search with different settings ({changes}); rerun with the "
                              "same config and tuning space to resume it, or pass another project name, or "
                              "overwrite it")


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
    if int(max_trials) < 1:
        raise ConfigError(f"max_trials must be >= 1, got {max_trials}")
    parsed = parse_tuning(space) if not isinstance(space, SearchSpace) else space
    if data is None:
        data = training.prepare_data(cfg, splits=("train", "val"), progress=progress)
    cls = hypermodel_cls or UPTHyperModel
    hypermodel = cls(cfg, data, parsed)
    project_dir = os.path.join(os.fspath(directory), project_name)
    record = {"tuner": tuner, "base_config": comparable_config(cfg, SEARCH_MAY_CHANGE),
              "space": hypermodel.space.to_dict()}
    _check_search(project_dir, record, overwrite)
    tuner_obj = make_tuner(hypermodel, tuner, max_trials, directory, project_name, overwrite=overwrite,
                           seed=cfg.seed if seed is None else seed)
    write_json(os.path.join(project_dir, SEARCH_FILE), record)  # after the tuner: overwrite empties the folder
    before = set(_completed_ids(tuner_obj))
    tuner_obj.search(verbose=verbose)
    new = sorted(set(_completed_ids(tuner_obj)) - before)
    rows = summary_rows(tuner_obj, hypermodel.space.objective)
    files = write_summary(project_dir, rows, hypermodel.space.objective, hypermodel.num_points)
    best_id, best_cfg = None, None
    best = _best_trial(tuner_obj)
    if best is not None:
        best_id = best.trial_id
        best_cfg = trial_config(cfg, effective_values(best.hyperparameters.values), hypermodel.num_points)
        files["best_config"] = write_best_config(os.path.join(project_dir, BEST_CONFIG), best_cfg, rows[0],
                                                 hypermodel.space.objective, project_dir)
        best_cfg = load_config(files["best_config"])
    return TuneResult(tuner=tuner_obj, rows=rows, objective=hypermodel.space.objective, best_trial_id=best_id,
                      best_config=best_cfg, project_dir=project_dir, files=files, new_trials=new)


def _best_trial(tuner):
    """KerasTuner's best completed trial (lowest score), or None when no trial completed."""
    best = tuner.oracle.get_best_trials(num_trials=1)
    return best[0] if best and best[0].status == "COMPLETED" else None


def _completed_ids(tuner) -> list:
    return [tid for tid, trial in tuner.oracle.trials.items() if trial.status == "COMPLETED"]


# --------------------------------------------------------------------------------------------------------------------
# Summary and best config
# --------------------------------------------------------------------------------------------------------------------


def _metric(trial, name):
    """The value a trial recorded for `name` (`fit` reports each metric once per trial), or None."""
    value = trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None
    return None if value is None else float(value)


def summary_rows(tuner, objective: str) -> list[dict]:
    """One dict per trial, in KerasTuner's ranking (`oracle.get_best_trials`): completed trials by score, best
    first, then the others.

    Keys: trial (`trial_id`), status, the effective values of its hyper-parameters (lambda_inv_enc, lambda_inv_dec,
    num_queries, inverse_loss_frequency), objective (`trial.score`: the trial's best value of the objective),
    best_epoch, epochs, step_time_ms, fit_seconds (from `trial.metrics`), message (last line of a failed trial's
    error).
    """
    rows = []
    for trial in tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials)):
        try:
            values = effective_values(trial.hyperparameters.values)
        except KeyError:  # a trial that failed before its hyper-parameters were drawn
            values = dict.fromkeys(("lambda_inv_enc", "lambda_inv_dec", "num_queries", "inverse_loss_frequency"))
        recorded = {name: _metric(trial, name) for name in ("best_epoch", "epochs", "step_time", "fit_seconds")}
        rows.append({
            "trial": trial.trial_id, "status": str(trial.status), **values,
            "objective": None if trial.score is None else float(trial.score),
            "best_epoch": None if recorded["best_epoch"] is None else int(recorded["best_epoch"]),
            "epochs": None if recorded["epochs"] is None else int(recorded["epochs"]),
            "step_time_ms": None if recorded["step_time"] is None else 1000.0 * recorded["step_time"],
            "fit_seconds": recorded["fit_seconds"],
            "message": (trial.message or "").strip().splitlines()[-1] if trial.message else "",
        })
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


def _values_text(row: Mapping) -> str:
    """A trial's effective hyper-parameter values as `name=value` pairs."""
    return (f"lambda_inv_enc={row['lambda_inv_enc']:g} lambda_inv_dec={row['lambda_inv_dec']:g} "
            f"num_queries={row['num_queries']} inverse_loss_frequency={row['inverse_loss_frequency']}")


def write_best_config(path, cfg: Config, row: Mapping, objective: str, project_dir) -> str:
    """Write `cfg` (with `output.run_dir = project_dir/best_run`) as a complete training YAML, and check that
    `load_config` reads it back to the same Config. Returns the path."""
    d = config_to_dict(cfg)
    d["output"]["run_dir"] = os.path.join(os.fspath(project_dir), "best_run")
    cfg = config_from_dict(d)
    header = (f"# Best trial {row['trial']} of the search in {os.fspath(project_dir)}: {objective} = "
              f"{row['objective']:.6g}\n"
              f"# {_values_text(row)}\n"
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
    cfg = load_config(args.config, overrides)  # checked before any data is read
    space = load_tuning_config(args.tuning_config)
    if args.objective:
        space["objective"] = args.objective
    project_dir = os.path.join(args.directory, args.project_name)
    print(f"upt-keras: search in {os.path.abspath(project_dir)} ({args.tuner}, up to {args.max_trials} trials, "
          f"objective {space['objective']})", flush=True)
    result = tune(cfg, space, tuner=args.tuner, max_trials=args.max_trials, directory=args.directory,
                  project_name=args.project_name, overwrite=args.overwrite, seed=args.seed, verbose=args.verbose)
    num_points = result.tuner.hypermodel.num_points
    print(format_table(result.rows, result.objective, num_points))
    if result.best_trial_id is not None:
        best = result.rows[0]
        print(f"upt-keras: best trial {best['trial']}: {result.objective} = {best['objective']:.6g} "
              f"({_values_text(best)})")
    print(f"upt-keras: {len(result.new_trials)} trial(s) run now, {len(result.rows)} in the search")
    for key in ("summary_md", "summary_csv", "best_config"):
        if key in result.files:
            print(f"upt-keras: wrote {result.files[key]}")
    if result.best_config is None:
        print("upt-keras: no trial completed; see the status column and the trial folders", flush=True)
    return 0
