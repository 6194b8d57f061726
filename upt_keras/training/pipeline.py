"""A whole run: `make_callbacks`, resuming an interrupted run, `train` (config -> data -> model -> fit -> evaluation).

The run directory and the resume rules are described in the package docstring (`upt_keras.training`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time

import keras

from upt_keras.config import Config, ConfigError, config_from_dict, config_to_dict, load_config, save_config
from upt_keras.training.callbacks import InverseLossCurriculum, TimeBudget
from upt_keras.training.data import prepare_data
from upt_keras.run_files import comparable_config, settings_changes, write_json
from upt_keras.training.setup import build_model, calibrate_step_seconds, check_supported

__all__ = ["MODEL_FILE", "HISTORY_FILE", "CONFIG_FILE", "NORMALIZATION_FILE", "BACKUP_DIR", "make_callbacks",
           "backup_epoch", "train"]

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.yaml"
NORMALIZATION_FILE = "normalization.json"
BACKUP_DIR = "backup"


# --------------------------------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------------------------------


def backup_epoch(run_dir) -> int | None:
    """The epoch an interrupted run in `run_dir` would resume at (from its `BackupAndRestore` state), or None."""
    path = os.path.join(os.fspath(run_dir), BACKUP_DIR, "training_metadata.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return int(json.load(fh)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _monitor(has_validation: bool) -> str:
    return "val_forward_loss" if has_validation else "forward_loss"


def make_callbacks(cfg: Config, run_dir, has_validation: bool = True, resume: bool | None = None,
                   best_so_far: float | None = None, time_budget: bool = True,
                   time_budget_seconds: float | None = None) -> list:
    """The training callbacks for `cfg`, writing into `run_dir`.

    In order: `BackupAndRestore` (`run_dir/backup`), `InverseLossCurriculum` (when `training.use_inverse_losses`),
    `TimeBudget` (when `training.time_budget_seconds` is set and `time_budget`), `ModelCheckpoint`
    (`run_dir/model.keras`, best on `val_forward_loss`), `EarlyStopping` on `val_forward_loss` (when
    `training.early_stopping_patience` is set), `CSVLogger` (`run_dir/history.csv`), `TensorBoard` (`run_dir/logs`, when
    `output.tensorboard`). Without a validation split, `forward_loss` (training) is watched instead.

    Args:
        resume: append to the history (default: when a backup exists in `run_dir`).
        best_so_far: best watched value of an interrupted run, so that its checkpoint is only replaced by a better one.
        time_budget: include the time-budget callback (a search may want its own).
        time_budget_seconds: the budget left for `fit` (default `training.time_budget_seconds`).
    """
    run_dir = os.fspath(run_dir)
    t = cfg.training
    if resume is None:
        resume = backup_epoch(run_dir) is not None
    monitor = _monitor(has_validation)
    callbacks = [keras.callbacks.BackupAndRestore(os.path.join(run_dir, BACKUP_DIR))]
    if t.use_inverse_losses:
        callbacks.append(InverseLossCurriculum(
            lambda_inv_enc=t.lambda_inv_enc, lambda_inv_dec=t.lambda_inv_dec,
            warmup_epochs=t.inverse_loss_warmup_epochs, ramp_epochs=t.ramp_epochs,
            max_weight=t.inverse_loss_max_weight,
        ))
    if time_budget and t.time_budget_seconds is not None:
        seconds = t.time_budget_seconds if time_budget_seconds is None else time_budget_seconds
        callbacks.append(TimeBudget(seconds))
    callbacks.append(keras.callbacks.ModelCheckpoint(
        os.path.join(run_dir, MODEL_FILE), monitor=monitor, mode="min", save_best_only=True,
        initial_value_threshold=best_so_far,
    ))
    if t.early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="min",
                                                       patience=t.early_stopping_patience))
    callbacks.append(keras.callbacks.CSVLogger(os.path.join(run_dir, HISTORY_FILE), append=bool(resume)))
    if cfg.output.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "logs")))
    return callbacks


# --------------------------------------------------------------------------------------------------------------------
# Run directory helpers
# --------------------------------------------------------------------------------------------------------------------


def _read_history_rows(path) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _trim_history(path, keep_epochs: int) -> list[dict]:
    """Drop history rows of epochs >= keep_epochs (written by an interrupted run after its last backup)."""
    rows = _read_history_rows(path)
    kept = [r for r in rows if r.get("epoch", "").strip() and int(float(r["epoch"])) < keep_epochs]
    if len(kept) != len(rows):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
    return kept


def _best(rows: list[dict], column: str) -> float | None:
    values = []
    for r in rows:
        try:
            v = float(r.get(column, "nan"))
        except ValueError:
            continue
        if math.isfinite(v):
            values.append(v)
    return min(values) if values else None


#: Settings an interrupted run may be resumed with changed: where it is written, how visibly, and how long it goes on.
RESUME_MAY_CHANGE = ("output.run_dir", "output.plots", "output.tensorboard", "training.time_budget_seconds")


def _check_resume_config(cfg: Config, run_dir: str) -> None:
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    try:
        previous = load_config(path)
    except ConfigError:
        return
    changes = settings_changes(comparable_config(previous, RESUME_MAY_CHANGE),
                               comparable_config(cfg, RESUME_MAY_CHANGE))
    if changes is not None:
        raise ConfigError(
            f"{run_dir} holds an interrupted run with a different configuration ({changes}); rerun with the same "
            f"settings to resume it, or choose another run directory (or delete {os.path.join(run_dir, BACKUP_DIR)})"
        )


def _resolved_config(cfg: Config, run_dir: str) -> Config:
    d = config_to_dict(cfg)
    d["output"]["run_dir"] = run_dir
    return config_from_dict(d)


# --------------------------------------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------------------------------------


def train(cfg: Config, run_dir=None, verbose="auto", progress: bool = True, callbacks=None):
    """Train a UPT as configured, evaluate it on the test split and write the run directory.

    Steps: resolve `run_dir` (default `cfg.output.run_dir`), save `config.yaml`; `prepare_data`; save
    `normalization.json`; `build_model`; fit with `make_callbacks` (resuming an interrupted run found in `run_dir`);
    reload the best checkpoint; evaluate in physical units (`upt_keras.evaluation.evaluate`) and write `metrics.json`
    and the figures.

    Args:
        cfg: a Config.
        run_dir: output folder (created).
        verbose: passed to `fit` (progress bars: 1; one line per epoch: 2; silent: 0); "auto" is 1 on a terminal
            and 2 when standard output is a file or a pipe (progress bars would fill a log with redraws).
        progress: progress bar if the default data set has to be generated.
        callbacks: further Keras callbacks for `fit`, run after those of `make_callbacks`.

    Returns:
        `(model, history, metrics)`: the model with the best checkpoint's weights, the Keras History of this
        invocation, and the metrics dict that was written to `metrics.json`.
    """
    from upt_keras import evaluation

    run_dir = os.fspath(run_dir if run_dir is not None else cfg.output.run_dir)
    os.makedirs(run_dir, exist_ok=True)
    cfg = _resolved_config(cfg, run_dir)
    t = cfg.training
    check_supported(cfg)

    resume_epoch = backup_epoch(run_dir)
    if resume_epoch is not None:
        _check_resume_config(cfg, run_dir)
    save_config(cfg, os.path.join(run_dir, CONFIG_FILE))

    data = prepare_data(cfg, progress=progress)
    write_json(os.path.join(run_dir, NORMALIZATION_FILE), {
        "mean": data.field_mean, "std": data.field_std, "dt": data.dt, "grid_shape": list(data.grid_shape),
        "num_channels": data.num_channels, "train_samples": len(data.split["train"]), "data_path": data.path,
    })

    history_path = os.path.join(run_dir, HISTORY_FILE)
    best_so_far = None
    if resume_epoch is not None:
        rows = _trim_history(history_path, resume_epoch)
        best_so_far = _best(rows, _monitor(data.val is not None))
        if not os.path.exists(os.path.join(run_dir, MODEL_FILE)):
            best_so_far = None

    from upt_keras.distribute import check_batch_size, distribution_scope

    with distribution_scope(t.distribution):
        if t.distribution:
            try:
                check_batch_size(t.batch_size, data.train.num_pairs)
            except ValueError as err:  # a config problem: the CLI reports it on one line and exits 2
                raise ConfigError(f"training.batch_size={t.batch_size} with training.distribution="
                                  f"{t.distribution}: {err}") from None
        schedule_steps, budget_left = None, t.time_budget_seconds
        if (t.time_budget_seconds is not None and t.lr_schedule == "cosine" and t.fit_schedule_to_budget
                and resume_epoch is None):
            # Fit the cosine schedule into the budget: a run stopped by the clock would otherwise end at a high
            # learning rate, far from where a finished schedule ends. The calibration counts against the budget.
            calib_start = time.monotonic()
            step_seconds = calibrate_step_seconds(cfg, data)
            budget_left = max(t.time_budget_seconds - (time.monotonic() - calib_start), 1.0)
            schedule_steps = max(1, min(t.epochs * len(data.train), int(0.97 * budget_left / step_seconds)))
        model = build_model(cfg, data, schedule_steps=schedule_steps)
        extra_callbacks = list(callbacks or [])
        callbacks = make_callbacks(cfg, run_dir, has_validation=data.val is not None,
                                   resume=resume_epoch is not None, best_so_far=best_so_far,
                                   time_budget_seconds=budget_left) + extra_callbacks
        if verbose == "auto":
            import sys

            verbose = 1 if sys.stdout.isatty() else 2
        start = time.monotonic()
        history = model.fit(data.train, validation_data=data.val, epochs=t.epochs, callbacks=callbacks,
                            verbose=verbose)
        train_seconds = time.monotonic() - start

    checkpoint = os.path.join(run_dir, MODEL_FILE)
    if os.path.exists(checkpoint):
        model.load_weights(checkpoint)

    budget = next((c for c in callbacks if isinstance(c, TimeBudget)), None)
    rows = _read_history_rows(history_path)
    monitor = _monitor(data.val is not None)
    best_epoch = None
    best_value = _best(rows, monitor)
    if best_value is not None:
        best_epoch = next(int(float(r["epoch"])) for r in rows if _safe_float(r.get(monitor)) == best_value)
    training_info = {
        "backend": keras.backend.backend(),
        "train_seconds": round(train_seconds, 2),
        "epochs_requested": t.epochs,
        "epochs_completed": len(rows),
        "resumed_from_epoch": resume_epoch,
        "stopped_by_time_budget": budget is not None and budget.stopped_epoch is not None,
        "time_budget_seconds": t.time_budget_seconds,
        "best_epoch": best_epoch,
        f"best_{monitor}": best_value,
        "num_params": int(model.count_params()),
        "steps_per_epoch": len(data.train),
        "train_pairs": int(data.train.num_pairs),
    }
    metrics = evaluation.evaluate(model, data, run_dir=run_dir, plots=cfg.output.plots, history=history_path,
                                  extra={"training": training_info})
    return model, history, metrics


def _safe_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
