"""Data for UPT: Burgers solvers, PDEBench HDF5 files, and the Keras input pipeline.

Modules: ``burgers`` (Burgers solvers, the ETDRK4 integrator, initial conditions), ``pdes`` (Kuramoto-Sivashinsky,
Fisher-KPP and 2D Navier-Stokes solvers on the same integrator), ``generate`` (data sets written to HDF5),
``writer`` (atomic PDEBench writers), ``layouts`` (one reader class per HDF5 layout), ``store`` (the lazy reader
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
from upt_keras.data.generate import PDE_DEFAULTS, generate_burgers_dataset, generate_dataset
from upt_keras.data.pdes import (
    fno_forcing,
    logistic_solution,
    solve_fisher_kpp,
    solve_kuramoto_sivashinsky,
    solve_navier_stokes_2d,
    vorticity_to_velocity,
)
from upt_keras.data.splits import compute_normalization, split_indices
from upt_keras.data.store import TrajectoryStore, open_trajectories
from upt_keras.data.writer import PDEBenchWriter, write_trajectories

__all__ = [
    "DEFAULT_BURGERS",
    "DataError",
    "PDE_DEFAULTS",
    "PDEBenchWriter",
    "PairDataset",
    "TrajectoryStore",
    "cole_hopf_solution",
    "compute_normalization",
    "default_burgers_path",
    "fno_forcing",
    "default_cache_dir",
    "ensure_default_burgers",
    "gaussian_random_field",
    "generate_burgers_dataset",
    "generate_dataset",
    "load_default_burgers",
    "logistic_solution",
    "open_trajectories",
    "periodic_grid",
    "sinusoid_initial_condition",
    "solve_burgers",
    "solve_fisher_kpp",
    "solve_kuramoto_sivashinsky",
    "solve_navier_stokes_2d",
    "split_indices",
    "stable_time_step",
    "vorticity_to_velocity",
    "write_trajectories",
]


__getattr__, __dir__ = lazy_exports(__name__, {"PairDataset": "upt_keras.data.pipeline"})
