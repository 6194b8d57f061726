"""Trajectory files in the PDEBench HDF5 layouts: atomic writers, a Burgers dataset generator and a lazy reader.

Layouts read (all recognised automatically by ``open_trajectories``):

- ``tensor``: PDEBench 1D, dataset ``tensor`` ``(S, T, X)`` (also ``(S, T, X, Y)``), ``x-coordinate``
  (``y-coordinate``), ``t-coordinate`` with ``T`` or ``T + 1`` entries (PDEBench stores one more time than frames),
  attribute ``Nu``.
- ``groups``: PDEBench 2D, one group per sample (``0000``, ``0001``, ...) holding ``data`` ``(T, X, Y, C)`` and
  optionally ``grid/x``, ``grid/y``, ``grid/t``.
- ``cfd``: top-level arrays ``Vx``, ``Vy``, ``Vz``, ``density``, ``pressure`` ``(S, T, *grid)``, stacked as channels in
  that order (only those present), with ``x-coordinate`` (...) and ``t-coordinate``.
- ``data``: a converted single array ``data`` ``(S, T, *grid, C)``; coordinates optional.

Layouts written: ``tensor`` (1D scalar data) and ``groups`` (any grid, any number of channels). Files are written under
a temporary name in the destination folder and renamed when complete, so a crash never leaves a file that looks
finished.

The reader keeps the file open and reads only the requested samples and frames (h5py slicing); opening an 8 GB file
costs the same as opening a small one. Any problem with a file raises ``DataError`` naming the file and the key.
"""

from __future__ import annotations

import os
import secrets
import sys
import time

import h5py
import numpy as np

from upt_keras.data import burgers as _burgers

__all__ = [
    "DataError",
    "PDEBenchWriter",
    "write_trajectories",
    "generate_burgers_dataset",
    "TrajectoryStore",
    "open_trajectories",
]

_CFD_KEYS = ("Vx", "Vy", "Vz", "density", "pressure")
_AXIS_NAMES = ("x", "y", "z")


class DataError(ValueError):
    """A trajectory file is missing, unreadable, of unknown layout, inconsistent, or holds non-finite values.

    The message always names the file and, where one is involved, the HDF5 key.

    Example:
        >>> try:
        ...     open_trajectories("no/such/file.h5")
        ... except DataError as err:
        ...     print(err)
        no/such/file.h5: file not found
    """


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------


def _temp_path(path):
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
    ):
        if layout not in ("tensor", "groups"):
            raise ValueError(f"layout must be 'tensor' or 'groups', got {layout!r}")
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


class _Progress:
    """A minimal text progress bar on stderr (keeps the data package free of framework imports)."""

    def __init__(self, total, label, enabled):
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = enabled
        self.start = time.perf_counter()

    def update(self, done):
        if not self.enabled:
            return
        frac = min(done / self.total, 1.0)
        bar = "=" * int(30 * frac)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        end = "\n" if done >= self.total else ""
        sys.stderr.write(
            f"\r{self.label} [{bar:<30}] {done}/{self.total}  {elapsed:5.1f}s elapsed, ~{eta:5.1f}s left{end}"
        )
        sys.stderr.flush()


def generate_burgers_dataset(
    path,
    dim=1,
    num_samples=1000,
    resolution=256,
    nu=0.01,
    t_end=1.0,
    dt_save=0.01,
    ic="grf",
    seed=0,
    batch=64,
    progress=True,
    equation="scalar",
    solver_resolution=None,
    dt=None,
    length=1.0,
    amplitude=1.0,
    ic_options=None,
    layout=None,
):
    """Generate Burgers trajectories with ``solve_burgers`` and write them atomically in a PDEBench layout.

    Each sample's initial condition comes from its own generator (``SeedSequence(seed).spawn``) and the internal step
    is fixed for the whole run, so sample ``i`` is the same whatever ``batch`` or ``num_samples`` is. With
    ``solver_resolution`` a multiple of ``resolution`` the equation is solved on the finer grid and every
    ``solver_resolution // resolution``-th point is stored (exact pointwise subsampling, useful for sharp fronts).

    Args:
        path: destination file.
        dim: 1 or 2.
        num_samples: number of trajectories.
        resolution: stored points per direction.
        nu: viscosity (stored as attribute ``Nu``; here it multiplies ``u_xx`` directly, no ``1/pi`` as in PDEBench).
        t_end: final time (multiple of ``dt_save``); frames ``t_end / dt_save + 1``.
        dt_save: time between stored frames.
        ic: ``"grf"`` (``gaussian_random_field``) or ``"sinusoid"`` (``sinusoid_initial_condition``).
        seed: integer seed.
        batch: trajectories solved together.
        progress: show a progress bar on stderr.
        equation: ``"scalar"`` or, in 2D, ``"vector"`` (two velocity channels).
        solver_resolution: grid for the solver (default ``resolution``).
        dt: largest internal time step (default: ``stable_time_step`` for the largest possible initial peak, the
            same for every batch).
        length: domain length.
        amplitude: initial amplitude: float or ``(low, high)`` range for ``"grf"``; float factor for ``"sinusoid"``.
        ic_options: extra keyword arguments for the initial-condition function (e.g. ``{"alpha": 2.0, "tau": 5.0}``).
        layout: ``"tensor"`` or ``"groups"``; default ``"tensor"`` for 1D, ``"groups"`` for 2D.

    Returns:
        ``path``.

    Example:
        >>> generate_burgers_dataset("burgers.h5", num_samples=32, resolution=256, t_end=0.4, progress=False)
        'burgers.h5'
    """
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim}")
    if equation == "vector" and dim != 2:
        raise ValueError("equation='vector' needs dim=2")
    if ic not in ("grf", "sinusoid"):
        raise ValueError(f"ic must be 'grf' or 'sinusoid', got {ic!r}")
    solver_resolution = int(solver_resolution or resolution)
    if solver_resolution % int(resolution):
        raise ValueError(f"solver_resolution {solver_resolution} is not a multiple of resolution {resolution}")
    stride = solver_resolution // int(resolution)
    n_save, dt_save = _burgers._check_times(t_end, dt_save)
    channels = 2 if equation == "vector" else None
    num_channels = channels or 1
    grid = (int(resolution),) * dim
    coords = [_burgers.periodic_grid(solver_resolution, length)[::stride]] * dim
    times = np.arange(n_save + 1) * dt_save
    if layout is None:
        layout = "tensor" if dim == 1 else "groups"
    attrs = {
        "Nu": float(nu),
        "equation": _EQUATION_TEXT[(dim, equation)],
        "ic": ic,
        "seed": int(seed),
        "dt_save": float(dt_save),
        "length": float(length),
        "solver_resolution": solver_resolution,
    }
    options = dict(ic_options or {})
    if dt is None:
        # One step for the whole run, from a bound on the initial peak, so that a sample's trajectory does not depend
        # on which other samples share its batch.
        bound = _peak_bound(ic, amplitude, options)
        if bound is not None:
            dt = _burgers.stable_time_step(bound, nu, solver_resolution, length, dim=dim)
    seeds = np.random.SeedSequence(int(seed)).spawn(int(num_samples))
    bar = _Progress(num_samples, "Burgers", progress)
    bar.update(0)
    space = (slice(None),) + (slice(None, None, stride),) * dim

    with PDEBenchWriter(path, layout, num_samples, n_save + 1, grid, num_channels, coords, times, attrs) as writer:
        for start in range(0, int(num_samples), int(batch)):
            stop = min(start + int(batch), int(num_samples))
            u0 = np.concatenate([_initial_condition(ic, s, solver_resolution, dim, channels, length, amplitude,
                                                    options) for s in seeds[start:stop]])
            u = _burgers.solve_burgers(u0, nu, t_end, dt_save, dt=dt, length=length, equation=equation)
            u = u[(slice(None),) + space]
            writer.write(start, u if channels else u[..., None])
            bar.update(stop)
    return path


_EQUATION_TEXT = {
    (1, "scalar"): "u_t + (u^2/2)_x = Nu u_xx",
    (2, "scalar"): "u_t + (u^2/2)_x + (u^2/2)_y = Nu (u_xx + u_yy)",
    (2, "vector"): "u_t + u u_x + v u_y = Nu Lap u; v_t + u v_x + v v_y = Nu Lap v",
}


def _peak_bound(ic, amplitude, options):
    """Upper bound of max |u0| over all samples, or None when the initial condition is not normalised."""
    if amplitude is None:
        return None
    peak = float(np.max(amplitude))
    if ic == "sinusoid":
        peak *= int(options.get("num_waves", 2))
    return peak


def _initial_condition(ic, seed_seq, resolution, dim, channels, length, amplitude, options):
    rng = np.random.default_rng(seed_seq)
    if ic == "grf":
        return _burgers.gaussian_random_field(
            rng, 1, resolution, dim=dim, channels=channels, amplitude=amplitude, length=length, **options
        )
    return _burgers.sinusoid_initial_condition(
        rng, 1, resolution, dim=dim, channels=channels, amplitude=amplitude, length=length, **options
    )


# --------------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------------


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
        layout: ``"tensor"``, ``"groups"``, ``"cfd"`` or ``"data"``.
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
            self._file = h5py.File(self.path, "r")
        except (OSError, ValueError) as err:
            raise DataError(f"{self.path}: not a readable HDF5 file ({err})") from None
        try:
            self._inspect()
        except BaseException:
            self.close()
            raise

    # -- metadata --------------------------------------------------------------------------------------------------

    def _error(self, message, key=None):
        where = f" (key '{key}')" if key is not None else ""
        return DataError(f"{self.path}{where}: {message}")

    def _dataset(self, key):
        obj = self._file.get(key)
        if obj is None:
            raise self._error("missing key", key)
        if not isinstance(obj, h5py.Dataset):
            raise self._error("expected a dataset, found a group", key)
        return obj

    def _coordinate(self, key, size, required):
        if key not in self._file:
            if required:
                raise self._error("missing key", key)
            return None
        values = np.asarray(self._dataset(key)[()], dtype=np.float64).reshape(-1)
        if values.size < size:
            raise self._error(f"has {values.size} entries, the data needs {size}", key)
        return values[:size]

    def _inspect(self):
        f = self._file
        self.attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        keys = list(f.keys())
        self.channel_names = None
        if "tensor" in keys:
            self.layout = "tensor"
            ds = self._dataset("tensor")
            if ds.ndim < 3:
                raise self._error(f"expected (samples, time, *grid), got shape {ds.shape}", "tensor")
            self._sources = [("tensor", ds)]
            shape = ds.shape
            self._raw = (shape[0], shape[1], tuple(shape[2:]), 1)
            coords_required = True
        elif any(k in keys for k in _CFD_KEYS):
            self.layout = "cfd"
            names = [k for k in _CFD_KEYS if k in keys]
            self._sources = [(k, self._dataset(k)) for k in names]
            shape = self._sources[0][1].shape
            for key, ds in self._sources[1:]:
                if ds.shape != shape:
                    raise self._error(f"shape {ds.shape} differs from '{names[0]}' {shape} (ragged data)", key)
            if len(shape) < 3:
                raise self._error(f"expected (samples, time, *grid), got shape {shape}", names[0])
            self.channel_names = names
            self._raw = (shape[0], shape[1], tuple(shape[2:]), len(names))
            coords_required = True
        elif "data" in keys:
            self.layout = "data"
            ds = self._dataset("data")
            if ds.ndim < 4:
                raise self._error(f"expected (samples, time, *grid, channels), got shape {ds.shape}", "data")
            self._sources = [("data", ds)]
            self._raw = (ds.shape[0], ds.shape[1], tuple(ds.shape[2:-1]), ds.shape[-1])
            coords_required = False
        else:
            groups = [k for k in keys if isinstance(f.get(k, getlink=False), h5py.Group)]
            if not groups or len(groups) != len(keys):
                raise self._error(
                    f"unknown layout: top-level keys {sorted(keys)[:10]}; expected 'tensor', 'data', CFD arrays "
                    f"{list(_CFD_KEYS)} or per-sample groups holding 'data'"
                )
            self.layout = "groups"
            groups.sort(key=lambda k: (len(k), k))
            self._groups = groups
            shape = None
            self._sources = []
            for name in groups:
                key = f"{name}/data"
                ds = self._dataset(key)
                if shape is None:
                    shape = ds.shape
                    first = key
                    if len(shape) < 3:
                        raise self._error(f"expected (time, *grid, channels), got shape {shape}", key)
                elif ds.shape != shape:
                    raise self._error(f"shape {ds.shape} differs from '{first}' {shape} (ragged samples)", key)
                self._sources.append((key, ds))
            self._raw = (len(groups), shape[0], tuple(shape[1:-1]), shape[-1])
            coords_required = False

        num_samples, raw_t, raw_grid, num_channels = self._raw
        r, rt = self.reduced_resolution, self.reduced_resolution_t
        self.num_samples = int(num_samples)
        self.num_channels = int(num_channels)
        self.num_frames = _strided_len(raw_t, rt)
        self.grid_shape = tuple(_strided_len(n, r) for n in raw_grid)

        coords, times = [], None
        if self.layout == "groups":
            first = self._groups[0]
            for axis, n in zip(_AXIS_NAMES, raw_grid):
                coords.append(self._coordinate(f"{first}/grid/{axis}", n, False))
            times = self._coordinate(f"{first}/grid/t", raw_t, False)
        else:
            for axis, n in zip(_AXIS_NAMES, raw_grid):
                coords.append(self._coordinate(f"{axis}-coordinate", n, coords_required))
            times = self._coordinate("t-coordinate", raw_t, coords_required)
        self.coords = [
            (c if c is not None else _burgers.periodic_grid(n))[::r] for c, n in zip(coords, raw_grid)
        ]
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

        Only the requested samples and frames are read from disk. Non-finite values raise ``DataError``.

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
        if self._file is None:
            raise DataError(f"{self.path}: store is closed")
        idx = self._sample_indices(sample_indices)
        t_sel, n_t = self._frame_slice(frame_slice)
        out = np.empty((idx.size, n_t) + self.grid_shape + (self.num_channels,), dtype=np.float32)
        if idx.size == 0 or n_t == 0:
            return out
        space = (slice(None, None, self.reduced_resolution),) * len(self.grid_shape)
        unique, inverse = np.unique(idx, return_inverse=True)
        in_order = unique.size == idx.size and np.array_equal(unique, idx)
        block = out if in_order else np.empty((unique.size,) + out.shape[1:], dtype=np.float32)
        if self.layout == "groups":
            for j, s in enumerate(unique):
                key, ds = self._sources[s]
                block[j] = self._checked(ds[(t_sel,) + space + (slice(None),)], key, [s])
        else:
            # Contiguous runs of sample indices become single hyperslab reads.
            breaks = np.flatnonzero(np.diff(unique) != 1) + 1
            pos = 0
            for run in np.split(unique, breaks):
                rows = slice(int(run[0]), int(run[-1]) + 1)
                dst = slice(pos, pos + run.size)
                if self.layout == "data":
                    key, ds = self._sources[0]
                    block[dst] = self._checked(ds[(rows, t_sel) + space + (slice(None),)], key, run)
                else:
                    for c, (key, ds) in enumerate(self._sources):
                        block[dst, ..., c] = self._checked(ds[(rows, t_sel) + space], key, run)
                pos += run.size
        if not in_order:
            out[...] = block[inverse.reshape(-1)]
        return out

    def _checked(self, array, key, samples):
        array = np.asarray(array, dtype=np.float32)
        finite = np.isfinite(array)
        if not finite.all():
            if array.ndim and len(samples) == array.shape[0] and len(samples) > 1:
                bad = samples[int(np.flatnonzero(~finite.reshape(array.shape[0], -1).all(axis=1))[0])]
            else:
                bad = samples[0]
            raise self._error(f"non-finite values (NaN or inf) in sample {int(bad)}", key)
        return array

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


def open_trajectories(path, reduced_resolution=1, reduced_resolution_t=1):
    """Open a trajectory file lazily; the layout is detected from its keys.

    Args:
        path: HDF5 file in one of the layouts of this module.
        reduced_resolution: spatial stride.
        reduced_resolution_t: temporal stride.

    Returns:
        a ``TrajectoryStore`` (use it as a context manager or call ``close()``).

    Raises:
        DataError: missing or unreadable file, unknown layout, missing key, ragged shapes.

    Example:
        >>> with open_trajectories("burgers.h5", reduced_resolution_t=2) as store:
        ...     print(store.num_samples, store.num_frames, store.grid_shape, store.dt)
    """
    return TrajectoryStore(path, reduced_resolution, reduced_resolution_t)
