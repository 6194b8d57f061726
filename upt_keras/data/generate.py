"""Burgers data sets: ``generate_burgers_dataset`` solves many trajectories and writes them in a PDEBench layout.

The solver and the initial conditions live in ``upt_keras.data.burgers``; the file is written by
``upt_keras.data.writer.PDEBenchWriter``, so an interrupted run leaves no partial file. Each sample's initial condition
comes from its own generator, so sample ``i`` does not depend on the batch size or on the number of samples.

Example:
    >>> from upt_keras.data import open_trajectories
    >>> path = generate_burgers_dataset("burgers.h5", num_samples=8, resolution=64, t_end=0.1,
    ...                                 progress=False)  # doctest: +SKIP
    >>> open_trajectories(path).layout  # doctest: +SKIP
    'tensor'
"""

from __future__ import annotations

import numpy as np

from upt_keras.data import burgers as _burgers
from upt_keras.data.writer import PDEBenchWriter
from upt_keras.progress import Progress

__all__ = ["generate_burgers_dataset"]


def generate_burgers_dataset(
    path,
    dim=1,
    num_samples=1000,
    resolution=256,
    nu=0.01,
    t_end=1.0,
    dt_save=0.01,
    ic="grf",
    seed=0,
    batch=64,
    progress=True,
    equation="scalar",
    solver_resolution=None,
    dt=None,
    length=1.0,
    amplitude=1.0,
    ic_options=None,
    layout=None,
):
    """Generate Burgers trajectories with ``solve_burgers`` and write them atomically in a PDEBench layout.

    Each sample's initial condition comes from its own generator (``SeedSequence(seed).spawn``) and the internal step
    is fixed for the whole run, so sample ``i`` is the same whatever ``batch`` or ``num_samples`` is. With
    ``solver_resolution`` a multiple of ``resolution`` the equation is solved on the finer grid and every
    ``solver_resolution // resolution``-th point is stored (exact pointwise subsampling, useful for sharp fronts).

    Args:
        path: destination file.
        dim: 1 or 2.
        num_samples: number of trajectories.
        resolution: stored points per direction.
        nu: viscosity (stored as attribute ``Nu``; here it multiplies ``u_xx`` directly, no ``1/pi`` as in PDEBench).
        t_end: final time (multiple of ``dt_save``); frames ``t_end / dt_save + 1``.
        dt_save: time between stored frames.
        ic: ``"grf"`` (``gaussian_random_field``) or ``"sinusoid"`` (``sinusoid_initial_condition``).
        seed: integer seed.
        batch: trajectories solved together.
        progress: show a progress bar (on a terminal) or one line when done (in a log).
        equation: ``"scalar"`` or, in 2D, ``"vector"`` (two velocity channels).
        solver_resolution: grid for the solver (default ``resolution``).
        dt: largest internal time step (default: ``stable_time_step`` for the largest possible initial peak, the
            same for every batch).
        length: domain length.
        amplitude: initial amplitude: float or ``(low, high)`` range for ``"grf"``; float factor for ``"sinusoid"``.
        ic_options: extra keyword arguments for the initial-condition function (e.g. ``{"alpha": 2.0, "tau": 5.0}``).
        layout: ``"tensor"`` or ``"groups"``; default ``"tensor"`` for 1D, ``"groups"`` for 2D.

    Returns:
        ``path``.

    Example:
        >>> generate_burgers_dataset("burgers.h5", num_samples=32, resolution=256, t_end=0.4, progress=False)
        'burgers.h5'
    """
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim}")
    if equation == "vector" and dim != 2:
        raise ValueError("equation='vector' needs dim=2")
    if ic not in ("grf", "sinusoid"):
        raise ValueError(f"ic must be 'grf' or 'sinusoid', got {ic!r}")
    solver_resolution = int(solver_resolution or resolution)
    if solver_resolution % int(resolution):
        raise ValueError(f"solver_resolution {solver_resolution} is not a multiple of resolution {resolution}")
    stride = solver_resolution // int(resolution)
    n_save, dt_save = _burgers._check_times(t_end, dt_save)
    channels = 2 if equation == "vector" else None
    num_channels = channels or 1
    grid = (int(resolution),) * dim
    coords = [_burgers.periodic_grid(solver_resolution, length)[::stride]] * dim
    times = np.arange(n_save + 1) * dt_save
    if layout is None:
        layout = "tensor" if dim == 1 else "groups"
    attrs = {
        "Nu": float(nu),
        "equation": _EQUATION_TEXT[(dim, equation)],
        "ic": ic,
        "seed": int(seed),
        "dt_save": float(dt_save),
        "length": float(length),
        "solver_resolution": solver_resolution,
    }
    options = dict(ic_options or {})
    if dt is None:
        # One step for the whole run, from a bound on the initial peak, so that a sample's trajectory does not depend
        # on which other samples share its batch.
        bound = _peak_bound(ic, amplitude, options)
        if bound is not None:
            dt = _burgers.stable_time_step(bound, nu, solver_resolution, length, dim=dim)
    seeds = np.random.SeedSequence(int(seed)).spawn(int(num_samples))
    bar = Progress(num_samples, f"generating {num_samples} Burgers trajectories ({dim}D, {resolution} points per "
                   f"axis)", "trajectories", enabled=progress)
    space = (slice(None),) + (slice(None, None, stride),) * dim

    with PDEBenchWriter(path, layout, num_samples, n_save + 1, grid, num_channels, coords, times, attrs) as writer:
        for start in range(0, int(num_samples), int(batch)):
            stop = min(start + int(batch), int(num_samples))
            u0 = np.concatenate([_initial_condition(ic, s, solver_resolution, dim, channels, length, amplitude,
                                                    options) for s in seeds[start:stop]])
            u = _burgers.solve_burgers(u0, nu, t_end, dt_save, dt=dt, length=length, equation=equation)
            u = u[(slice(None),) + space]
            writer.write(start, u if channels else u[..., None])
            bar.update(stop, trajectories_per_s=stop / max(bar.seconds, 1e-9))
    bar.close()
    return path


_EQUATION_TEXT = {
    (1, "scalar"): "u_t + (u^2/2)_x = Nu u_xx",
    (2, "scalar"): "u_t + (u^2/2)_x + (u^2/2)_y = Nu (u_xx + u_yy)",
    (2, "vector"): "u_t + u u_x + v u_y = Nu Lap u; v_t + u v_x + v v_y = Nu Lap v",
}


def _peak_bound(ic, amplitude, options):
    """Upper bound of max |u0| over all samples, or None when the initial condition is not normalised."""
    if amplitude is None:
        return None
    peak = float(np.max(amplitude))
    if ic == "sinusoid":
        peak *= int(options.get("num_waves", 2))
    return peak


def _initial_condition(ic, seed_seq, resolution, dim, channels, length, amplitude, options):
    """One sample's initial condition ``(1, *grid[, channels])`` from its own ``SeedSequence``."""
    rng = np.random.default_rng(seed_seq)
    if ic == "grf":
        return _burgers.gaussian_random_field(
            rng, 1, resolution, dim=dim, channels=channels, amplitude=amplitude, length=length, **options
        )
    return _burgers.sinusoid_initial_condition(
        rng, 1, resolution, dim=dim, channels=channels, amplitude=amplitude, length=length, **options
    )
