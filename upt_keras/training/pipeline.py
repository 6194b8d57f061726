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
from upt_keras.training.callbacks import BudgetSchedule, InverseLossCurriculum, TimeBudget
from upt_keras.training.checkpoint import (RemainingBatches, RunCheckpoint, TrainingInterrupted, read_backup,
                                           restore_backup)
from upt_keras.training.monitoring import (STEP_HISTORY_FILE, EarlyStoppingOnValidation, RunState, StepCounter,
                                           StepLog, TrainingProgress, Validation)
from upt_keras.training.data import prepare_data
from upt_keras.run_files import comparable_config, settings_changes, write_json
from upt_keras.training.setup import build_model, check_supported, seconds_per_pair

__all__ = ["MODEL_FILE", "HISTORY_FILE", "STEP_HISTORY_FILE", "CONFIG_FILE", "NORMALIZATION_FILE", "BACKUP_DIR",
           "make_callbacks", "backup_epoch", "train", "TrainingInterrupted"]

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.yaml"
NORMALIZATION_FILE = "normalization.json"
BACKUP_DIR = "backup"


# --------------------------------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------------------------------


def backup_epoch(run_dir) -> int | None:
    """The epoch an interrupted run in `run_dir` would resume in (from its `backup/` state), or None."""
    state = read_backup(os.path.join(os.fspath(run_dir), BACKUP_DIR))
    return None if state is None else state["epoch"]


def _monitor(has_validation: bool) -> str:
    return "val_forward_loss" if has_validation else "forward_loss"


def make_callbacks(cfg: Config, run_dir, has_validation: bool = True, resume: bool | None = None,
                   best_so_far: float | None = None, time_budget: bool = True,
                   time_budget_seconds: float | None = None, data=None, state: RunState | None = None,
                   verbose: int = 0, progress: bool = True, deadline: float | None = None, reserve=None) -> list:
    """The training callbacks for `cfg`, writing into `run_dir`.

    In order: `StepCounter` (the shared `RunState`), `InverseLossCurriculum` (when `training.use_inverse_losses`),
    `TimeBudget` (when `training.time_budget_seconds` is set and `time_budget`), `TrainingProgress` (when
    `verbose`), `Validation` (with `data.val`: on `training.validation_every_epochs` / `validation_every_steps`,
    keeping the best model on `val_forward_loss` in `run_dir/model.keras`) or, without a validation split, a
    `ModelCheckpoint` on `forward_loss`; `EarlyStoppingOnValidation` on the same value (when
    `training.early_stopping_patience` is set; patience counts validated epochs), `StepLog`
    (`run_dir/history_steps.csv`), `RunCheckpoint` (`run_dir/backup`, every `training.checkpoint_every_steps` steps,
    every epoch and on SIGINT / SIGTERM), `CSVLogger` (`run_dir/history.csv`), `TensorBoard` (`run_dir/logs`, when
    `output.tensorboard`).

    Args:
        has_validation: whether there is a validation split (ignored when `data` is given: `data.val`).
        resume: append to the histories (default: when a backup exists in `run_dir`).
        best_so_far: best watched value of an interrupted run, so that its checkpoint is only replaced by a better one.
        time_budget: include the time-budget callback (a search may want its own).
        time_budget_seconds: the budget left for `fit` (default `training.time_budget_seconds`; ignored with
            `deadline`).
        data: the `PreparedData` (its validation split is validated, its training set's order is checkpointed).
        state: the `RunState` the callbacks share (default: a new one).
        verbose: 1 a progress bar per epoch, 2 one line per epoch, 0 nothing.
        progress: show the progress of each validation.
        deadline, reserve: see `TimeBudget` (a budget in wall time for the whole run).
    """
    run_dir = os.fspath(run_dir)
    t = cfg.training
    if resume is None:
        resume = backup_epoch(run_dir) is not None
    if data is not None:
        has_validation = data.val is not None
    state = state if state is not None else RunState()
    monitor = _monitor(has_validation)
    train_set = getattr(data, "train", None)
    callbacks = [StepCounter(state, len(train_set) if train_set is not None else 0)]
    if t.use_inverse_losses:
        callbacks.append(InverseLossCurriculum(
            lambda_inv_enc=t.lambda_inv_enc, lambda_inv_dec=t.lambda_inv_dec,
            warmup_epochs=t.inverse_loss_warmup_epochs, ramp_epochs=t.ramp_epochs,
            max_weight=t.inverse_loss_max_weight,
        ))
    if time_budget and t.time_budget_seconds is not None:
        seconds = None if deadline is not None else (
            t.time_budget_seconds if time_budget_seconds is None else time_budget_seconds)
        callbacks.append(TimeBudget(seconds, deadline=deadline, reserve=reserve, state=state))
    if verbose:
        callbacks.append(TrainingProgress(state, verbose))
    validation = None
    model_path = os.path.join(run_dir, MODEL_FILE)
    if has_validation and data is not None:
        validation = Validation(data.val, data.field_std, every_epochs=t.validation_every_epochs,
                                every_steps=t.validation_every_steps, terms=t.validation_terms,
                                best_path=model_path, best=best_so_far, state=state, progress=progress and verbose)
        callbacks.append(validation)
    else:
        callbacks.append(keras.callbacks.ModelCheckpoint(model_path, monitor=monitor, mode="min", save_best_only=True,
                                                         initial_value_threshold=best_so_far))
    if t.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingOnValidation(monitor=monitor, mode="min",
                                                   patience=t.early_stopping_patience))
    callbacks.append(StepLog(os.path.join(run_dir, STEP_HISTORY_FILE), cfg.output.log_every_steps, validation,
                             state, append=bool(resume)))
    best = (lambda: {"best": validation.best}) if validation is not None else None
    callbacks.append(RunCheckpoint(os.path.join(run_dir, BACKUP_DIR), state, dataset=train_set,
                                   every_steps=t.checkpoint_every_steps, extra=best))
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
RESUME_MAY_CHANGE = ("output.run_dir", "output.plots", "output.tensorboard", "training.time_budget_seconds",
                     "training.time_budget_covers",
                     "training.checkpoint_every_steps", "training.validation_every_epochs",
                     "training.validation_every_steps", "output.log_every_steps")


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


def _say(line: str, verbose) -> None:
    if verbose:
        print(line, flush=True)


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MB"


def _data_line(cfg: Config, data) -> str:
    """One line: the splits used (and of how many), pairs, and the memory they hold."""
    sizes, before = data.info.get("split_sizes", {}), data.info.get("split_sizes_before_caps", {})
    caps = {"train": "data.max_train_samples", "val": "data.max_val_samples", "test": "data.max_test_samples"}
    parts = []
    for name, label, dataset in (("train", "train", data.train), ("val", "validation", data.val),
                                 ("test", "test", data.test)):
        n, full = sizes.get(name, 0), before.get(name, 0)
        if not n:
            continue
        of = f" of {full} ({caps[name]})" if full > n else ""
        pairs = f", {dataset.num_pairs} pairs" if dataset is not None else ""
        parts.append(f"{label} {n}{of} trajectories{pairs}")
    memory = data.info.get("memory_bytes")
    where = f"; {_mb(memory)} in memory (data.in_memory)" if memory is not None else ""
    if data.info.get("in_memory") is False:
        where = (f"; read from the file at every batch (data.in_memory: false; in memory they would take "
                 f"{_mb(data.info.get('file_bytes', 0))})")
    return f"data: {'; '.join(parts)}{where}"


def _evaluation_estimate(data, seconds_per_pair: float) -> float:
    """Seconds the test evaluation will take: the one-step pairs, and per rollout step one full-grid pass in physical
    mode (decode and encode) and about a fifth of one in latent mode (a latent step and a decode; measured on the
    default model: 1.1 s against 7.6 s for 60 rollouts of 20 steps)."""
    work = data.test.num_pairs if data.test is not None else 0
    if data.rollout is not None:
        from upt_keras.evaluation.protocol import rollout_starts

        rollouts = rollout_starts(data.rollout, "initial").shape[0]  # counted, not read: reserve() calls it per step
        work += 1.2 * rollouts * data.rollout.rollout_steps
    return seconds_per_pair * work + 2.0  # + the figures


def _budget_lines(t, covers_run: bool, used: float, resumed: bool, needed: float, validation, val_rate: float,
                  eval_estimate: float) -> list[str]:
    """What a budgeted run prints before training: a warning when what must follow training (`needed` seconds)
    does not fit into what is left of the budget after the `used` seconds, then what the budget counts and keeps
    back (`covers_run`: the whole run, else training and its validations)."""
    budget = t.time_budget_seconds
    left = budget - used
    per_validation = (f"~{validation.estimate_seconds(val_rate):.1f} s per validation ({validation.num_pairs} pairs)"
                      if validation is not None else None)
    lines = []
    if needed >= left:
        what, lower = (("the validation and the test evaluation need", "data.max_val_samples, data.max_test_samples "
                        "or data.rollout_steps") if covers_run else ("a validation needs", "data.max_val_samples"))
        lines.append(f"warning: {what} ~{needed:.0f} s, more than the {left:.0f} s left of "
                     f"training.time_budget_seconds={budget:g}: the run will train one step and overrun; lower "
                     f"{lower} or raise the budget")
    if covers_run:
        lines.append(f"time budget: {budget:g} s of wall time for the whole run, {used:.1f} s used "
                     f"(data{', earlier runs' if resumed else ''}); training stops in time for "
                     f"{per_validation + '; ' if per_validation else ''}~{eval_estimate:.1f} s for the test evaluation")
    else:
        lines.append(f"time budget: {budget:g} s of training (training.time_budget_covers: training), {used:.1f} s "
                     f"used{' by earlier runs' if resumed else ''}, validations included "
                     f"({per_validation or 'no validation'}); then ~{eval_estimate:.1f} s for the test evaluation")
    return lines


def train(cfg: Config, run_dir=None, verbose="auto", progress: bool = True, callbacks=None):
    """Train a UPT as configured, evaluate it on the test split and write the run directory.

    Steps: resolve `run_dir` (default `cfg.output.run_dir`), save `config.yaml`; `prepare_data`; save
    `normalization.json`; `build_model`; fit with `make_callbacks` (resuming an interrupted run found in `run_dir`
    at the step it reached); reload the best checkpoint; evaluate in physical units (`upt_keras.evaluation.evaluate`)
    and write `metrics.json` and the figures.

    `training.time_budget_seconds` is the wall time of this whole call (data, training, validation and
    the test evaluation; a resumed run's earlier time counts too): training stops early enough for the validation
    of the last epoch and the estimated test evaluation to fit. What is reserved is printed before training. With
    `training.time_budget_covers: training` it is the time of training alone (the steps and the validations between
    them; a resumed run's earlier training counts too), and data and the test evaluation come on top.
    With `training.fit_schedule_to_budget` the cosine follows the clock (`BudgetSchedule`): it reaches 0 when the
    budget stops training.

    SIGINT (Ctrl-C) or SIGTERM during training saves a resumable checkpoint after the step in progress and raises
    `TrainingInterrupted` (a KeyboardInterrupt) with a line saying where the run stopped and how to resume it.

    Args:
        cfg: a Config.
        run_dir: output folder (created).
        verbose: 1: progress bars; 2: one line per epoch and stage; 0: silent; "auto" is 1 on a terminal and 2 when
            standard output is a file or a pipe (progress bars would fill a log with redraws).
        progress: show the progress of generating the default data set, reading the data, validation and
            evaluation (when `verbose` is not 0).
        callbacks: further Keras callbacks for `fit`, run after those of `make_callbacks`.

    Returns:
        `(model, history, metrics)`: the model with the best checkpoint's weights, the Keras History of this
        invocation's last `fit`, and the metrics dict that was written to `metrics.json`.

    Raises:
        TrainingInterrupted: on SIGINT / SIGTERM during training, after the checkpoint is saved.
    """
    from upt_keras import evaluation

    if verbose == "auto":
        import sys

        verbose = 1 if sys.stdout.isatty() else 2
    state = RunState(total_epochs=cfg.training.epochs)
    run_dir = os.fspath(run_dir if run_dir is not None else cfg.output.run_dir)
    os.makedirs(run_dir, exist_ok=True)
    cfg = _resolved_config(cfg, run_dir)
    t = cfg.training
    check_supported(cfg)
    backup_dir = os.path.join(run_dir, BACKUP_DIR)

    saved = read_backup(backup_dir)
    resume_epoch = None if saved is None else saved["epoch"]
    if saved is not None:
        _check_resume_config(cfg, run_dir)
        state.seconds_used_before = float(saved.get("seconds_used") or 0.0)
    elif os.path.exists(os.path.join(run_dir, HISTORY_FILE)):
        _say(f"no resumable checkpoint in {backup_dir}: training starts from scratch (the history in {run_dir} "
             "is replaced)", verbose)
    save_config(cfg, os.path.join(run_dir, CONFIG_FILE))

    show = bool(progress and verbose)
    data = prepare_data(cfg, progress=show)
    _say(_data_line(cfg, data), verbose)
    write_json(os.path.join(run_dir, NORMALIZATION_FILE), {
        "mean": data.field_mean, "std": data.field_std, "dt": data.dt, "grid_shape": list(data.grid_shape),
        "num_channels": data.num_channels, "train_samples": len(data.split["train"]), "data_path": data.path,
        "channel_names": data.info.get("channel_names"),
    })

    history_path = os.path.join(run_dir, HISTORY_FILE)
    best_so_far = None
    if saved is not None:
        rows = _trim_history(history_path, resume_epoch)  # an interrupted epoch's row is written when it ends
        best_so_far = saved.get("best", _best(rows, _monitor(data.val is not None)))
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
        covers_run = t.time_budget_covers == "run"
        trained_before = float(saved.get("train_seconds") or 0.0) if saved is not None else 0.0
        # a budgeted cosine follows the clock (`BudgetSchedule`): it reaches 0 when the budget stops training
        clock_schedule = (t.time_budget_seconds is not None and t.lr_schedule == "cosine"
                          and t.fit_schedule_to_budget)
        model = build_model(cfg, data, clock_schedule=clock_schedule)
        if saved is not None:
            restore_backup(model, data.train, backup_dir)
            _say(f"resuming the interrupted run in {run_dir}: epoch {saved['epoch'] + 1}, step {saved['batch']} of "
                 f"{len(data.train)} (global step {saved.get('step', '?')}), {state.seconds_used_before:.0f} s "
                 "used so far", verbose)

        # seconds per predicted pair, measured on a test batch and on a validation batch
        rates = {name: seconds_per_pair(model, getattr(data, name)) for name in ("test", "val")
                 if getattr(data, name) is not None}
        test_rate = rates.get("test", rates.get("val", 0.0))
        val_rate = rates.get("val", test_rate)
        eval_estimate = _evaluation_estimate(data, test_rate)
        deadline = reserve = None
        holder = {}
        if t.time_budget_seconds is not None:
            # a run's budget ends at a fixed time; a training budget is set when training starts (below)
            deadline = state.start - state.seconds_used_before + t.time_budget_seconds if covers_run else math.inf

            def reserve():
                # one validation and (for a run's budget) the test evaluation; once a validation has run, its
                # measured time (and, when it ran slower than measured before training, the test evaluation's rate
                # scaled alike)
                val = holder.get("validation")
                if val is None:
                    return eval_estimate if covers_run else 0.0
                if not covers_run:
                    return val.estimate_seconds(val_rate)
                rate = test_rate
                if val.last_seconds is not None and val.num_pairs:
                    rate = max(rate, val.last_seconds / val.num_pairs * test_rate / max(val_rate, 1e-12))
                return _evaluation_estimate(data, rate) + val.estimate_seconds(val_rate)

        extra_callbacks = list(callbacks or [])
        callbacks = make_callbacks(cfg, run_dir, resume=saved is not None, best_so_far=best_so_far, data=data,
                                   state=state, verbose=verbose, progress=show, deadline=deadline,
                                   reserve=reserve) + extra_callbacks
        validation = next((c for c in callbacks if isinstance(c, Validation)), None)
        holder["validation"] = validation
        checkpointer = next(c for c in callbacks if isinstance(c, RunCheckpoint))
        more = checkpointer.extra
        fit_clock = {"start": time.monotonic()}
        checkpointer.extra = lambda: {**(more() if more is not None else {}),
                                      "train_seconds": round(trained_before + time.monotonic() - fit_clock["start"], 3)}
        if t.time_budget_seconds is not None:
            used = state.elapsed() if covers_run else trained_before
            for line in _budget_lines(t, covers_run, used, saved is not None, reserve(), validation, val_rate,
                                      eval_estimate):
                _say(line, verbose)
        elif validation is not None:
            _say(f"validation: {validation.num_pairs} pairs, ~{validation.estimate_seconds(val_rate):.1f} s "
                 f"each; test evaluation ~{eval_estimate:.1f} s", verbose)

        fit_start = fit_clock["start"] = time.monotonic()
        budget_callback = next((c for c in callbacks if isinstance(c, TimeBudget)), None)
        if budget_callback is not None and not covers_run:
            budget_callback.deadline = fit_start - trained_before + t.time_budget_seconds
        if clock_schedule:
            callbacks.insert(callbacks.index(budget_callback) + 1, BudgetSchedule(
                t.learning_rate, t.warmup_steps, budget_callback, t.epochs * len(data.train), state,
                origin=fit_start - trained_before))
        history = None
        start_epoch = 0 if saved is None else saved["epoch"]
        if saved is not None and 0 < saved["batch"] < len(data.train) and start_epoch < t.epochs:
            # the rest of the interrupted epoch, in its saved order, then the following epochs
            state.batch_offset, state.offset_epoch = saved["batch"], start_epoch
            rest = RemainingBatches(data.train, saved["batch"], data.train._order)
            history = model.fit(rest, epochs=start_epoch + 1, initial_epoch=start_epoch, callbacks=callbacks,
                                verbose=0)
            data.train.on_epoch_end()
            start_epoch += 1
        stopped = state.interrupted or state.stop_reason or model.stop_training
        if start_epoch < t.epochs and not stopped:
            history = model.fit(data.train, epochs=t.epochs, initial_epoch=start_epoch, callbacks=callbacks,
                                verbose=0)
        train_seconds = time.monotonic() - fit_start

    if state.interrupted:
        epoch, batch, step = checkpointer.saved_at or (state.epoch, state.batch, state.step)
        message = (f"interrupted by {state.interrupted} at epoch {epoch + 1}, step {batch} of {len(data.train)} "
                   f"(global step {step}): resumable checkpoint saved in {backup_dir}; rerun the same command to "
                   "continue from there")
        print(message, flush=True)
        raise TrainingInterrupted(message)
    checkpointer.remove()

    checkpoint = os.path.join(run_dir, MODEL_FILE)
    if os.path.exists(checkpoint):
        model.load_weights(checkpoint)

    rows = _read_history_rows(history_path)
    monitor = _monitor(data.val is not None)
    best_epoch = None
    best_value = _best(rows, monitor)
    if best_value is not None:
        best_epoch = next(int(float(r["epoch"])) for r in rows if _safe_float(r.get(monitor)) == best_value)
    cut = state.batch < len(data.train)
    training_info = {
        "backend": keras.backend.backend(),
        "train_seconds": round(train_seconds, 2),
        "epochs_requested": t.epochs,
        "epochs_completed": len(rows) - (1 if cut and rows else 0),
        "last_epoch_steps": state.batch,
        "steps_completed": state.step,
        "resumed_from_epoch": resume_epoch,
        "resumed_from_step": None if saved is None else saved.get("step"),
        "stopped_by_time_budget": budget_callback is not None and budget_callback.stopped_epoch is not None,
        "time_budget_seconds": t.time_budget_seconds,
        "best_epoch": best_epoch,
        f"best_{monitor}": best_value if validation is None or validation.best is None else validation.best,
        "num_params": int(model.count_params()),
        "steps_per_epoch": len(data.train),
        "train_pairs": int(data.train.num_pairs),
        "validation_seconds": None if validation is None else round(validation.seconds, 2),
        "validations": None if validation is None else validation.count,
        "evaluation_estimate_seconds": round(eval_estimate, 2),
    }
    eval_start = time.monotonic()
    metrics = evaluation.evaluate(model, data, run_dir=run_dir, plots=cfg.output.plots, history=history_path,
                                  extra={"training": training_info}, progress=show)
    data.close()
    training_info["evaluation_seconds"] = round(time.monotonic() - eval_start, 2)
    training_info["wall_seconds"] = round(state.elapsed(), 2)
    metrics["training"] = training_info
    evaluation.write_metrics(os.path.join(run_dir, evaluation.METRICS_FILE), metrics)
    budget_text = ""
    if t.time_budget_seconds is not None:
        budget_text = (f" of the {t.time_budget_seconds:g} s budget" if covers_run else
                       f" ({t.time_budget_seconds:g} s budget for training)")
    _say(f"wall time {training_info['wall_seconds']:.1f} s{budget_text} (training {train_seconds:.1f} s incl. "
         f"validation {training_info['validation_seconds'] or 0:.1f} s; test evaluation "
         f"{training_info['evaluation_seconds']:.1f} s, estimated {eval_estimate:.1f} s)", verbose)
    return model, history, metrics


def _safe_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
