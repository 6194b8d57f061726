"""The ``points`` layout: fields at scattered positions that differ per sample, one group per sample.

Per sample (``0000``, ``0001``, ...):

- ``positions`` ``(N, D)``: the sample's points, coordinates in ``[0, 1)`` (the model's coordinates), the same for every
  frame of the sample;
- ``fields`` ``(T, N, C)``: the values at those points;
- optionally ``grid`` ``(T, *grid_shape, C)``: the same trajectory on the full grid (for evaluation), in every group or
  in none.

The root attribute ``grid_shape`` (a list of ``D`` ints) is required: it is the grid a model decodes full fields on
(and the shape of ``grid``). Every sample has the same ``N``; the frame times are the optional top-level
``t-coordinate``. Groups are ordered as in the ``groups`` layout.

The layout reports the full grid as its ``grid_shape`` and reads the ``grid`` copies through ``read_block``; the
scattered points are read with ``read_points_block`` and ``read_positions`` (``TrajectoryStore.points``).

Example:
    >>> import h5py
    >>> with h5py.File("points.h5", "r") as f:  # doctest: +SKIP
    ...     PointsLayout.matches(list(f.keys()), f)
    True
"""

from __future__ import annotations

import h5py
import numpy as np

from upt_keras.data.layouts.base import Layout, LayoutInfo, read_box, top_level_coordinate_keys

__all__ = ["PointsLayout"]


class PointsLayout(Layout):
    """Reader of the ``points`` layout; one read per requested sample.

    Example:
        >>> with h5py.File("points.h5", "r") as f:  # doctest: +SKIP
        ...     info = PointsLayout(f, "points.h5").inspect()
        ...     info.grid_shape, info.num_points, info.has_grid
        ((64, 64), 1024, True)
    """

    name = "points"

    @classmethod
    def matches(cls, keys, file):
        return any(isinstance(file.get(k, getlink=False), h5py.Group) and "positions" in file[k] for k in keys)

    def inspect(self):
        grid_shape = self._grid_shape()
        groups = sorted((k for k in self.file.keys() if isinstance(self.file.get(k, getlink=False), h5py.Group)),
                        key=lambda k: (len(k), k))
        first = groups[0]
        has_grid = "grid" in self.file[first]
        shapes = {}  # expected shape per dataset name, from the first group
        self.sources = []
        for name in groups:
            keys = {"positions": f"{name}/positions", "fields": f"{name}/fields"}
            if has_grid:
                keys["grid"] = f"{name}/grid"
            elif "grid" in self.file[name]:
                raise self.error(f"a full-grid copy in some samples only ('{first}' has none)", f"{name}/grid")
            sets = {what: self.dataset(key) for what, key in keys.items()}
            if not shapes:
                shapes = self._first_shapes(sets, keys, grid_shape)
            for what, ds in sets.items():
                if ds.shape != shapes[what]:
                    source = f"'{first}/fields' and grid_shape" if what == "grid" else f"'{first}/{what}'"
                    raise self.error(f"shape {ds.shape} differs from {shapes[what]} (from {source}): every sample "
                                     "needs the same number of points and frames", keys[what])
            self.sources.append({what: (keys[what], ds) for what, ds in sets.items()})
        num_frames, num_points, num_channels = shapes["fields"]
        coord_keys, time_key = top_level_coordinate_keys(grid_shape)
        return LayoutInfo(len(groups), num_frames, grid_shape, num_channels, None, coord_keys, time_key, False,
                          num_points=num_points, has_grid=has_grid)

    def _grid_shape(self):
        value = self.file.attrs.get("grid_shape")
        if value is None:
            raise self.error("missing root attribute 'grid_shape' (the full grid, e.g. [64, 64])")
        shape = tuple(int(n) for n in np.asarray(value).reshape(-1))
        if not 1 <= len(shape) <= 3 or min(shape) < 1:
            raise self.error(f"root attribute 'grid_shape' must hold 1 to 3 positive sizes, got {list(shape)}")
        return shape

    def _first_shapes(self, sets, keys, grid_shape):
        """The shapes every sample must have, checked on the first sample."""
        pos, fields = sets["positions"].shape, sets["fields"].shape
        dims = len(grid_shape)
        if len(pos) != 2 or pos[1] != dims:
            raise self.error(f"expected (points, {dims}) for grid_shape {list(grid_shape)}, got shape {pos}",
                             keys["positions"])
        if len(fields) != 3 or fields[1] != pos[0]:
            raise self.error(f"expected (time, {pos[0]} points, channels), got shape {fields}", keys["fields"])
        shapes = {"positions": pos, "fields": fields}
        if "grid" in sets:
            shapes["grid"] = (fields[0],) + tuple(grid_shape) + (fields[2],)
        return shapes

    def read_block(self, samples, t_slice, space, out):
        if "grid" not in self.sources[0]:
            group = self.sources[int(samples[0])]["fields"][0].rsplit("/", 1)[0]
            raise self.error("the file has no full-grid copy of the samples (scattered points only)", f"{group}/grid")
        for j, s in enumerate(samples):
            key, ds = self.sources[s]["grid"]
            out[j] = self.checked(read_box(ds, (t_slice,) + space), key, [s])
        return out

    def read_points_block(self, samples, t_slice, out):
        """Fill ``out`` ``(len(samples), T, N, C)`` with the fields at the points of ``samples``; return it."""
        for j, s in enumerate(samples):
            key, ds = self.sources[s]["fields"]
            out[j] = self.checked(read_box(ds, (t_slice,)), key, [s])
        return out

    def read_positions(self, samples, out):
        """Fill ``out`` ``(len(samples), N, D)`` with the positions of ``samples``; ``DataError`` outside [0, 1)."""
        for j, s in enumerate(samples):
            key, ds = self.sources[s]["positions"]
            pos = self.checked(ds[()], key, [s])
            if pos.size and (pos.min() < 0.0 or pos.max() >= 1.0):
                raise self.error(f"positions must lie in [0, 1), found values in [{pos.min():g}, {pos.max():g}]",
                                 key)
            out[j] = pos
        return out
