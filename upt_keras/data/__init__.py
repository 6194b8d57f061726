"""Data for UPT: Burgers solvers, PDEBench HDF5 files, and the Keras input pipeline.

Modules: ``burgers`` (solvers and initial conditions), ``generate`` (Burgers data sets written to HDF5), ``writer``
(atomic PDEBench writers), ``layouts`` (one reader class per HDF5 layout), ``store`` (the lazy reader
``open_trajectories``), ``errors`` (``DataError``), ``default`` (the built-in data set), ``splits`` and ``pipeline``.

Importing this package imports only numpy and h5py. ``PairDataset`` (a ``keras.utils.PyDataset``, defined in
``upt_keras.data.pipeline``) is imported from there the first time it is accessed, and Keras with it.

Example:
    >>> from upt_keras.data import load_default_burgers, split_indices, compute_normalization, PairDataset
    >>> store = load_default_burgers()                       # generated once, then cached  # doctest: +SKIP
    >>> split = split_indices(store.num_samples)             # first 10% test, next 10% val  # doctest: +SKIP
    >>> stats = compute_normalization(store, split["train"])                                   # doctest: +SKIP
    >>> train = PairDataset(store, split["train"], batch_size=32, shuffle=True)                # doctest: +SKIP
"""

from upt_keras._lazy import lazy_exports
from upt_keras.data.burgers import (
    cole_hopf_solution,
    gaussian_random_field,
    periodic_grid,
    sinusoid_initial_condition,
    solve_burgers,
    stable_time_step,
)
from upt_keras.data.default import (
    DEFAULT_BURGERS,
    default_burgers_path,
    default_cache_dir,
    ensure_default_burgers,
    load_default_burgers,
)
from upt_keras.data.errors import DataError
from upt_keras.data.generate import generate_burgers_dataset
from upt_keras.data.splits import compute_normalization, split_indices
from upt_keras.data.store import TrajectoryStore, open_trajectories
from upt_keras.data.writer import PDEBenchWriter, write_trajectories

__all__ = [
    "DEFAULT_BURGERS",
    "DataError",
    "PDEBenchWriter",
    "PairDataset",
    "TrajectoryStore",
    "cole_hopf_solution",
    "compute_normalization",
    "default_burgers_path",
    "default_cache_dir",
    "ensure_default_burgers",
    "gaussian_random_field",
    "generate_burgers_dataset",
    "load_default_burgers",
    "open_trajectories",
    "periodic_grid",
    "sinusoid_initial_condition",
    "solve_burgers",
    "split_indices",
    "stable_time_step",
    "write_trajectories",
]


__getattr__, __dir__ = lazy_exports(__name__, {"PairDataset": "upt_keras.data.pipeline"})
