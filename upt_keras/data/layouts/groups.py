"""The ``groups`` layout (PDEBench 2D): one group per sample (``0000``, ...) holding ``data`` ``(T, *grid, C)``.

Groups are ordered by name length, then name (``0000`` ... ``9999``, ``10000`` ...); every ``data`` must have the same
shape. Coordinates ``grid/x`` (``grid/y``, ``grid/z``) and ``grid/t`` of the first group are optional. Every top-level
key must be a group.

Example:
    >>> import h5py
    >>> with h5py.File("b2d.h5", "r") as f:  # doctest: +SKIP
    ...     GroupsLayout.matches(list(f.keys()), f)
    True
"""

from __future__ import annotations

import h5py

from upt_keras.data.layouts.base import AXIS_NAMES, Layout, LayoutInfo, read_box

__all__ = ["GroupsLayout"]


class GroupsLayout(Layout):
    """Reader of the ``groups`` layout; one read per requested sample.

    Example:
        >>> with h5py.File("b2d.h5", "r") as f:  # doctest: +SKIP
        ...     GroupsLayout(f, "b2d.h5").inspect().coord_keys
        ('0000/grid/x', '0000/grid/y')
    """

    name = "groups"

    @classmethod
    def matches(cls, keys, file):
        groups = [k for k in keys if isinstance(file.get(k, getlink=False), h5py.Group)]
        return bool(groups) and len(groups) == len(keys)

    def inspect(self):
        groups = sorted(self.file.keys(), key=lambda k: (len(k), k))
        shape = None
        self.sources = []
        for name in groups:
            key = f"{name}/data"
            ds = self.dataset(key)
            if shape is None:
                shape = ds.shape
                first = key
                if len(shape) < 3:
                    raise self.error(f"expected (time, *grid, channels), got shape {shape}", key)
            elif ds.shape != shape:
                raise self.error(f"shape {ds.shape} differs from '{first}' {shape} (ragged samples)", key)
            self.sources.append((key, ds))
        grid = tuple(shape[1:-1])
        coord_keys = tuple(f"{groups[0]}/grid/{axis}" for axis, _ in zip(AXIS_NAMES, grid))
        return LayoutInfo(len(groups), shape[0], grid, shape[-1], None, coord_keys, f"{groups[0]}/grid/t", False)

    def read_block(self, samples, t_slice, space, out):
        for j, s in enumerate(samples):
            key, ds = self.sources[s]
            out[j] = self.checked(read_box(ds, (t_slice,) + space), key, [s])
        return out
