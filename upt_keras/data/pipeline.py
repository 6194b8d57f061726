"""Keras input pipeline: train/val/test split, normalisation statistics and (u_t, u_t+s) pair batches.

``split_indices`` and ``compute_normalization`` need only numpy. ``PairDataset`` is a ``keras.utils.PyDataset`` and is
created on first access, so importing this module does not import Keras (or its backend framework).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["split_indices", "compute_normalization", "PairDataset"]


def split_indices(num_samples, test_fraction=0.1, val_fraction=0.1):
    """Split sample indices PDEBench-style: the first samples are the test set, then validation, the rest training.

    Sizes are ``floor(num_samples * fraction)`` (as PDEBench's ``int(test_ratio * num_samples)``).

    Args:
        num_samples: total number of trajectories.
        test_fraction: fraction for the test set (the first indices).
        val_fraction: fraction for the validation set (the indices right after the test set).

    Returns:
        dict with int64 arrays ``"train"``, ``"val"``, ``"test"``.

    Example:
        >>> s = split_indices(10)
        >>> s["test"], s["val"], s["train"][:3]
        (array([0]), array([1]), array([2, 3, 4]))
    """
    num_samples = int(num_samples)
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    for name, frac in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= float(frac) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    if float(test_fraction) + float(val_fraction) >= 1.0:
        raise ValueError("test_fraction + val_fraction must be < 1")
    # The small epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from losing a sample.
    n_test = int(math.floor(num_samples * float(test_fraction) + 1e-9))
    n_val = int(math.floor(num_samples * float(val_fraction) + 1e-9))
    idx = np.arange(num_samples, dtype=np.int64)
    return {"train": idx[n_test + n_val :], "val": idx[n_test : n_test + n_val], "test": idx[:n_test]}


def _read(source, indices):
    """float32 (n, T, *grid, C) for the given samples of a TrajectoryStore-like object or an in-memory array."""
    if hasattr(source, "read"):
        return np.asarray(source.read(indices), dtype=np.float32)
    data = np.asarray(source)
    if data.ndim < 4:
        raise ValueError(f"an in-memory source must have shape (S, T, *grid, C), got {data.shape}")
    out = np.asarray(data[indices], dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("the trajectories contain NaN or inf")
    return out


def _num_samples(source):
    return int(source.num_samples) if hasattr(source, "num_samples") else int(np.shape(source)[0])


def compute_normalization(store, sample_indices=None, max_samples=None, chunk_size=64):
    """Per-channel mean and standard deviation over the given (training) samples, all frames and grid points.

    Samples are read ``chunk_size`` at a time and combined with a numerically stable (Chan et al.) update, so the
    whole set is never held in memory. A channel with zero spread gets ``std = 1``.

    Args:
        store: a ``TrajectoryStore`` or an array ``(S, T, *grid, C)``.
        sample_indices: samples to use (normally ``split_indices(...)["train"]``); default all.
        max_samples: use at most this many, evenly spaced over ``sample_indices`` (deterministic).
        chunk_size: samples read per step.

    Returns:
        ``{"mean": [C floats], "std": [C floats]}``.

    Example:
        >>> stats = compute_normalization(store, split_indices(store.num_samples)["train"])  # doctest: +SKIP
        >>> stats["mean"], stats["std"]  # doctest: +SKIP
        ([0.0012], [0.41])
    """
    idx = np.arange(_num_samples(store)) if sample_indices is None else np.asarray(sample_indices, np.int64).ravel()
    if idx.size == 0:
        raise ValueError("compute_normalization needs at least one sample")
    if max_samples is not None and idx.size > int(max_samples):
        if int(max_samples) < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        idx = idx[np.round(np.linspace(0, idx.size - 1, int(max_samples))).astype(np.int64)]
    count, mean, m2 = 0, None, None
    for start in range(0, idx.size, int(chunk_size)):
        block = _read(store, idx[start : start + int(chunk_size)]).astype(np.float64)
        flat = block.reshape(-1, block.shape[-1])
        n_b = flat.shape[0]
        mean_b = flat.mean(axis=0)
        m2_b = ((flat - mean_b) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = n_b, mean_b, m2_b
        else:
            delta = mean_b - mean
            total = count + n_b
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (count * n_b / total)
            count = total
    std = np.sqrt(m2 / count)
    std = np.where(std > 0.0, std, 1.0)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


class _PairDatasetImpl:
    """Batches of ``(u_t, u_{t+time_stride})`` pairs (or rollout targets) from trajectories held in memory.

    The selected trajectories are read once at construction (float32, physical units, channels last). A pair is a
    trajectory and a start frame ``t``; all start frames with enough future frames are used. With ``shuffle`` the pair
    order is a fresh seeded permutation every epoch (``on_epoch_end``); without it pairs come trajectory by trajectory
    in time order. A ``keras.utils.PyDataset``: pass it straight to ``model.fit`` / ``evaluate`` / ``predict``.

    Args:
        source: a ``TrajectoryStore`` or an array ``(S, T, *grid, C)``.
        sample_indices: trajectories to use (e.g. ``split_indices(S)["train"]``); default all.
        batch_size: pairs per batch (the last batch may be smaller).
        shuffle: reshuffle the pairs every epoch.
        time_stride: frames between input and target.
        max_pairs: keep a random (seeded) subset of at most this many pairs, fixed for the lifetime of the dataset.
        rollout_steps: ``K`` for evaluation: targets are ``u_{t + s * time_stride}`` for ``s = 1..K``, shape
            ``(B, K, *grid, C)``, and only start frames with ``K`` future targets are used. ``None``: one-step pairs.
        seed: seed for the shuffling and for ``max_pairs``.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` for ``keras.utils.PyDataset``.

    Attributes:
        num_pairs: number of pairs.
        pairs: int64 ``(num_pairs, 2)`` array of (trajectory position in ``sample_indices``, start frame).
        trajectories: the float32 ``(n, T, *grid, C)`` array in memory.

    Example:
        >>> store = open_trajectories("burgers.h5")                                  # doctest: +SKIP
        >>> train = PairDataset(store, split_indices(store.num_samples)["train"],
        ...                     batch_size=32, shuffle=True)                         # doctest: +SKIP
        >>> x, y = train[0]            # (32, 256, 1) each                            # doctest: +SKIP
        >>> model.fit(train, epochs=10)                                              # doctest: +SKIP
    """

    def __init__(
        self,
        source,
        sample_indices=None,
        batch_size=32,
        shuffle=False,
        time_stride=1,
        max_pairs=None,
        rollout_steps=None,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.time_stride = int(time_stride)
        self.rollout_steps = None if rollout_steps is None else int(rollout_steps)
        self.seed = seed
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.time_stride < 1:
            raise ValueError(f"time_stride must be >= 1, got {time_stride}")
        if self.rollout_steps is not None and self.rollout_steps < 1:
            raise ValueError(f"rollout_steps must be >= 1 or None, got {rollout_steps}")

        if sample_indices is None:
            sample_indices = np.arange(_num_samples(source))
        self.sample_indices = np.asarray(sample_indices, dtype=np.int64).ravel()
        if self.sample_indices.size == 0:
            raise ValueError("PairDataset needs at least one trajectory")
        self.trajectories = _read(source, self.sample_indices)

        num_traj, num_frames = self.trajectories.shape[:2]
        horizon = self.time_stride * (self.rollout_steps or 1)
        starts = num_frames - horizon
        if starts < 1:
            raise ValueError(
                f"trajectories have {num_frames} frames; time_stride={self.time_stride} and "
                f"rollout_steps={self.rollout_steps} need at least {horizon + 1}"
            )
        traj = np.repeat(np.arange(num_traj, dtype=np.int64), starts)
        t0 = np.tile(np.arange(starts, dtype=np.int64), num_traj)
        pairs = np.stack([traj, t0], axis=1)
        self._rng = np.random.default_rng(seed)
        if max_pairs is not None and int(max_pairs) < pairs.shape[0]:
            if int(max_pairs) < 1:
                raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
            keep = np.sort(self._rng.choice(pairs.shape[0], size=int(max_pairs), replace=False))
            pairs = pairs[keep]
        self.pairs = pairs
        self._offsets = self.time_stride * np.arange(1, (self.rollout_steps or 1) + 1, dtype=np.int64)
        self._order = self._rng.permutation(self.num_pairs) if self.shuffle else np.arange(self.num_pairs)

    @property
    def num_pairs(self):
        """Number of (input, target) pairs."""
        return int(self.pairs.shape[0])

    def __len__(self):
        return math.ceil(self.num_pairs / self.batch_size)

    def __getitem__(self, index):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        sel = self.pairs[self._order[index * self.batch_size : (index + 1) * self.batch_size]]
        traj, t0 = sel[:, 0], sel[:, 1]
        x = self.trajectories[traj, t0]
        if self.rollout_steps is None:
            y = self.trajectories[traj, t0 + self.time_stride]
        else:
            y = self.trajectories[traj[:, None], t0[:, None] + self._offsets[None, :]]
        return x, y

    def on_epoch_end(self):
        """Draw a new pair order when shuffling (called by Keras after every epoch)."""
        if self.shuffle:
            self._order = self._rng.permutation(self.num_pairs)


def _make_pair_dataset():
    import keras

    cls = type(
        "PairDataset",
        (_PairDatasetImpl, keras.utils.PyDataset),
        {"__doc__": _PairDatasetImpl.__doc__, "__module__": __name__},
    )
    return cls


def __getattr__(name):
    # PairDataset subclasses keras.utils.PyDataset; build it on first use so that importing the data package does
    # not import Keras and, with it, a backend framework.
    if name == "PairDataset":
        cls = _make_pair_dataset()
        globals()["PairDataset"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
