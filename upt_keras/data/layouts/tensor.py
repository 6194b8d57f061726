"""The ``tensor`` layout (PDEBench 1D): one dataset ``tensor`` ``(S, T, X)`` (also ``(S, T, X, Y)``), one channel.

Coordinates ``x-coordinate`` (``y-coordinate``) and ``t-coordinate`` are required; ``t-coordinate`` may hold ``T`` or
``T + 1`` entries (PDEBench stores one more time than frames), the first ``T`` are used.

Example:
    >>> import h5py
    >>> with h5py.File("b.h5", "r") as f:  # doctest: +SKIP
    ...     TensorLayout.matches(list(f.keys()), f)
    True
"""

from __future__ import annotations

from upt_keras.data.layouts.base import ChannelArraysLayout, LayoutInfo, top_level_coordinate_keys

__all__ = ["TensorLayout"]


class TensorLayout(ChannelArraysLayout):
    """Reader of the ``tensor`` layout: a single-channel ``(S, T, *grid)`` array at key ``tensor``.

    Example:
        >>> with h5py.File("b.h5", "r") as f:  # doctest: +SKIP
        ...     TensorLayout(f, "b.h5").inspect().num_channels
        1
    """

    name = "tensor"

    @classmethod
    def matches(cls, keys, file):
        return "tensor" in keys

    def inspect(self):
        ds = self.dataset("tensor")
        if ds.ndim < 3:
            raise self.error(f"expected (samples, time, *grid), got shape {ds.shape}", "tensor")
        self.sources = [("tensor", ds)]
        grid = tuple(ds.shape[2:])
        coord_keys, time_key = top_level_coordinate_keys(grid)
        return LayoutInfo(ds.shape[0], ds.shape[1], grid, 1, None, coord_keys, time_key, True)
