"""The model half of a run: precision policy, learning-rate schedule, optimizer, seeding, the compiled `UPT` a config
describes (`build_model`), and the measured seconds of one predicted pair (`seconds_per_pair`)."""

from __future__ import annotations

import contextlib
import time

import numpy as np

import keras

from upt_keras.config import Config, ConfigError
from upt_keras.training.data import PreparedData

__all__ = [
    "GLOBAL_CLIPNORM",
    "precision_policy",
    "make_lr_schedule",
    "make_optimizer",
    "model_kwargs",
    "objective_kwargs",
    "check_supported",
    "seed_everything",
    "seconds_per_pair",
    "build_model",
]



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


def make_optimizer(cfg: Config, total_steps: int | None):
    """AdamW with `training.weight_decay`, the learning rate of `make_lr_schedule(cfg, total_steps)` (with
    `total_steps` None: the constant `training.learning_rate`, for a `BudgetSchedule` to set), and gradients clipped
    to a global norm of `GLOBAL_CLIPNORM`."""
    rate = cfg.training.learning_rate if total_steps is None else make_lr_schedule(cfg, total_steps)
    return keras.optimizers.AdamW(learning_rate=rate, weight_decay=cfg.training.weight_decay,
                                  global_clipnorm=GLOBAL_CLIPNORM)


def model_kwargs(cfg: Config) -> dict:
    """The `UPT.from_sizes` keyword arguments of `cfg.model`: every size `SIZE_DEFAULTS` lists, the decoding chunk
    and `residual` (with `residual_neighbours`)."""
    from upt_keras.models.presets import SIZE_DEFAULTS

    sizes = {k: getattr(cfg.model, k) for k in SIZE_DEFAULTS}
    return dict(sizes, decode_chunk_size=cfg.model.decode_chunk_size, residual=cfg.model.residual,
                residual_neighbours=cfg.model.residual_neighbours)


def objective_kwargs(cfg: Config) -> dict:
    """The `UPTObjective` arguments of `cfg.training`: its `ObjectiveSettings` keys, the query sampling and the
    seed."""
    from upt_keras.objectives.settings import OBJECTIVE_KEYS

    t, qs = cfg.training, cfg.training.query_sampling
    return dict({k: getattr(t, k) for k in OBJECTIVE_KEYS}, num_queries=qs.num_queries if qs.enabled else None,
                query_strategy=qs.strategy, seed=cfg.seed)


def check_supported(cfg: Config) -> None:
    """Raises `ConfigError` for settings this version cannot honour on the current backend."""
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


def seconds_per_pair(model, source) -> float:
    """Measured wall seconds of one predicted pair of the split `source` (a `PairDataset`): the median of three
    calls on its first batch, after a first call (which compiles). Validation and test are measured apart: a point
    cloud validates at its points and is tested on the full grid."""
    import statistics

    from upt_keras.backend import inference_mode
    from upt_keras.data.pipeline import batch_size_of

    x = source[0][0]
    times = []
    with inference_mode():
        model.predict_on_batch(x)
        for _ in range(3):  # the median of three: one call on a shared machine is noisy
            start = time.perf_counter()
            keras.ops.convert_to_numpy(model.predict_on_batch(x))
            times.append(time.perf_counter() - start)
    return statistics.median(times) / max(batch_size_of(x), 1)


def build_model(cfg: Config, data: PreparedData, steps_per_epoch: int | None = None, clock_schedule: bool = False):
    """A compiled `UPT` for `data` (grid, channels, dt, normalisation) with the sizes and losses of `cfg`.

    The mixed-precision policy of `training.amp` is active while the model is built and compiled, and the previous
    global policy is restored afterwards (see `precision_policy`). The learning-rate schedule spans
    `training.epochs * steps_per_epoch` steps (default: the length of `data.train`); with `clock_schedule` the
    optimizer's learning rate is a constant that a `BudgetSchedule` callback sets before every step (`train` does
    so with `training.fit_schedule_to_budget` and a time budget).

    Raises:
        ConfigError: for settings this version cannot honour (`training.distribution=data_parallel` on torch).
    """
    from upt_keras.models.upt import UPT
    from upt_keras.objectives.upt_objective import UPTObjective

    check_supported(cfg)
    t = cfg.training
    if steps_per_epoch is None:
        steps_per_epoch = len(data.train) if data.train is not None else 1
    with precision_policy(t.amp_policy):
        seed_everything(cfg.seed)
        model = UPT.from_sizes(
            data.grid_shape, data.num_channels, **model_kwargs(cfg), dt=data.dt, field_mean=data.field_mean,
            field_std=data.field_std, objective=UPTObjective(**objective_kwargs(cfg)),
        )
        optimizer = make_optimizer(cfg, None if clock_schedule else t.epochs * steps_per_epoch)
        model.compile(optimizer=optimizer, jit_compile=t.jit_compile)
    return model
