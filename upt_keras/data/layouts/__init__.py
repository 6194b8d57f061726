"""HDF5 trajectory layouts: one small reader class per way of storing trajectories, and layout detection.

Layouts read (``store.layout`` reports the name):

- ``tensor`` (``TensorLayout``): PDEBench 1D, dataset ``tensor`` ``(S, T, X)`` (also ``(S, T, X, Y)``),
  ``x-coordinate`` (``y-coordinate``), ``t-coordinate`` with ``T`` or ``T + 1`` entries, attribute ``Nu``.
- ``cfd`` (``CfdLayout``): top-level arrays ``Vx``, ``Vy``, ``Vz``, ``density``, ``pressure`` ``(S, T, *grid)``,
  stacked as channels in that order (only those present), with ``x-coordinate`` (...) and ``t-coordinate``.
- ``data`` (``ArrayLayout``): a converted single array ``data`` ``(S, T, *grid, C)``; coordinates optional.
- ``points`` (``PointsLayout``): scattered points, one group per sample holding ``positions`` ``(N, D)`` and
  ``fields`` ``(T, N, C)`` (optionally ``grid`` ``(T, *grid, C)``), root attribute ``grid_shape``.
- ``groups`` (``GroupsLayout``): PDEBench 2D, one group per sample (``0000``, ``0001``, ...) holding ``data``
  ``(T, *grid, C)`` and optionally ``grid/x``, ``grid/y``, ``grid/t``.

``detect_layout`` tries the classes of ``LAYOUTS`` in order (``tensor``, ``cfd``, ``data``, ``points``, ``groups``) and returns
the first whose ``matches`` accepts the file's top-level keys. The protocol a layout class implements is written down
in ``upt_keras.data.layouts.base``. To add a layout: subclass ``Layout`` (or ``ChannelArraysLayout``) in a new module
of this package, implement ``name``, ``matches``, ``inspect`` and ``read_block``, and insert the class into
``LAYOUTS`` before any layout whose ``matches`` would also accept its files.

Example:
    >>> import h5py
    >>> with h5py.File("burgers.h5", "r") as f:  # doctest: +SKIP
    ...     detect_layout(f, "burgers.h5").name
    'tensor'
"""

from __future__ import annotations

from upt_keras.data.errors import file_error
from upt_keras.data.layouts.array import ArrayLayout
from upt_keras.data.layouts.base import AXIS_NAMES, READ_BLOCK_BYTES, ChannelArraysLayout, Layout, LayoutInfo, read_box
from upt_keras.data.layouts.cfd import CFD_KEYS, CfdLayout
from upt_keras.data.layouts.groups import GroupsLayout
from upt_keras.data.layouts.points import PointsLayout
from upt_keras.data.layouts.tensor import TensorLayout

__all__ = [
    "AXIS_NAMES",
    "ArrayLayout",
    "CFD_KEYS",
    "CfdLayout",
    "ChannelArraysLayout",
    "GroupsLayout",
    "LAYOUTS",
    "Layout",
    "LayoutInfo",
    "READ_BLOCK_BYTES",
    "PointsLayout",
    "TensorLayout",
    "detect_layout",
    "read_box",
]

LAYOUTS = (TensorLayout, CfdLayout, ArrayLayout, PointsLayout, GroupsLayout)
"""Layout classes in detection order: the first whose ``matches`` accepts a file reads it."""


def detect_layout(file, path):
    """The layout reader for an open HDF5 file: an instance of the first class of ``LAYOUTS`` that matches.

    Args:
        file: the open ``h5py.File``.
        path: its path, for messages.

    Returns:
        a ``Layout`` instance (call ``inspect()`` before ``read_block``).

    Raises:
        DataError: no layout matches (the message lists the top-level keys).

    Example:
        >>> with h5py.File("odd.h5", "r") as f:  # doctest: +SKIP
        ...     detect_layout(f, "odd.h5")
        Traceback (most recent call last):
        DataError: odd.h5: unknown layout: top-level keys ['velocity']; ...
    """
    keys = list(file.keys())
    for cls in LAYOUTS:
        if cls.matches(keys, file):
            return cls(file, path)
    raise file_error(
        path,
        f"unknown layout: top-level keys {sorted(keys)[:10]}; expected 'tensor', 'data', CFD arrays "
        f"{list(CFD_KEYS)} or per-sample groups holding 'data' (or 'positions' and 'fields')"
    )
