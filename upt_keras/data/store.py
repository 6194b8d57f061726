"""The lazy reader of trajectory files: ``open_trajectories`` and ``TrajectoryStore``.

``open_trajectories`` recognises the layout of a file automatically (``tensor``, ``cfd``, ``data``, ``points`` or
``groups``, see ``upt_keras.data.layouts``) and returns a ``TrajectoryStore`` that keeps the file open and reads only the requested
samples and frames (h5py slicing); opening an 8 GB file costs the same as opening a small one. The store owns what is
common to every layout (striding, sample and frame selection, reordering and repeating samples, coordinates, times,
``dt``, ``nu``, attributes); the layout class owns the keys, the shape checks and the reading of one block of samples.

Any problem with a file raises ``DataError`` naming the file and the key: a missing or unreadable file, an unknown
layout, a missing key, ragged shapes, or non-finite values in a sample that is read (the message names the sample).

Example:
    >>> with open_trajectories("burgers.h5", reduced_resolution=4) as store:  # doctest: +SKIP
    ...     print(store.layout, store.num_samples, store.grid_shape)
    ...     u = store.read([3, 0, 3], frame_slice=slice(0, 10))   # (3, 10, X // 4, 1)
    tensor 1000 (64,)
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from upt_keras.data import burgers as _burgers
from upt_keras.data.errors import DataError
from upt_keras.data.layouts import detect_layout

__all__ = ["PointSamples", "TrajectoryStore", "open_trajectories"]


def _strided_len(n, step):
    return len(range(0, n, step))


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.reshape(()).item()
    if isinstance(value, np.generic):
        return value.item()
    return value


class TrajectoryStore:
    """Lazy, read-only view of a trajectory file in any supported layout (see the module docstring).

    Nothing but metadata is read when the store is opened; ``read`` fetches only the requested samples and frames,
    strided in time by ``reduced_resolution_t`` and in every spatial direction by ``reduced_resolution``.

    Args:
        path: HDF5 file.
        reduced_resolution: spatial stride (PDEBench ``reduced_resolution``).
        reduced_resolution_t: temporal stride (PDEBench ``reduced_resolution_t``).

    Attributes:
        path: the file.
        layout: ``"tensor"``, ``"groups"``, ``"cfd"``, ``"data"`` or ``"points"``.
        num_samples: trajectories ``S``.
        num_frames: frames per trajectory after striding ``T``.
        grid_shape: spatial shape after striding.
        num_channels: channels ``C``.
        channel_names: names of the channels where the file has them (CFD keys), else ``None``.
        coords: list of 1D grid-coordinate arrays after striding (one per spatial axis).
        times: ``(T,)`` frame times after striding, or ``None`` when the file has no time coordinate.
        dt: time between returned frames, or ``None`` when unknown.
        nu: the file's ``Nu`` (or ``nu``) attribute, or ``None``. Files written here store the coefficient of ``u_xx``
            itself; original PDEBench Burgers files store ``pi`` times it (their equation uses ``Nu / pi``).
        attrs: all file attributes as a dict.
        points: for a ``points`` file, its scattered points (``PointSamples``), else ``None``.
        has_grid: whether ``read`` can read the samples on the full grid (``False`` for a ``points`` file without
            its full-grid copy).

    Example:
        >>> with open_trajectories("burgers.h5", reduced_resolution=4) as store:
        ...     u = store.read([0, 1], frame_slice=slice(0, 10))   # (2, 10, X // 4, 1)
    """

    def __init__(self, path, reduced_resolution=1, reduced_resolution_t=1):
        self.path = os.fspath(path)
        self.reduced_resolution = int(reduced_resolution)
        self.reduced_resolution_t = int(reduced_resolution_t)
        if self.reduced_resolution < 1 or self.reduced_resolution_t < 1:
            raise ValueError("reduced_resolution and reduced_resolution_t must be >= 1")
        self._file = None
        if not os.path.exists(self.path):
            raise DataError(f"{self.path}: file not found")
        try:
            # no chunk cache: every read is a whole box (see layouts.read_box), and a file of per-sample groups
            # would otherwise keep up to 1 MiB of cache per dataset (1 GB for 1000 samples)
            self._file = h5py.File(self.path, "r", rdcc_nbytes=0)
        except (OSError, ValueError) as err:
            raise DataError(f"{self.path}: not a readable HDF5 file ({err})") from None
        try:
            self._inspect()
        except BaseException:
            self.close()
            raise

    # -- metadata --------------------------------------------------------------------------------------------------

    def _inspect(self):
        f = self._file
        self.attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        self._layout = detect_layout(f, self.path)
        self.layout = self._layout.name
        info = self._layout.inspect()
        self.channel_names = info.channel_names
        raw_t, raw_grid = info.num_frames, info.grid_shape
        r, rt = self.reduced_resolution, self.reduced_resolution_t
        self.num_samples = int(info.num_samples)
        self.num_channels = int(info.num_channels)
        self.num_frames = _strided_len(raw_t, rt)
        self.grid_shape = tuple(_strided_len(n, r) for n in raw_grid)

        required = info.coords_required
        coords = [self._layout.coordinate(key, n, required) for key, n in zip(info.coord_keys, raw_grid)]
        times = self._layout.coordinate(info.time_key, raw_t, required)
        self.coords = [(c if c is not None else _burgers.periodic_grid(n))[::r] for c, n in zip(coords, raw_grid)]
        self.times = None if times is None else times[::rt]
        if isinstance(self.attrs.get("dt_save"), (int, float)):
            # Exact value from files written here (the stored float32 times would give 0.0099999998 for 0.01).
            self.dt = float(self.attrs["dt_save"]) * rt
        elif self.times is not None and self.times.size > 1:
            self.dt = float(self.times[1] - self.times[0])
        else:
            self.dt = None
        nu = self.attrs.get("Nu", self.attrs.get("nu"))
        self.nu = float(nu) if isinstance(nu, (int, float)) else None
        self.has_grid = bool(info.has_grid)
        self.points = None if info.num_points is None else PointSamples(self, int(info.num_points))

    # -- reading ---------------------------------------------------------------------------------------------------

    def _frame_slice(self, frame_slice):
        if frame_slice is None:
            frames = range(self.num_frames)
        elif isinstance(frame_slice, (int, np.integer)):
            idx = int(frame_slice)
            if not -self.num_frames <= idx < self.num_frames:
                raise IndexError(f"frame {idx} out of range for {self.num_frames} frames")
            frames = range(self.num_frames)[idx : idx + 1 if idx != -1 else None]
        elif isinstance(frame_slice, slice):
            frames = range(self.num_frames)[frame_slice]
            if frames.step < 0:
                raise ValueError("frame_slice must not have a negative step")
        else:
            raise TypeError(f"frame_slice must be None, an int or a slice, got {type(frame_slice).__name__}")
        rt = self.reduced_resolution_t
        if len(frames) == 0:
            return slice(0, 0), 0
        start = frames.start * rt
        step = frames.step * rt
        return slice(start, start + (len(frames) - 1) * step + 1, step), len(frames)

    def _sample_indices(self, sample_indices):
        if isinstance(sample_indices, slice):
            idx = np.arange(self.num_samples)[sample_indices]
        else:
            idx = np.asarray(sample_indices).reshape(-1)
            if idx.size and not np.issubdtype(idx.dtype, np.integer):
                raise TypeError(f"sample indices must be integers, got dtype {idx.dtype}")
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < -self.num_samples or idx.max() >= self.num_samples):
                raise IndexError(f"sample index out of range for {self.num_samples} samples")
            idx = np.where(idx < 0, idx + self.num_samples, idx)
        return idx

    def read(self, sample_indices, frame_slice=None):
        """Read trajectories as float32 ``(n, T, *grid, C)``, channels last, strided as configured.

        Only the requested samples and frames are read from disk. Non-finite values raise ``DataError``. (A
        ``points`` file is read here on its full-grid copy; its points are read through ``store.points``.)

        Args:
            sample_indices: int, sequence/array of ints (any order, repeats allowed) or a slice over samples.
            frame_slice: ``None`` (all frames), an int (one frame, the time axis is kept) or a slice, counted in
                frames after temporal striding.

        Returns:
            float32 array ``(n, T, *grid, C)``.

        Example:
            >>> store.read([3, 0], frame_slice=slice(0, 2)).shape  # doctest: +SKIP
            (2, 2, 256, 1)
        """
        idx, t_sel, n_t = self._selection(sample_indices, frame_slice)
        space = (slice(None, None, self.reduced_resolution),) * len(self.grid_shape)
        return self._read_samples(idx, (n_t,) + self.grid_shape + (self.num_channels,),
                                  lambda samples, block: self._layout.read_block(samples, t_sel, space, block))

    def _selection(self, sample_indices, frame_slice):
        """(sample indices, raw frame slice, number of frames) of a request; the store must be open."""
        if self._file is None:
            raise DataError(f"{self.path}: store is closed")
        return (self._sample_indices(sample_indices),) + self._frame_slice(frame_slice)

    @staticmethod
    def _read_samples(idx, shape, fill):
        """float32 ``(len(idx),) + shape``: ``fill(samples, block)`` reads each sample once, in increasing order
        (contiguous runs as single hyperslabs where the layout can); any order and repeats are served from memory."""
        out = np.empty((idx.size,) + tuple(shape), dtype=np.float32)
        if out.size == 0:
            return out
        unique, inverse = np.unique(idx, return_inverse=True)
        in_order = unique.size == idx.size and np.array_equal(unique, idx)
        block = out if in_order else np.empty((unique.size,) + out.shape[1:], dtype=np.float32)
        fill(unique, block)
        if not in_order:
            out[...] = block[inverse.reshape(-1)]
        return out

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def close(self):
        """Close the file (idempotent).

        Example:
            >>> store.close()  # doctest: +SKIP
        """
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __len__(self):
        return self.num_samples

    def __repr__(self):
        return (
            f"TrajectoryStore({self.path!r}, layout={self.layout!r}, samples={self.num_samples}, "
            f"frames={self.num_frames}, grid={self.grid_shape}, channels={self.num_channels}, dt={self.dt})"
        )


class PointSamples:
    """The scattered points of an open ``points`` file (``store.points``): fields ``(n, T, N, C)`` and positions.

    It reads as a store whose "grid" is the ``N`` points (``grid_shape == (N,)``), so that everything that reads
    ``(n, T, *grid, C)`` arrays from a store (splits, statistics, lazy views) reads the points through it. Frames are
    strided by the store's ``reduced_resolution_t``; the points are not strided.

    Attributes:
        path, num_samples, num_frames, num_channels: the store's.
        num_points: ``N``, the same for every sample.
        grid_shape: ``(N,)``.
        coord_dim: ``D``, the number of coordinates of a position.

    Example:
        >>> with open_trajectories("points.h5") as store:  # doctest: +SKIP
        ...     u = store.points.read([0, 2])            # (2, T, N, C)
        ...     x = store.points.positions([0, 2])       # (2, N, D), in [0, 1)
    """

    def __init__(self, store, num_points):
        self.store, self.path = store, store.path
        self.num_samples, self.num_frames, self.num_channels = store.num_samples, store.num_frames, store.num_channels
        self.num_points = int(num_points)
        self.grid_shape = (self.num_points,)
        self.coord_dim = len(store.grid_shape)

    def read(self, sample_indices, frame_slice=None):
        """The fields at the points, float32 ``(n, T, N, C)``; arguments as for ``TrajectoryStore.read``."""
        idx, t_sel, n_t = self.store._selection(sample_indices, frame_slice)
        return self.store._read_samples(idx, (n_t, self.num_points, self.num_channels),
                                        lambda samples, block: self.store._layout.read_points_block(samples, t_sel,
                                                                                                    block))

    def positions(self, sample_indices):
        """The positions of the points, float32 ``(n, N, D)`` in ``[0, 1)``."""
        idx = self.store._selection(sample_indices, None)[0]
        return self.store._read_samples(idx, (self.num_points, self.coord_dim), self.store._layout.read_positions)


def open_trajectories(path, reduced_resolution=1, reduced_resolution_t=1):
    """Open a trajectory file lazily; the layout is detected from its keys.

    Args:
        path: HDF5 file in one of the layouts of ``upt_keras.data.layouts``.
        reduced_resolution: spatial stride.
        reduced_resolution_t: temporal stride.

    Returns:
        a ``TrajectoryStore`` (use it as a context manager or call ``close()``).

    Raises:
        DataError: missing or unreadable file, unknown layout, missing key, ragged shapes.

    Example:
        >>> with open_trajectories("burgers.h5", reduced_resolution_t=2) as store:  # doctest: +SKIP
        ...     print(store.num_samples, store.num_frames, store.grid_shape, store.dt)
        1000 51 (256,) 0.02
    """
    return TrajectoryStore(path, reduced_resolution, reduced_resolution_t)
