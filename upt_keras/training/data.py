"""The data half of a run: open the trajectories a config names, split them, normalise on the training split and
build the datasets (`prepare_data`, `PreparedData`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from upt_keras.config import Config, ConfigError, validate_for_grid

__all__ = ["PreparedData", "check_encoder_fits", "prepare_data", "read_split"]

#: Bytes of (strided) trajectories per block when a split is read into memory (`read_split`); the file itself is
#: read in blocks of at most `upt_keras.data.layouts.READ_BLOCK_BYTES` (64 MiB) before striding.
READ_BLOCK_BYTES = 16 * 2**20


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
        store: the open store the datasets read from with `data.in_memory: false` (`close()` it), else None.
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
    store: Any = None

    def close(self):
        """Close the file a `data.in_memory: false` run reads from (nothing to do otherwise)."""
        if self.store is not None:
            self.store.close()
            self.store = None

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


class _Loaded:
    """An array already read, served to `PairDataset` as a store (no second copy)."""

    def __init__(self, array):
        self.array = array
        self.num_samples = array.shape[0]

    def read(self, indices):
        return self.array if len(indices) == self.num_samples else self.array[np.asarray(indices)]


class LazyTrajectories:
    """The trajectories `indices` of an open store as a read-only `(n, T, *grid, C)` float32 array whose items are
    read from the file when indexed (`data.in_memory: false`): `view[traj, t]` with integer arrays `traj`, `t` of
    one shape reads the frames it needs, one trajectory at a time, and returns `traj.shape + (*grid, C)`."""

    lazy = True
    dtype = np.dtype(np.float32)

    def __init__(self, store, indices):
        self.store = store
        self.indices = np.asarray(indices, np.int64)
        self.shape = (self.indices.size, int(store.num_frames), *store.grid_shape, int(store.num_channels))
        self.nbytes = 0  # nothing held in memory

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError("index a lazy trajectory view with (trajectories, frames) integer arrays")
        traj, frames = np.broadcast_arrays(np.asarray(key[0], np.int64), np.asarray(key[1], np.int64))
        out = np.empty(traj.shape + self.shape[2:], np.float32)
        for u in np.unique(traj):
            where = traj == u
            wanted = frames[where]
            lo, hi = int(wanted.min()), int(wanted.max()) + 1
            block = self.store.read([int(self.indices[u])], frame_slice=slice(lo, hi))[0]
            out[where] = block[wanted - lo]
        return out


def _split_array(store, indices, label, in_memory, progress):
    """The trajectories `indices` of `store` served to `PairDataset`: read into memory, or a lazy view."""
    if in_memory:
        return _Loaded(read_split(store, indices, label, progress))
    return _Loaded(LazyTrajectories(store, indices))


def check_encoder_fits(cfg: Config, store) -> None:
    """A `ConfigError` naming `model.encoder` when the model cannot read the file: a point-cloud encoder needs a file
    of scattered points (layout `points`), a grid encoder a file on a grid."""
    layout = getattr(store, "layout", None)
    if cfg.model.encoder == "points" and getattr(store, "points", None) is None:
        raise ConfigError(
            f"model.encoder=points (model.preset={cfg.model.preset}) reads scattered points, but {store.path} is "
            f"a grid file (layout '{layout}'): write one with `upt-keras generate-data --points-fraction ...` "
            "(the 'points' layout, docs/data.md) or set model.encoder=grid"
        )
    if cfg.model.encoder != "points" and getattr(store, "points", None) is not None:
        raise ConfigError(
            f"{store.path} holds scattered points (layout 'points'), which model.encoder={cfg.model.encoder} cannot "
            "read: set model.encoder=points (e.g. model.preset=points64)"
        )


def read_split(store, indices, label: str, progress: bool = True) -> np.ndarray:
    """The trajectories `indices` of `store` as one float32 array, read in blocks of about 16 MB with progress
    (trajectories read / total and MB/s: a bar on a terminal, one line in a log)."""
    from upt_keras.progress import Progress

    indices = np.asarray(indices, np.int64)
    frame_bytes = int(np.prod(store.grid_shape)) * int(store.num_channels) * 4
    traj_bytes = max(frame_bytes * int(store.num_frames), 1)
    block = max(1, READ_BLOCK_BYTES // traj_bytes)
    out = np.empty((indices.size, int(store.num_frames), *store.grid_shape, int(store.num_channels)), np.float32)
    bar = Progress(indices.size, f"reading {label}", "trajectories", enabled=progress)
    for start in range(0, indices.size, block):
        stop = min(start + block, indices.size)
        out[start:stop] = store.read(indices[start:stop])
        bar.update(stop, MB_per_s=stop * traj_bytes / 2**20 / max(bar.seconds, 1e-9))
    bar.close(f"{out.nbytes / 2**20:.1f} MB in memory")
    return out


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
        progress: show the progress of generating the default set (when it has to be) and of reading each split
            (trajectories read / total, MB/s).

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
    with (store if d.in_memory else contextlib.nullcontext(store)):
        points = getattr(store, "points", None)
        check_encoder_fits(cfg, store)
        grid_shape = tuple(int(n) for n in store.grid_shape)
        validate_for_grid(cfg, grid_shape, num_points=None if points is None else points.num_points)
        if points is None and d.input_points_fraction < 1.0:
            raise ConfigError(f"data.input_points_fraction={d.input_points_fraction} keeps a share of each sample's "
                              f"points, but {store.path} holds fields on a grid, not a point cloud")
        frames = int(store.num_frames)
        if frames < d.time_stride + 1:
            raise ConfigError(
                f"data.time_stride={d.time_stride} needs trajectories of at least {d.time_stride + 1} frames, "
                f"{store.path} has {frames} (after reduced_resolution_t={d.reduced_resolution_t})"
            )
        split = split_indices(store.num_samples, d.test_fraction, d.val_fraction)
        full = {name: int(v.size) for name, v in split.items()}
        for name, cap in (("train", d.max_train_samples), ("val", d.max_val_samples), ("test", d.max_test_samples)):
            if cap is not None:
                split[name] = split[name][:cap]
        for name in ("train", "test"):
            if split[name].size == 0:
                raise ConfigError(
                    f"the {name} split of {store.path} is empty ({store.num_samples} samples, "
                    f"data.test_fraction={d.test_fraction}, data.val_fraction={d.val_fraction}); "
                    "use more samples or change the fractions"
                )
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
        needed = d.rollout_steps * d.time_stride + 1
        if "rollout" in splits and frames < needed:
            raise ConfigError(
                f"data.rollout_steps={d.rollout_steps} with data.time_stride={d.time_stride} needs trajectories "
                f"of at least {needed} frames, {store.path} has {frames}"
            )
        source = store if points is None else points  # what the training pairs are read from
        wanted = {"train": "train" in splits, "val": "val" in splits and split["val"].size > 0,
                  "test": "test" in splits or "rollout" in splits}
        arrays = {name: _split_array(source, split[name], f"{name} split", d.in_memory, progress)
                  for name, on in wanted.items() if on}
        if "train" not in splits:
            stats = None
        elif d.in_memory:
            stats = compute_normalization(arrays["train"].array)
        else:
            stats = compute_normalization(source, split["train"])
        # a point cloud: inputs at each sample's points, targets there too, or on the full grid for the test
        positions = {name: points.positions(split[name]) for name in arrays} if points is not None else {}
        tests = dict(source=arrays.get("test"), positions=positions.get("test"))
        if points is not None and store.has_grid and "test" in arrays:
            grid = _split_array(store, split["test"], "test split (full grid)", d.in_memory, progress)
            arrays["test_grid"] = grid
            tests = dict(source=grid, positions=positions["test"], inputs=arrays["test"])
        train = None
        if "train" in splits:
            train = PairDataset(arrays["train"], None, shuffle=True, seed=cfg.seed, positions=positions.get("train"),
                                input_fraction=d.input_points_fraction, **common, **k_step)
        val = None
        if "val" in splits and split["val"].size:
            # validation compares one-step predictions unless the objective's other terms are asked for
            val_k = k_step if t.validation_terms == "all" else {}
            val = PairDataset(arrays["val"], None, shuffle=False, positions=positions.get("val"), **common, **val_k)
        test = PairDataset(sample_indices=None, shuffle=False, **tests, **common) if "test" in splits else None
        rollout = None
        if "rollout" in splits:
            rollout = PairDataset(sample_indices=None, shuffle=False, rollout_steps=d.rollout_steps, **tests,
                                  **common)
        dt = float(store.dt) * d.time_stride if store.dt else float(d.time_stride)
        coords = [np.asarray(c) for c in store.coords] if getattr(store, "coords", None) is not None else None
        times = None if store.times is None else np.asarray(store.times)
        info = {"path": store.path, "num_samples": int(store.num_samples), "num_frames": frames,
                "nu": None if store.nu is None else float(store.nu),
                "split_sizes": {name: int(v.size) for name, v in split.items()}, "split_sizes_before_caps": full,
                "memory_bytes": int(sum(a.array.nbytes for a in arrays.values())), "in_memory": bool(d.in_memory),
                "file_bytes": int(sum(np.prod(a.array.shape) * 4 for a in arrays.values())),
                "channel_names": getattr(store, "channel_names", None),
                "num_points": None if points is None else points.num_points}
        return PreparedData(
            train=train, val=val, test=test, rollout=rollout, grid_shape=grid_shape,
            num_channels=int(store.num_channels), dt=dt, stats=stats,
            split={k: v.tolist() for k, v in split.items()}, path=store.path, coords=coords, times=times,
            time_stride=d.time_stride, info=info, store=None if d.in_memory else store,
        )
