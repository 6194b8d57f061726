"""The training pipeline: config -> data -> compiled UPT -> callbacks -> fit -> physical-space evaluation.

Each step is a public function, so that scripts, the `upt-keras` command line and hyper-parameter searches can reuse
the parts they need:

```python
from upt_keras.config import load_config
from upt_keras import training

cfg = load_config("configs/train_burgers1d.yaml", overrides=["training.epochs=5"])
model, history, metrics = training.train(cfg, run_dir="runs/quick")   # everything below, in one call

data = training.prepare_data(cfg)                      # splits, normalisation (train split only), datasets
model = training.build_model(cfg, data)                # compiled UPT (AdamW, lr schedule, precision policy)
callbacks = training.make_callbacks(cfg, "runs/quick", has_validation=data.val is not None)
model.fit(data.train, validation_data=data.val, epochs=cfg.training.epochs, callbacks=callbacks)
```

A run directory holds:

| file                 | written by                 | content                                                     |
|----------------------|----------------------------|-------------------------------------------------------------|
| `config.yaml`        | `train`                    | the resolved configuration (every key, defaults included)   |
| `normalization.json` | `train`                    | per-channel mean/std of the training split, dt, grid shape  |
| `model.keras`        | `ModelCheckpoint`          | the best model so far on `val_forward_loss`                 |
| `backup/`            | `BackupAndRestore`         | the state at the last finished epoch (removed when done)    |
| `history.csv`        | `CSVLogger`                | one row per epoch (appended to when a run resumes)          |
| `logs/`              | `TensorBoard` (optional)   | TensorBoard event files                                     |
| `metrics.json`, PNGs | `upt_keras.evaluation`     | test metrics in physical units and figures                  |

Resuming: when `run_dir/backup` exists, `train` continues the interrupted run from the start of the first unfinished
epoch (weights, optimizer state, epoch counter; at most the epoch in progress is lost). The configuration must be the
one the interrupted run used; otherwise a `ConfigError` says so.

Early stopping and the best checkpoint watch `val_forward_loss` (the unweighted one-step loss), never the total loss,
whose inverse-loss terms ramp up during training.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import keras

from upt_keras.callbacks import InverseLossCurriculum, TimeBudget
from upt_keras.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
    validate_for_grid,
)
from upt_keras.run_files import comparable_config, settings_changes, write_json

__all__ = [
    "PreparedData",
    "TimeBudget",
    "prepare_data",
    "precision_policy",
    "make_lr_schedule",
    "make_optimizer",
    "seed_everything",
    "build_model",
    "make_callbacks",
    "backup_epoch",
    "train",
]

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.yaml"
NORMALIZATION_FILE = "normalization.json"
BACKUP_DIR = "backup"


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """Everything the model and the evaluation need from the data.

    Attributes:
        train, val, test: `PairDataset`s of one-step pairs (u_t, u_{t+time_stride}); `val` is None when
            `data.val_fraction` leaves no validation trajectory; `train`/`val` are None when not requested.
        rollout: `PairDataset` over the test trajectories whose targets are the next `data.rollout_steps` frames
            (shape (B, K, *grid, C)); None when the trajectories are too short for it.
        grid_shape: spatial shape after `data.reduced_resolution`.
        num_channels: number of fields.
        dt: time between a model input and its target (frame spacing x `data.time_stride`; `time_stride` when the
            file carries no time coordinate).
        stats: `{"mean": [...], "std": [...]}` per channel, computed on the training split only.
        split: sample indices `{"train", "val", "test"}` of the file (after `max_train_samples`).
        path: the HDF5 file the trajectories came from.
        coords: list of 1D coordinate arrays (one per spatial axis), or None.
        times: frame times after `reduced_resolution_t`, or None.
        time_stride: `data.time_stride`.
    """

    train: Any
    val: Any
    test: Any
    rollout: Any
    grid_shape: tuple
    num_channels: int
    dt: float
    stats: dict | None
    split: dict
    path: str
    coords: list | None = None
    times: np.ndarray | None = None
    time_stride: int = 1
    info: dict = field(default_factory=dict)

    @property
    def field_mean(self):
        return None if self.stats is None else list(self.stats["mean"])

    @property
    def field_std(self):
        return None if self.stats is None else list(self.stats["std"])


def _open_store(cfg: Config, progress: bool):
    from upt_keras.data import load_default_burgers, open_trajectories

    d = cfg.data
    if d.source == "default":
        return load_default_burgers(progress=progress, reduced_resolution=d.reduced_resolution,
                                    reduced_resolution_t=d.reduced_resolution_t)
    return open_trajectories(d.path, d.reduced_resolution, d.reduced_resolution_t)


def prepare_data(cfg: Config, splits=("train", "val", "test", "rollout"), progress: bool = True) -> PreparedData:
    """Open the trajectories named by `cfg.data`, split them and build the datasets.

    `data.source == "default"` uses the built-in 1D Burgers set (generated and cached on first use); `"hdf5"` opens
    `data.path`. The first `test_fraction` of the samples is the test split, the next `val_fraction` the validation
    split, the rest (at most `max_train_samples`) the training split. Normalisation statistics come from the training
    split only.

    Args:
        cfg: a Config.
        splits: which datasets to build; evaluation needs only `("test", "rollout")` (the statistics are then still
            computed when "train" is requested, else left None).
        progress: show a progress bar if the default set has to be generated.

    Raises:
        ConfigError: the grid does not suit the model config (`validate_for_grid`), a split is empty, or the
            trajectories are too short for `time_stride` / `rollout_steps`.
        DataError: the file is missing or unreadable.
    """
    from upt_keras.data import PairDataset, compute_normalization, split_indices

    d, t = cfg.data, cfg.training
    splits = tuple(splits)
    unknown = set(splits) - {"train", "val", "test", "rollout"}
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; choose from train, val, test, rollout")
    store = _open_store(cfg, progress)
    with store:
        grid_shape = tuple(int(n) for n in store.grid_shape)
        validate_for_grid(cfg, grid_shape)
        frames = int(store.num_frames)
        if frames < d.time_stride + 1:
            raise ConfigError(
                f"data.time_stride={d.time_stride} needs trajectories of at least {d.time_stride + 1} frames, "
                f"{store.path} has {frames} (after reduced_resolution_t={d.reduced_resolution_t})"
            )
        split = split_indices(store.num_samples, d.test_fraction, d.val_fraction)
        if d.max_train_samples is not None:
            split["train"] = split["train"][: d.max_train_samples]
        for name in ("train", "test"):
            if split[name].size == 0:
                raise ConfigError(
                    f"the {name} split of {store.path} is empty ({store.num_samples} samples, "
                    f"data.test_fraction={d.test_fraction}, data.val_fraction={d.val_fraction}); "
                    "use more samples or change the fractions"
                )
        stats = compute_normalization(store, split["train"]) if "train" in splits else None
        common = dict(batch_size=t.batch_size, time_stride=d.time_stride)
        # With a latent rollout loss (K > 1) training and validation targets are the next K frames.
        target_steps = max(t.rollout_loss_steps, t.latent_consistency_steps)
        k_step = dict(rollout_steps=target_steps) if target_steps > 1 else {}
        if target_steps > 1 and frames < target_steps * d.time_stride + 1:
            key = ("rollout_loss_steps" if t.rollout_loss_steps >= t.latent_consistency_steps
                   else "latent_consistency_steps")
            raise ConfigError(
                f"training.{key}={target_steps} with data.time_stride={d.time_stride} needs "
                f"trajectories of at least {target_steps * d.time_stride + 1} frames, {store.path} has {frames}"
            )
        train = None
        if "train" in splits:
            train = PairDataset(store, split["train"], shuffle=True, seed=cfg.seed, **common, **k_step)
        val = None
        if "val" in splits and split["val"].size:
            val = PairDataset(store, split["val"], shuffle=False, **common, **k_step)
        test = PairDataset(store, split["test"], shuffle=False, **common) if "test" in splits else None
        rollout = None
        if "rollout" in splits:
            needed = d.rollout_steps * d.time_stride + 1
            if frames < needed:
                raise ConfigError(
                    f"data.rollout_steps={d.rollout_steps} with data.time_stride={d.time_stride} needs trajectories "
                    f"of at least {needed} frames, {store.path} has {frames}"
                )
            rollout = PairDataset(store, split["test"], shuffle=False, rollout_steps=d.rollout_steps, **common)
        dt = float(store.dt) * d.time_stride if store.dt else float(d.time_stride)
        coords = [np.asarray(c) for c in store.coords] if getattr(store, "coords", None) is not None else None
        times = None if store.times is None else np.asarray(store.times)
        info = {"path": store.path, "num_samples": int(store.num_samples), "num_frames": frames,
                "nu": None if store.nu is None else float(store.nu)}
        return PreparedData(
            train=train, val=val, test=test, rollout=rollout, grid_shape=grid_shape,
            num_channels=int(store.num_channels), dt=dt, stats=stats,
            split={k: v.tolist() for k, v in split.items()}, path=store.path, coords=coords, times=times,
            time_stride=d.time_stride, info=info,
        )


# --------------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def precision_policy(name: str | None):
    """Sets Keras's global dtype policy to `name` (None: "float32") inside the block, then restores the previous one.

    Layers take their policy when they are created, so a model built inside the block keeps it afterwards.

    Example:
    >>> with precision_policy("mixed_float16"):
    ...     model = build_model(cfg, data)   # doctest: +SKIP
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name or "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_lr_schedule(cfg: Config, total_steps: int):
    """The learning rate of `cfg` over `total_steps` optimizer steps: a Keras schedule, or a float when constant.

    `cosine`: linear warmup from 0 over `training.warmup_steps` (if any), then cosine decay to 0 at `total_steps`.
    `constant`: the same warmup, then `training.learning_rate`.
    """
    t = cfg.training
    lr, warmup = t.learning_rate, t.warmup_steps
    total_steps = max(int(total_steps), 1)
    schedules = keras.optimizers.schedules
    if t.lr_schedule == "cosine":
        if warmup:
            return schedules.CosineDecay(0.0, max(total_steps - warmup, 1), alpha=0.0, warmup_target=lr,
                                         warmup_steps=warmup)
        return schedules.CosineDecay(lr, total_steps, alpha=0.0)
    if warmup:
        # alpha=1: after the warmup the "decay" keeps the target rate.
        return schedules.CosineDecay(0.0, 1, alpha=1.0, warmup_target=lr, warmup_steps=warmup)
    return lr


#: Gradients are clipped to this global norm: it keeps the attention layers stable at learning rates of 1e-3 and
#: above (without it, the 1D Burgers default diverged at 2e-3 and needed a warmup even at 1e-3).
GLOBAL_CLIPNORM = 1.0


def make_optimizer(cfg: Config, total_steps: int):
    """AdamW with `training.weight_decay`, the learning rate of `make_lr_schedule(cfg, total_steps)`, and gradients
    clipped to a global norm of `GLOBAL_CLIPNORM`."""
    return keras.optimizers.AdamW(learning_rate=make_lr_schedule(cfg, total_steps),
                                  weight_decay=cfg.training.weight_decay, global_clipnorm=GLOBAL_CLIPNORM)


def _model_kwargs(cfg: Config) -> dict:
    from upt_keras.presets import SIZE_DEFAULTS

    # every size the config section has (presets.SIZE_DEFAULTS is the list), and the decoding chunk
    sizes = {k: getattr(cfg.model, k) for k in SIZE_DEFAULTS if hasattr(cfg.model, k)}
    return dict(sizes, decode_chunk_size=cfg.model.decode_chunk_size, residual=cfg.model.residual)


def _check_supported(cfg: Config) -> None:
    t = cfg.training
    if t.distribution == "data_parallel" and keras.backend.backend() == "torch":
        raise ConfigError(
            "training.distribution=data_parallel runs in-process on the JAX and TensorFlow backends; on torch "
            "launch examples/train_ddp_torch.py with torchrun (see docs/distributed.md), or set "
            "training.distribution=null"
        )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend, as `keras.utils.set_random_seed` does.

    `keras.utils.set_random_seed` also imports TensorFlow whenever it is installed (to seed `tf.data`), which costs
    seconds and hundreds of MB in a torch or JAX process; it is only called when TensorFlow is the backend or is
    already loaded. Weight initialisers draw their seeds from Python's `random`, so the result is the same.
    """
    import random
    import sys

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(int(seed))
        return
    random.seed(int(seed))
    np.random.seed(int(seed))
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(int(seed))


def calibrate_step_seconds(cfg: Config, data: PreparedData, steps: int = 6, warmup: int = 2) -> float:
    """Median seconds of one training step of the model `cfg` builds, timed on a throw-away copy.

    `warmup` steps (tracing, first allocations) are run first and not counted. The global seeds are set again when
    the real model is built, so calibrating does not change it.
    """
    model = build_model(cfg, data)
    times = []
    for i in range(warmup + steps):
        x, y = data.train[i % len(data.train)]
        start = time.perf_counter()
        model.train_on_batch(x, y)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    del model
    return float(np.median(times))


def build_model(cfg: Config, data: PreparedData, steps_per_epoch: int | None = None,
                schedule_steps: int | None = None):
    """A compiled `UPT` for `data` (grid, channels, dt, normalisation) with the sizes and losses of `cfg`.

    The mixed-precision policy of `training.amp` is active while the model is built and compiled, and the previous
    global policy is restored afterwards (see `precision_policy`). The learning-rate schedule spans
    `training.epochs * steps_per_epoch` steps (default: the length of `data.train`), or `schedule_steps` when given
    (`train` fits it into `training.time_budget_seconds`).

    Raises:
        ConfigError: for settings this version cannot honour (`training.distribution=data_parallel` on torch).
    """
    from upt_keras.model import UPT

    _check_supported(cfg)
    t = cfg.training
    if steps_per_epoch is None:
        steps_per_epoch = len(data.train) if data.train is not None else 1
    qs = t.query_sampling
    with precision_policy(t.amp_policy):
        seed_everything(cfg.seed)
        model = UPT.from_sizes(
            data.grid_shape, data.num_channels, **_model_kwargs(cfg),
            dt=data.dt, field_mean=data.field_mean, field_std=data.field_std,
            use_inverse_losses=t.use_inverse_losses, lambda_inv_enc=t.lambda_inv_enc,
            lambda_inv_dec=t.lambda_inv_dec, inverse_loss_frequency=t.inverse_loss_frequency,
            num_queries=qs.num_queries if qs.enabled else None, query_strategy=qs.strategy, seed=cfg.seed,
            rollout_loss_steps=t.rollout_loss_steps, lambda_latent_consistency=t.lambda_latent_consistency,
            latent_consistency_steps=t.latent_consistency_steps, latent_noise=t.latent_noise,
            inverse_decoding_points=t.inverse_decoding_points, latent_consistency_norm=t.latent_consistency_norm,
            latent_consistency_frequency=t.latent_consistency_frequency,
            forward_loss=t.forward_loss,
        )
        total = schedule_steps if schedule_steps is not None else t.epochs * steps_per_epoch
        model.compile(optimizer=make_optimizer(cfg, total), jit_compile=t.jit_compile)
    return model


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
    _check_supported(cfg)

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
