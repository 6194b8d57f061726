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

__all__ = ["split_indices", "compute_normalization", "PairDataset", "batch_size_of", "map_batch", "concat_batches",
           "identity_frames", "pad_batch"]


def map_batch(fn, x):
    """`fn` applied to a batch of model inputs: an array, or each array of a point cloud's dict."""
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def batch_size_of(x) -> int:
    """The number of samples in a batch of model inputs (an array or a point cloud's dict)."""
    return int(len(next(iter(x.values())) if isinstance(x, dict) else x))


def concat_batches(batches):
    """Batches of model inputs concatenated along the samples (float32 arrays, or a dict of them)."""
    if isinstance(batches[0], dict):
        return {k: np.concatenate([np.asarray(b[k], np.float32) for b in batches]) for k in batches[0]}
    return np.concatenate([np.asarray(b, np.float32) for b in batches])


def identity_frames(dataset, index, x):
    """`u_t` of batch `index` of `dataset` where its targets are (`PairDataset.start_frames`; the inputs `x` of any
    other dataset): what the identity baseline predicts, float32."""
    start = dataset.start_frames(index) if hasattr(dataset, "start_frames") else x
    return np.asarray(start, np.float32)


def pad_batch(x, size):
    """A batch of model inputs padded to `size` samples by repeating its last sample (no copy when it has them)."""
    pad = size - batch_size_of(x)
    return x if pad <= 0 else map_batch(lambda a: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]), x)


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
        positions: a point cloud's positions ``(n, N, d)``, one row per trajectory of ``sample_indices``: the inputs
            become ``{"fields": (B, N, C), "positions": (B, N, d)}``. Without ``inputs`` the trajectories are the
            fields at those points ``(S, T, N, C)``, inputs and targets alike, and the inputs also hold ``"coords"``
            (the positions: the model predicts there).
        inputs: with ``positions``, the input fields at the points, a source ``(S, T, N, C)`` beside the targets'
            trajectories (e.g. the full grid, for evaluation).
        input_fraction: with ``positions`` and no ``inputs``, the model sees a random ``round(input_fraction * N)``
            of each sample's points (a fresh draw per batch and epoch) while ``"coords"`` and the targets keep all
            ``N``: the model learns to predict at points it was not given, as it must off its input points.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` for ``keras.utils.PyDataset``.

    Attributes:
        num_pairs: number of pairs.
        pairs: int64 ``(num_pairs, 2)`` array of (trajectory position in ``sample_indices``, start frame).
        trajectories: the float32 ``(n, T, *grid, C)`` array in memory (the targets' frames).
        positions, inputs: as given (``inputs`` read like ``trajectories``), or None.

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
        positions=None,
        inputs=None,
        input_fraction=1.0,
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
        self.positions = None if positions is None else np.asarray(positions, np.float32)
        self.inputs = None if inputs is None else _read(inputs, self.sample_indices)
        self.input_fraction, self._epoch = float(input_fraction), 0
        if not 0.0 < self.input_fraction <= 1.0:
            raise ValueError(f"input_fraction must be in (0, 1], got {input_fraction}")
        if self.input_fraction < 1.0 and (self.positions is None or self.inputs is not None):
            raise ValueError("input_fraction < 1 keeps a subset of each sample's points as inputs: it needs "
                             "positions and no separate inputs")

        num_traj, num_frames = self.trajectories.shape[:2]
        self._check_points()
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

    def _check_points(self):
        if self.inputs is not None and self.positions is None:
            raise ValueError("inputs at points need their positions: PairDataset(..., positions=...)")
        if self.positions is None:
            return
        fields = self.trajectories if self.inputs is None else self.inputs
        shape, pos = tuple(fields.shape), self.positions.shape
        if (len(shape) != 4 or pos[:1] != shape[:1] or len(pos) != 3 or pos[1] != shape[2]
                or shape[:2] != tuple(self.trajectories.shape[:2])):
            raise ValueError(f"point fields of shape {shape} (trajectories, frames, points, channels) do not fit "
                             f"positions of shape {pos} (trajectories, points, coordinates) and trajectories of shape "
                             f"{tuple(self.trajectories.shape)}")

    def model_inputs(self, traj, t0):
        """The model's inputs at frames `t0` of trajectories `traj` (positions in the trajectory list): the frames,
        or for a point cloud `{"fields", "positions"}` (and `"coords"` when the targets are at the points)."""
        if self.positions is None:
            return self.trajectories[traj, t0]
        if self.inputs is None:
            fields, positions = self.trajectories[traj, t0], self.positions[traj]
            x = {"fields": fields, "positions": positions, "coords": positions}
            if self.input_fraction < 1.0:  # each sample's own random subset, the same size for the batch
                num = positions.shape[1]
                keep = max(1, int(round(self.input_fraction * num)))
                rng = np.random.default_rng([int(self.seed or 0), self._epoch, int(traj[0]), int(t0[0]), len(traj)])
                idx = np.argsort(rng.random((len(traj), num)), axis=1)[:, :keep]
                x["fields"] = np.take_along_axis(fields, idx[..., None], axis=1)
                x["positions"] = np.take_along_axis(positions, idx[..., None], axis=1)
            return x
        return {"fields": self.inputs[traj, t0], "positions": self.positions[traj]}

    def _batch_pairs(self, index):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        sel = self.pairs[self._order[index * self.batch_size : (index + 1) * self.batch_size]]
        return sel[:, 0], sel[:, 1]

    def start_frames(self, index):
        """`u_t` of batch `index` where its targets are (the inputs, unless those are other points): what the
        identity baseline predicts."""
        traj, t0 = self._batch_pairs(index)
        return self.trajectories[traj, t0]

    @property
    def num_pairs(self):
        """Number of (input, target) pairs."""
        return int(self.pairs.shape[0])

    def __len__(self):
        return math.ceil(self.num_pairs / self.batch_size)

    def __getitem__(self, index):
        traj, t0 = self._batch_pairs(index)
        x = self.model_inputs(traj, t0)
        if self.rollout_steps is None:
            y = self.trajectories[traj, t0 + self.time_stride]
        else:
            y = self.trajectories[traj[:, None], t0[:, None] + self._offsets[None, :]]
        return x, y

    def on_epoch_end(self):
        """Draw a new pair order when shuffling (called by Keras after every epoch)."""
        self._epoch += 1
        if self.shuffle:
            self._order = self._rng.permutation(self.num_pairs)
