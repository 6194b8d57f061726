"""The protocol every HDF5 trajectory layout implements, and the helpers the layouts share.

A layout class reads one way of storing trajectories in an HDF5 file. ``TrajectoryStore`` knows nothing about keys or
shapes; it asks the layout classes, in the order of ``upt_keras.data.layouts.LAYOUTS``, which one ``matches`` the
file, then talks to that one only:

- ``name`` (class attribute): the string the store reports as ``store.layout``.
- ``matches(keys, file)`` (classmethod): whether the file's top-level ``keys`` (a list) are this layout. Only cheap
  checks of keys and object types; no data is read.
- ``Layout(file, path)``: the open ``h5py.File`` and its path (for messages).
- ``inspect()``: validates the keys and shapes it needs (raising ``DataError`` through ``self.error``) and returns a
  ``LayoutInfo``: raw ``num_samples``, ``num_frames`` and ``grid_shape`` (before any striding), ``num_channels``,
  ``channel_names`` (or ``None``), the coordinate key of every spatial axis and of time, and whether those coordinates
  are required (the ``points`` layout also reports ``num_points`` and ``has_grid``). Called once, before any
  ``read_block``; it may keep ``h5py.Dataset`` handles, never their data.
- ``read_block(samples, t_slice, space, out)``: fills ``out`` (float32 ``(len(samples), T, *grid, C)``) with the
  given samples (sorted, unique ints), frames ``t_slice`` (a slice over raw frames) and points ``space`` (one slice per
  spatial axis); every array read goes through ``self.checked`` so that a non-finite value raises ``DataError``
  naming the sample and the key. Returns ``out``.

Strided selections (``reduced_resolution``, ``reduced_resolution_t``) are read with ``read_box``: the smallest box
that holds the selection is read in whole, in blocks of at most ``READ_BLOCK_BYTES`` along its first axis, and strided
in memory, so that memory stays bounded by one block and the file is read sequentially. The trade is measured in
``benchmarks/results/results_data_full.md``: the box reads every frame, so from a cold page cache it can be slower
than an HDF5 strided hyperslab (2x on the 1D file there) and from a warm one it is faster (7x).

``ChannelArraysLayout`` implements ``read_block`` for layouts whose channels are separate ``(S, T, *grid)`` arrays,
reading each contiguous run of sample indices (``contiguous_runs``) as one hyperslab.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import h5py
import numpy as np

from upt_keras.data.errors import file_error

__all__ = [
    "AXIS_NAMES",
    "READ_BLOCK_BYTES",
    "ChannelArraysLayout",
    "Layout",
    "LayoutInfo",
    "contiguous_runs",
    "top_level_coordinate_keys",
]

AXIS_NAMES = ("x", "y", "z")
"""Names of the spatial axes, in order, as used in coordinate keys (``x-coordinate``, ``grid/y``, ...)."""

READ_BLOCK_BYTES = 64 * 2**20
"""The most bytes ``read_box`` reads from a file at once (before striding in memory)."""


def read_box(ds, selection, block_bytes=None):
    """``ds[selection]`` for a tuple of slices over the leading axes (the others whole), read as unstrided boxes.

    The box from each slice's first to last selected index is read in blocks of at most ``block_bytes`` (whole rows
    along the first axis; one row when a row is larger) and strided in memory, so that the file is read sequentially
    and at most one block beyond the result is held.

    Args:
        ds: an ``h5py.Dataset`` (or anything with ``shape``, ``dtype`` and slicing).
        selection: slices (steps >= 1), one per leading axis.
        block_bytes: the most bytes read at once (default ``READ_BLOCK_BYTES``).

    Returns:
        the selected array, in the dataset's dtype.

    Example:
        >>> a = np.arange(60).reshape(3, 4, 5)
        >>> np.array_equal(read_box(a, (slice(0, 3), slice(0, 4, 2)), block_bytes=40), a[0:3, 0:4:2])
        True
    """
    block_bytes = READ_BLOCK_BYTES if block_bytes is None else block_bytes
    box, strides, counts = [], [], []
    for sl, n in zip(selection, ds.shape):
        start, stop, step = sl.indices(n)
        count = len(range(start, stop, step))
        box.append(slice(start, start + max(count - 1, 0) * step + 1))
        strides.append(slice(None, None, step))
        counts.append(count)
    rest = tuple(ds.shape[len(box):])
    out = np.empty(tuple(counts) + rest, dtype=ds.dtype)
    if out.size == 0:
        return out
    row_bytes = int(np.prod([b.stop - b.start for b in box[1:]] + list(rest), dtype=np.int64)) * ds.dtype.itemsize
    step0 = strides[0].step
    rows_per_block = max(1, int(block_bytes // max(row_bytes, 1)) // step0) * step0  # a multiple of the stride
    first, last = box[0].start, box[0].stop
    pos = 0
    for lo in range(first, last, rows_per_block):
        raw = ds[(slice(lo, min(lo + rows_per_block, last)),) + tuple(box[1:])]
        part = raw[tuple(strides)]
        out[pos : pos + part.shape[0]] = part
        pos += part.shape[0]
    return out


class LayoutInfo(NamedTuple):
    """What ``Layout.inspect`` reports about a file; sizes are raw (before the store's striding).

    Example:
        >>> info = LayoutInfo(4, 11, (64,), 1, None, ("x-coordinate",), "t-coordinate", True)
        >>> info.grid_shape, info.coords_required
        ((64,), True)
    """

    num_samples: int
    num_frames: int
    grid_shape: tuple
    num_channels: int
    channel_names: Optional[list]
    coord_keys: tuple
    time_key: str
    coords_required: bool
    num_points: Optional[int] = None  # scattered points per sample (the ``points`` layout), else None
    has_grid: bool = True  # whether ``read_block`` can read the samples on the full grid


def contiguous_runs(samples):
    """Split sorted, unique sample indices into runs of consecutive indices.

    Args:
        samples: sorted 1D integer array without repeats.

    Yields:
        ``(rows, dst, run)``: the run as a slice over the file's samples, the matching slice over positions in
        ``samples``, and the run's indices (for messages).

    Example:
        >>> [(rows, dst) for rows, dst, _ in contiguous_runs(np.array([2, 3, 4, 9]))]
        [(slice(2, 5, None), slice(0, 3, None)), (slice(9, 10, None), slice(3, 4, None))]
    """
    breaks = np.flatnonzero(np.diff(samples) != 1) + 1
    pos = 0
    for run in np.split(samples, breaks):
        yield slice(int(run[0]), int(run[-1]) + 1), slice(pos, pos + run.size), run
        pos += run.size


class Layout:
    """Base class of the layouts: the protocol (see the module docstring) and checked access to the file.

    Args:
        file: the open ``h5py.File``.
        path: its path, for messages.

    Example:
        >>> import h5py
        >>> from upt_keras.data.layouts import detect_layout
        >>> with h5py.File("u.h5", "r") as f:  # doctest: +SKIP
        ...     layout = detect_layout(f, "u.h5")
        ...     info = layout.inspect()
        ...     out = np.empty((1, info.num_frames) + info.grid_shape + (info.num_channels,), np.float32)
        ...     layout.read_block(np.array([0]), slice(None), (slice(None),) * len(info.grid_shape), out)
    """

    name = None

    def __init__(self, file, path):
        self.file = file
        self.path = path

    @classmethod
    def matches(cls, keys, file):
        """Whether a file with top-level ``keys`` (a list) is in this layout; reads no data."""
        raise NotImplementedError

    def inspect(self):
        """Validate the file and return its ``LayoutInfo``; raises ``DataError`` naming the key at fault."""
        raise NotImplementedError

    def read_block(self, samples, t_slice, space, out):
        """Fill ``out`` with samples ``samples`` (sorted, unique), frames ``t_slice``, points ``space``; return it."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------------------------

    def error(self, message, key=None):
        """A ``DataError`` naming this file and ``key`` (to be raised)."""
        return file_error(self.path, message, key)

    def dataset(self, key):
        """The dataset at ``key``; ``DataError`` if it is missing or a group."""
        obj = self.file.get(key)
        if obj is None:
            raise self.error("missing key", key)
        if not isinstance(obj, h5py.Dataset):
            raise self.error("expected a dataset, found a group", key)
        return obj

    def coordinate(self, key, size, required):
        """The first ``size`` entries of the 1D coordinate at ``key`` as float64, or ``None`` if absent and optional.

        Example:
            >>> layout.coordinate("x-coordinate", 256, required=True).shape  # doctest: +SKIP
            (256,)
        """
        if key not in self.file:
            if required:
                raise self.error("missing key", key)
            return None
        values = np.asarray(self.dataset(key)[()], dtype=np.float64).reshape(-1)
        if values.size < size:
            raise self.error(f"has {values.size} entries, the data needs {size}", key)
        return values[:size]

    def checked(self, array, key, samples):
        """``array`` as float32; ``DataError`` naming ``key`` and the first of ``samples`` holding a non-finite value.

        ``samples`` are the indices of the rows of ``array`` (a single index for a read of one sample).
        """
        array = np.asarray(array, dtype=np.float32)
        finite = np.isfinite(array)
        if not finite.all():
            if array.ndim and len(samples) == array.shape[0] and len(samples) > 1:
                bad = samples[int(np.flatnonzero(~finite.reshape(array.shape[0], -1).all(axis=1))[0])]
            else:
                bad = samples[0]
            raise self.error(f"non-finite values (NaN or inf) in sample {int(bad)}", key)
        return array


class ChannelArraysLayout(Layout):
    """A layout whose channels are separate top-level arrays ``(S, T, *grid)``, listed by ``inspect`` in ``sources``.

    ``read_block`` reads each contiguous run of samples of each array as one hyperslab into channel ``c`` of ``out``.
    Subclasses set ``self.sources`` (a list of ``(key, h5py.Dataset)``, one per channel) in ``inspect``.
    """

    sources = ()

    def read_block(self, samples, t_slice, space, out):
        """Fill ``out[..., c]`` from ``sources[c]``, one read per contiguous run of samples; return ``out``."""
        for rows, dst, run in contiguous_runs(samples):
            for c, (key, ds) in enumerate(self.sources):
                out[dst, ..., c] = self.checked(read_box(ds, (rows, t_slice) + space), key, run)
        return out


def top_level_coordinate_keys(grid_shape):
    """PDEBench top-level coordinate keys: ``x-coordinate`` (``y-``, ``z-``) per spatial axis, and ``t-coordinate``.

    Example:
        >>> top_level_coordinate_keys((64, 32))
        (('x-coordinate', 'y-coordinate'), 't-coordinate')
    """
    return tuple(f"{axis}-coordinate" for axis, _ in zip(AXIS_NAMES, grid_shape)), "t-coordinate"
