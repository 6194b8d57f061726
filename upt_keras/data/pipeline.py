"""Keras input pipeline: batches of (u_t, u_t+s) pairs (or rollout targets) from trajectories, as a
``keras.utils.PyDataset``.

The train/val/test split and the normalisation statistics (``split_indices``, ``compute_normalization``) live in
``upt_keras.data.splits``, which needs only numpy; they are importable from here too.
"""

from __future__ import annotations

import math

import numpy as np

import keras

from upt_keras.data.splits import _num_samples, _read, compute_normalization, split_indices

__all__ = ["split_indices", "compute_normalization", "PairDataset"]


class PairDataset(keras.utils.PyDataset):
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
