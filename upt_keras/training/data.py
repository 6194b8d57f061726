"""The data half of a run: open the trajectories a config names, split them, normalise on the training split and
build the datasets (`prepare_data`, `PreparedData`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from upt_keras.config import Config, ConfigError, validate_for_grid

__all__ = ["PreparedData", "prepare_data"]



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
