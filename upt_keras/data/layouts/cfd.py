"""The ``cfd`` layout (PDEBench CFD): arrays ``Vx``, ``Vy``, ``Vz``, ``density``, ``pressure`` ``(S, T, *grid)``.

The arrays present are stacked as channels in the order of ``CFD_KEYS`` (whatever their order in the file) and named
in ``store.channel_names``. They must all have the same shape. Coordinates ``x-coordinate`` (...) and ``t-coordinate``
are required.

Example:
    >>> CfdLayout.matches(["density", "Vx", "t-coordinate"], None)
    True
"""

from __future__ import annotations

from upt_keras.data.layouts.base import ChannelArraysLayout, LayoutInfo, top_level_coordinate_keys

__all__ = ["CFD_KEYS", "CfdLayout"]

CFD_KEYS = ("Vx", "Vy", "Vz", "density", "pressure")
"""The CFD arrays, in channel order."""


class CfdLayout(ChannelArraysLayout):
    """Reader of the ``cfd`` layout: one ``(S, T, *grid)`` array per channel, channels named after their keys.

    Example:
        >>> with h5py.File("cfd.h5", "r") as f:  # doctest: +SKIP
        ...     CfdLayout(f, "cfd.h5").inspect().channel_names
        ['Vx', 'Vy', 'density', 'pressure']
    """

    name = "cfd"

    @classmethod
    def matches(cls, keys, file):
        return any(k in keys for k in CFD_KEYS)

    def inspect(self):
        keys = list(self.file.keys())
        names = [k for k in CFD_KEYS if k in keys]
        self.sources = [(k, self.dataset(k)) for k in names]
        shape = self.sources[0][1].shape
        for key, ds in self.sources[1:]:
            if ds.shape != shape:
                raise self.error(f"shape {ds.shape} differs from '{names[0]}' {shape} (ragged data)", key)
        if len(shape) < 3:
            raise self.error(f"expected (samples, time, *grid), got shape {shape}", names[0])
        grid = tuple(shape[2:])
        coord_keys, time_key = top_level_coordinate_keys(grid)
        return LayoutInfo(shape[0], shape[1], grid, len(names), names, coord_keys, time_key, True)
