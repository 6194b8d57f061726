"""Atomic writers for trajectory files in the PDEBench HDF5 layouts ``tensor`` and ``groups``, and in ``points``.

- ``tensor`` (PDEBench 1D, 1D scalar data only): dataset ``tensor`` ``(S, T, X)``, ``x-coordinate`` ``(X,)`` and
  ``t-coordinate`` with ``T + 1`` entries (PDEBench stores one more time than frames).
- ``groups`` (PDEBench 2D, any grid, any number of channels): one group per sample (``0000``, ``0001``, ...) holding
  ``data`` ``(T, *grid, C)`` and ``grid/x`` (``grid/y``, ``grid/z``), ``grid/t``.
- ``points`` (scattered points): one group per sample holding ``positions`` ``(N, D)``, a random subset of the grid
  points drawn per sample (seeded), ``fields`` ``(T, N, C)`` there and, with ``keep_grid``, the full ``grid``
  ``(T, *grid, C)``; root attribute ``grid_shape`` and top-level ``t-coordinate`` ``(T,)``.

File attributes (e.g. ``Nu``) are written as given. Data goes to a temporary file in the destination folder
(``_temp_path``) which is renamed to its final name (``os.replace``) only once every sample was written; any exception,
``KeyboardInterrupt`` included, deletes it. A file at the destination is therefore either absent, the previous version,
or complete. Both layouts are read back by ``upt_keras.data.store.open_trajectories``.

Example:
    >>> import numpy as np
    >>> u = np.zeros((4, 11, 64), np.float32)
    >>> write_trajectories("u.h5", u, attrs={"Nu": 0.01})  # doctest: +SKIP
    'u.h5'
"""

from __future__ import annotations

import os
import secrets

import h5py
import numpy as np

from upt_keras.data import burgers as _burgers
from upt_keras.data.layouts.base import AXIS_NAMES as _AXIS_NAMES

__all__ = ["PDEBenchWriter", "write_trajectories"]


def _temp_path(path):
    """A fresh temporary name next to ``path``: hidden, unique per process and call, ending in ``.tmp``.

    Example:
        >>> os.path.basename(_temp_path("out/u.h5")).startswith(".u.h5.")
        True
    """
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{base}.{os.getpid()}-{secrets.token_hex(4)}.h5.tmp")


class PDEBenchWriter:
    """Streaming writer for trajectory files in a PDEBench layout; the file appears only when complete.

    Data goes to a temporary file next to ``path``; leaving the ``with`` block normally checks that every sample was
    written and renames the file to ``path`` (``os.replace``). Any exception (including ``KeyboardInterrupt``) deletes
    the temporary file instead, so ``path`` is either absent, the previous version, or complete.

    Args:
        path: destination file.
        layout: ``"tensor"`` (PDEBench 1D: dataset ``tensor`` ``(S, T, X)``, 1D scalar data only) or ``"groups"``
            (PDEBench 2D: ``0000/data`` ``(T, *grid, C)`` plus ``0000/grid/x``, ``grid/y``, ``grid/t``).
        num_samples: number of trajectories ``S``.
        num_frames: frames per trajectory ``T``.
        grid_shape: spatial shape, e.g. ``(256,)`` or ``(64, 64)``.
        num_channels: channels ``C`` (must be 1 for ``"tensor"``).
        coords: list of 1D coordinate arrays, one per spatial axis (default: uniform on ``[0, 1)``).
        times: ``(T,)`` frame times (default ``0, 1, ..., T-1``).
        attrs: file attributes, e.g. ``{"Nu": 0.01}``.
        num_points: ``"points"`` only: the points ``N`` kept per sample (at most the grid's).
        seed: ``"points"`` only: sample ``i``'s points are drawn by ``numpy.random.default_rng([seed, i])``.
        keep_grid: ``"points"`` only: also store every sample on the full grid (for evaluation).

    Example:
        >>> u = np.zeros((4, 11, 64), np.float32)
        >>> with PDEBenchWriter("b.h5", "tensor", 4, 11, (64,), attrs={"Nu": 0.01}) as w:
        ...     w.write(0, u[:2])
        ...     w.write(2, u[2:])
    """

    def __init__(
        self,
        path,
        layout,
        num_samples,
        num_frames,
        grid_shape,
        num_channels=1,
        coords=None,
        times=None,
        attrs=None,
        num_points=None,
        seed=0,
        keep_grid=True,
    ):
        if layout not in ("tensor", "groups", "points"):
            raise ValueError(f"layout must be 'tensor', 'groups' or 'points', got {layout!r}")
        self.path = os.fspath(path)
        self.layout = layout
        self.num_samples = int(num_samples)
        self.num_frames = int(num_frames)
        self.grid_shape = tuple(int(g) for g in grid_shape)
        self.num_channels = int(num_channels)
        if not 1 <= len(self.grid_shape) <= 3:
            raise ValueError(f"grid_shape must have 1 to 3 axes, got {self.grid_shape}")
        if layout == "tensor" and (len(self.grid_shape) != 1 or self.num_channels != 1):
            raise ValueError("layout 'tensor' holds 1D single-channel data; use layout 'groups'")
        if coords is None:
            coords = [_burgers.periodic_grid(n) for n in self.grid_shape]
        self.coords = [np.asarray(c, dtype=np.float64).reshape(-1) for c in coords]
        if [c.size for c in self.coords] != list(self.grid_shape):
            raise ValueError(f"coords sizes {[c.size for c in self.coords]} do not match grid {self.grid_shape}")
        self.times = np.arange(self.num_frames, dtype=np.float64) if times is None else np.asarray(times, np.float64)
        if self.times.shape != (self.num_frames,):
            raise ValueError(f"times must have shape ({self.num_frames},), got {self.times.shape}")
        self.attrs = dict(attrs or {})
        if layout == "points":
            size = int(np.prod(self.grid_shape))
            if num_points is None or not 1 <= int(num_points) <= size:
                raise ValueError(f"layout 'points' needs num_points in [1, {size}] (the grid's points), got "
                                 f"{num_points}")
            self.attrs["grid_shape"] = list(self.grid_shape)
        self.num_points, self.seed, self.keep_grid = num_points and int(num_points), int(seed), bool(keep_grid)
        self._written = np.zeros(self.num_samples, dtype=bool)
        self._tmp = _temp_path(self.path)
        self._file = None
        self._open()

    def _open(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            self._file = h5py.File(self._tmp, "w")
            f = self._file
            for key, value in self.attrs.items():
                f.attrs[key] = value
            if self.layout == "tensor":
                shape = (self.num_samples, self.num_frames) + self.grid_shape
                f.create_dataset("tensor", shape=shape, dtype="f4", chunks=(1,) + shape[1:])
                f.create_dataset("x-coordinate", data=self.coords[0].astype(np.float32))
                # PDEBench stores one more time than frames; keep that layout for compatibility.
                step = self.times[-1] - self.times[-2] if self.num_frames > 1 else 1.0
                t_extra = np.append(self.times, self.times[-1] + step) if self.num_frames else self.times
                f.create_dataset("t-coordinate", data=t_extra.astype(np.float32))
            elif self.layout == "points":
                f.create_dataset("t-coordinate", data=self.times.astype(np.float32))
        except BaseException:
            self.abort()
            raise

    def write(self, start, batch):
        """Write samples ``start, start + 1, ...``.

        Args:
            start: index of the first sample of ``batch``.
            batch: array ``(n, T, *grid, C)``; for ``"tensor"`` also ``(n, T, X)``.

        Example:
            >>> writer.write(0, np.zeros((2, 11, 64, 1), np.float32))  # doctest: +SKIP
        """
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        try:
            batch = np.asarray(batch)
            full = (self.num_frames,) + self.grid_shape + (self.num_channels,)
            if self.layout == "tensor" and batch.shape[1:] == full[:-1]:
                batch = batch[..., None]
            if batch.shape[1:] != full:
                raise ValueError(f"batch shape {batch.shape} does not match (n,) + {full}")
            start = int(start)
            stop = start + batch.shape[0]
            if start < 0 or stop > self.num_samples:
                raise ValueError(f"samples {start}..{stop - 1} outside 0..{self.num_samples - 1}")
            if not np.all(np.isfinite(batch)):
                raise ValueError(f"{self.path}: refusing to write non-finite values (samples {start}..{stop - 1})")
            batch = batch.astype(np.float32, copy=False)
            f = self._file
            if self.layout == "tensor":
                f["tensor"][start:stop] = batch[..., 0]
            elif self.layout == "points":
                for j in range(batch.shape[0]):
                    self._write_points(start + j, batch[j])
            else:
                for j in range(batch.shape[0]):
                    name = f"{start + j:04d}"
                    if name in f:
                        del f[name]
                    group = f.create_group(name)
                    group.create_dataset("data", data=batch[j])
                    grid = group.create_group("grid")
                    for axis, c in zip(_AXIS_NAMES, self.coords):
                        grid.create_dataset(axis, data=c.astype(np.float32))
                    grid.create_dataset("t", data=self.times.astype(np.float32))
            self._written[start:stop] = True
        except BaseException:
            self.abort()
            raise

    def _write_points(self, index, trajectory):
        """Sample ``index`` (a ``(T, *grid, C)`` trajectory) as its own random subset of the grid points."""
        name = f"{index:04d}"
        if name in self._file:
            del self._file[name]
        rng = np.random.default_rng([self.seed, int(index)])
        chosen = rng.permutation(int(np.prod(self.grid_shape)))[: self.num_points]  # a random subset, random order
        flat = trajectory.reshape(self.num_frames, -1, self.num_channels)
        group = self._file.create_group(name)
        # grid point i of n at i / n per axis, as the model's coordinates
        positions = np.stack(np.unravel_index(chosen, self.grid_shape), axis=-1) / np.asarray(self.grid_shape)
        group.create_dataset("positions", data=positions.astype(np.float32))
        group.create_dataset("fields", data=flat[:, chosen])
        if self.keep_grid:
            group.create_dataset("grid", data=trajectory)

    def close(self):
        """Finish: check that every sample was written, close and rename to the final path.

        Example:
            >>> writer.close()  # doctest: +SKIP
        """
        if self._file is None:
            return
        missing = np.flatnonzero(~self._written)
        if missing.size:
            self.abort()
            raise ValueError(f"{self.path}: {missing.size} samples were never written (first: {missing[0]})")
        try:
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self):
        """Discard the temporary file; ``path`` is left untouched.

        Example:
            >>> writer.abort()  # doctest: +SKIP
        """
        if self._file is not None:
            try:
                self._file.close()
            except Exception:
                pass
            self._file = None
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_trajectories(path, data, layout=None, coords=None, times=None, attrs=None):
    """Write an in-memory set of trajectories atomically in a PDEBench layout.

    Args:
        path: destination file.
        data: array ``(S, T, *grid, C)`` (or ``(S, T, X)`` for 1D scalar data).
        layout: ``"tensor"`` or ``"groups"``; default ``"tensor"`` for 1D single-channel data, else ``"groups"``.
        coords: list of 1D coordinate arrays per spatial axis (default uniform on ``[0, 1)``).
        times: ``(T,)`` frame times.
        attrs: file attributes (e.g. ``{"Nu": 0.01}``).

    Returns:
        ``path``.

    Example:
        >>> u = np.random.default_rng(0).normal(size=(8, 5, 32)).astype("float32")
        >>> write_trajectories("u.h5", u, times=np.linspace(0, 0.4, 5), attrs={"Nu": 0.01})
        'u.h5'
    """
    data = np.asarray(data)
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim < 4:
        raise ValueError(f"data must have shape (S, T, *grid, C), got {data.shape}")
    grid = data.shape[2:-1]
    if layout is None:
        layout = "tensor" if (len(grid) == 1 and data.shape[-1] == 1) else "groups"
    with PDEBenchWriter(path, layout, data.shape[0], data.shape[1], grid, data.shape[-1], coords, times, attrs) as w:
        w.write(0, data)
    return path
