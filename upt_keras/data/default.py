"""The built-in 1D Burgers data set, generated on first use and cached.

``u_t + (u^2/2)_x = nu u_xx`` with ``nu = 0.01`` on the periodic domain ``[0, 1)``; 600 trajectories, 41 frames
(``t = 0, 0.01, ..., 0.4``), stored at 256 points. Initial conditions are Gaussian random fields
``N(0, (-Lap + 49 I)^-2.5)`` rescaled per sample to a peak ``|u|`` drawn from ``U[0.5, 1.5]``: fronts steepen into
viscous shocks of width about ``4 nu / jump`` (0.01-0.04) within the time window, so the nonlinearity matters. The
equation is solved at 1024 points (ETDRK4, better than 1e-6 relative accuracy) and every 4th point is stored;
generation takes about 5 seconds on 2 CPU cores.

The file lives in ``$UPT_KERAS_CACHE`` (default ``~/.cache/upt-keras``); its name carries the parameters and a hash of
the full configuration, so changing anything here generates a new file instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os

from upt_keras.data.errors import DataError
from upt_keras.data.generate import generate_burgers_dataset
from upt_keras.data.store import open_trajectories

__all__ = [
    "DEFAULT_BURGERS",
    "default_cache_dir",
    "default_burgers_path",
    "ensure_default_burgers",
    "load_default_burgers",
]

_VERSION = 1

DEFAULT_BURGERS = {
    "dim": 1,
    "num_samples": 600,
    "resolution": 256,
    "solver_resolution": 1024,
    "nu": 0.01,
    "t_end": 0.4,
    "dt_save": 0.01,
    "length": 1.0,
    "ic": "grf",
    "amplitude": (0.5, 1.5),
    "ic_options": {"alpha": 2.5, "tau": 7.0},
    "seed": 0,
}
"""Parameters of the built-in data set (passed to ``generate_burgers_dataset``)."""


def default_cache_dir():
    """The cache folder: ``$UPT_KERAS_CACHE`` if set, else ``~/.cache/upt-keras``.

    Returns:
        str path (not created here).

    Example:
        >>> default_cache_dir()  # doctest: +SKIP
        '~/.cache/upt-keras' (expanded), or $UPT_KERAS_CACHE when set
    """
    return os.environ.get("UPT_KERAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "upt-keras")


def _config(num_samples):
    cfg = dict(DEFAULT_BURGERS)
    if num_samples is not None:
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        cfg["num_samples"] = int(num_samples)
    return cfg


def default_burgers_path(cache_dir=None, num_samples=None):
    """Path of the cached default Burgers file (which may not exist yet).

    Args:
        cache_dir: folder; default ``default_cache_dir()``.
        num_samples: override the number of trajectories (a smaller set for quick runs; it is a separate file whose
            trajectories equal the first ones of the full set).

    Returns:
        str path, e.g. ``.../burgers1d_nu0.01_x256_t41_n600_grf_v1-<hash>.h5``.

    Example:
        >>> os.path.basename(default_burgers_path("cache")).startswith("burgers1d_nu0.01_x256_t41_n600")
        True
    """
    cfg = _config(num_samples)
    digest = hashlib.sha256(json.dumps([_VERSION, cfg], sort_keys=True).encode()).hexdigest()[:8]
    frames = int(round(cfg["t_end"] / cfg["dt_save"])) + 1
    name = (
        f"burgers1d_nu{cfg['nu']:g}_x{cfg['resolution']}_t{frames}_n{cfg['num_samples']}_{cfg['ic']}"
        f"_v{_VERSION}-{digest}.h5"
    )
    return os.path.join(os.fspath(cache_dir) if cache_dir is not None else default_cache_dir(), name)


def ensure_default_burgers(cache_dir=None, num_samples=None, progress=True):
    """Return the path of the default Burgers file, generating it first if it is missing or unreadable.

    Args:
        cache_dir: folder; default ``default_cache_dir()``.
        num_samples: override the number of trajectories (see ``default_burgers_path``).
        progress: show a progress bar while generating.

    Returns:
        str path of a complete file.

    Example:
        >>> path = ensure_default_burgers(num_samples=16, progress=False)  # doctest: +SKIP
    """
    path = default_burgers_path(cache_dir, num_samples)
    cfg = _config(num_samples)
    if os.path.exists(path):
        try:
            with open_trajectories(path) as store:
                frames = int(round(cfg["t_end"] / cfg["dt_save"])) + 1
                if (store.num_samples, store.num_frames, store.grid_shape) == (
                    cfg["num_samples"],
                    frames,
                    (cfg["resolution"],),
                ):
                    return path
        except DataError:
            pass  # unreadable or foreign file under our name: regenerate it
    return generate_burgers_dataset(path, progress=progress, **cfg)


def load_default_burgers(cache_dir=None, num_samples=None, progress=True, reduced_resolution=1, reduced_resolution_t=1):
    """Open the default 1D Burgers set (generating and caching it on first use).

    Args:
        cache_dir: folder; default ``default_cache_dir()`` (``$UPT_KERAS_CACHE`` or ``~/.cache/upt-keras``).
        num_samples: override the number of trajectories (default 600).
        progress: show a progress bar while generating.
        reduced_resolution: spatial stride for reading.
        reduced_resolution_t: temporal stride for reading.

    Returns:
        a ``TrajectoryStore`` (close it, or use it in a ``with`` block).

    Example:
        >>> with load_default_burgers() as store:  # doctest: +SKIP
        ...     store.num_samples, store.num_frames, store.grid_shape, store.dt, store.nu
        (600, 41, (256,), 0.01, 0.01)
    """
    path = ensure_default_burgers(cache_dir, num_samples, progress)
    return open_trajectories(path, reduced_resolution, reduced_resolution_t)
