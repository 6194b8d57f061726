"""The ``data`` layout (converted files): a single array ``data`` ``(S, T, *grid, C)``, channels last.

Coordinates ``x-coordinate`` (...) and ``t-coordinate`` are optional; without them the grid is uniform on ``[0, 1)``
and the frame times are unknown.

Example:
    >>> ArrayLayout.matches(["data"], None)
    True
"""

from __future__ import annotations

from upt_keras.data.layouts.base import Layout, LayoutInfo, contiguous_runs, read_box, top_level_coordinate_keys

__all__ = ["ArrayLayout"]


class ArrayLayout(Layout):
    """Reader of the ``data`` layout; each contiguous run of samples is one hyperslab read of all channels.

    Example:
        >>> with h5py.File("conv.h5", "r") as f:  # doctest: +SKIP
        ...     ArrayLayout(f, "conv.h5").inspect()[:4]
        (6, 5, (12,), 3)
    """

    name = "data"

    @classmethod
    def matches(cls, keys, file):
        return "data" in keys

    def inspect(self):
        ds = self.dataset("data")
        if ds.ndim < 4:
            raise self.error(f"expected (samples, time, *grid, channels), got shape {ds.shape}", "data")
        self.source = ("data", ds)
        grid = tuple(ds.shape[2:-1])
        coord_keys, time_key = top_level_coordinate_keys(grid)
        return LayoutInfo(ds.shape[0], ds.shape[1], grid, ds.shape[-1], None, coord_keys, time_key, False)

    def read_block(self, samples, t_slice, space, out):
        key, ds = self.source
        for rows, dst, run in contiguous_runs(samples):
            out[dst] = self.checked(read_box(ds, (rows, t_slice) + space), key, run)
        return out
