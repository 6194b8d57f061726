"""Train/val/test split of a set of trajectories and the normalisation statistics of its training split.

Needs only numpy: importing ``upt_keras.data`` does not import Keras.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["split_indices", "compute_normalization"]


def split_indices(num_samples, test_fraction=0.1, val_fraction=0.1):
    """Split sample indices PDEBench-style: the first samples are the test set, then validation, the rest training.

    Sizes are ``floor(num_samples * fraction)`` (as PDEBench's ``int(test_ratio * num_samples)``).

    Args:
        num_samples: total number of trajectories.
        test_fraction: fraction for the test set (the first indices).
        val_fraction: fraction for the validation set (the indices right after the test set).

    Returns:
        dict with int64 arrays ``"train"``, ``"val"``, ``"test"``.

    Example:
        >>> s = split_indices(10)
        >>> s["test"], s["val"], s["train"][:3]
        (array([0]), array([1]), array([2, 3, 4]))
    """
    num_samples = int(num_samples)
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    for name, frac in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= float(frac) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    if float(test_fraction) + float(val_fraction) >= 1.0:
        raise ValueError("test_fraction + val_fraction must be < 1")
    # The small epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from losing a sample.
    n_test = int(math.floor(num_samples * float(test_fraction) + 1e-9))
    n_val = int(math.floor(num_samples * float(val_fraction) + 1e-9))
    idx = np.arange(num_samples, dtype=np.int64)
    return {"train": idx[n_test + n_val :], "val": idx[n_test : n_test + n_val], "test": idx[:n_test]}


def _read(source, indices):
    """float32 (n, T, *grid, C) for the given samples of a TrajectoryStore-like object or an in-memory array."""
    if hasattr(source, "read"):
        data = source.read(indices)
        return data if getattr(data, "lazy", False) else np.asarray(data, dtype=np.float32)  # lazy: read when indexed
    data = np.asarray(source)
    if data.ndim < 4:
        raise ValueError(f"an in-memory source must have shape (S, T, *grid, C), got {data.shape}")
    out = np.asarray(data[indices], dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("the trajectories contain NaN or inf")
    return out


def _num_samples(source):
    return int(source.num_samples) if hasattr(source, "num_samples") else int(np.shape(source)[0])


def _sample_bytes(source):
    """float32 bytes of one sample of a store or an array, or None when the source does not say."""
    shape = getattr(source, "shape", None)
    if shape is not None and len(shape) >= 2:
        return int(np.prod(shape[1:], dtype=np.int64)) * 4
    try:
        points = getattr(source, "num_points", None)
        space = int(points) if points is not None else int(np.prod(source.grid_shape, dtype=np.int64))
        return int(source.num_frames) * space * int(source.num_channels) * 4
    except (AttributeError, TypeError):
        return None


def compute_normalization(store, sample_indices=None, max_samples=None, chunk_size=None, chunk_bytes=4 * 2**20):
    """Per-channel mean and standard deviation over the given (training) samples, all frames and grid points.

    Samples are read a chunk at a time (``chunk_size`` samples, or by default as many as fit into ``chunk_bytes`` of
    float32, at least one) and combined with a numerically stable (Chan et al.) update, so the whole set is never
    held in memory and the float64 work arrays stay a few times ``chunk_bytes``. A channel with zero spread gets
    ``std = 1``.

    Args:
        store: a ``TrajectoryStore`` or an array ``(S, T, *grid, C)``.
        sample_indices: samples to use (normally ``split_indices(...)["train"]``); default all.
        max_samples: use at most this many, evenly spaced over ``sample_indices`` (deterministic).
        chunk_size: samples read per step (default: from ``chunk_bytes``).
        chunk_bytes: float32 bytes read per step when ``chunk_size`` is not given.

    Returns:
        ``{"mean": [C floats], "std": [C floats]}``.

    Example:
        >>> stats = compute_normalization(store, split_indices(store.num_samples)["train"])  # doctest: +SKIP
        >>> stats["mean"], stats["std"]  # doctest: +SKIP
        ([0.0012], [0.41])
    """
    idx = np.arange(_num_samples(store)) if sample_indices is None else np.asarray(sample_indices, np.int64).ravel()
    if idx.size == 0:
        raise ValueError("compute_normalization needs at least one sample")
    if max_samples is not None and idx.size > int(max_samples):
        if int(max_samples) < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        idx = idx[np.round(np.linspace(0, idx.size - 1, int(max_samples))).astype(np.int64)]
    if chunk_size is None:
        per_sample = _sample_bytes(store)
        chunk_size = 64 if not per_sample else max(1, int(chunk_bytes) // per_sample)
    count, mean, m2 = 0, None, None
    for start in range(0, idx.size, int(chunk_size)):
        block = _read(store, idx[start : start + int(chunk_size)]).astype(np.float64)
        flat = block.reshape(-1, block.shape[-1])
        n_b = flat.shape[0]
        mean_b = flat.mean(axis=0)
        m2_b = ((flat - mean_b) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = n_b, mean_b, m2_b
        else:
            delta = mean_b - mean
            total = count + n_b
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (count * n_b / total)
            count = total
    std = np.sqrt(m2 / count)
    std = np.where(std > 0.0, std, 1.0)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
