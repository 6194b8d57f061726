"""Data sets: ``generate_burgers_dataset`` and ``generate_dataset`` (Burgers, Kuramoto-Sivashinsky, Fisher-KPP, 2D
Navier-Stokes) solve many trajectories and write them in a PDEBench layout.

The solvers live in ``upt_keras.data.burgers`` and ``upt_keras.data.pdes``, the initial conditions in the former; the
file is written by ``upt_keras.data.writer.PDEBenchWriter``, so an interrupted run leaves no partial file. Each
sample's initial condition comes from its own generator, so sample ``i`` does not depend on the batch size or on the
number of samples.

Example:
    >>> from upt_keras.data import open_trajectories
    >>> path = generate_burgers_dataset("burgers.h5", num_samples=8, resolution=64, t_end=0.1,
    ...                                 progress=False)  # doctest: +SKIP
    >>> open_trajectories(path).layout  # doctest: +SKIP
    'tensor'
"""

from __future__ import annotations

import inspect

import numpy as np

from upt_keras.data import burgers as _burgers
from upt_keras.data import pdes as _pdes
from upt_keras.data.writer import PDEBenchWriter
from upt_keras.progress import Progress

__all__ = ["PDE_DEFAULTS", "generate_burgers_dataset", "generate_dataset"]


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
    points_fraction=None,
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
        points_fraction: write the ``points`` layout instead: every sample keeps its own random subset (seeded by
            ``seed`` and the sample's index) of ``round(points_fraction * grid points)`` grid points, beside its
            full-grid copy (for evaluation). In ``(0, 1]``.

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
    solver_resolution, stride = _strides(resolution, solver_resolution)
    n_save, dt_save = _burgers._check_times(t_end, dt_save)
    channels = 2 if equation == "vector" else None
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

    def solve(seeds):
        u0 = np.concatenate([_initial_condition(ic, s, solver_resolution, dim, channels, length, amplitude, options)
                             for s in seeds])
        return _burgers.solve_burgers(u0, nu, t_end, dt_save, dt=dt, length=length, equation=equation)

    _write_samples(path, solve, "Burgers", dim, resolution, stride, channels or 1, n_save, dt_save, length, attrs,
                   num_samples, seed, batch, progress, layout, points_fraction)
    return path


def _strides(resolution, solver_resolution):
    solver_resolution = int(solver_resolution or resolution)
    if solver_resolution % int(resolution):
        raise ValueError(f"solver_resolution {solver_resolution} is not a multiple of resolution {resolution}")
    return solver_resolution, solver_resolution // int(resolution)


def _write_samples(path, solve, label, dim, resolution, stride, num_channels, n_save, dt_save, length, attrs,
                   num_samples, seed, batch, progress, layout, points_fraction=None):
    """Solve ``num_samples`` trajectories batch by batch (``solve(seed_sequences) -> (n, T, *grid[, C])`` on the solver
    grid) and write every ``stride``-th point of them atomically; one ``SeedSequence`` per sample. With
    ``points_fraction`` the file is in the ``points`` layout (that fraction of the grid points per sample)."""
    grid = (int(resolution),) * dim
    coords = [_burgers.periodic_grid(int(resolution) * stride, length)[::stride]] * dim
    times = np.arange(n_save + 1) * dt_save
    points = {}
    if points_fraction is not None:
        if not 0.0 < float(points_fraction) <= 1.0:
            raise ValueError(f"points_fraction must be in (0, 1], got {points_fraction}")
        if layout not in (None, "points"):
            raise ValueError(f"points_fraction writes the 'points' layout, not layout={layout!r}")
        layout = "points"
        points = dict(num_points=max(1, round(float(points_fraction) * int(np.prod(grid)))), seed=int(seed))
    if layout is None:
        layout = "tensor" if (dim == 1 and num_channels == 1) else "groups"
    seeds = np.random.SeedSequence(int(seed)).spawn(int(num_samples))
    bar = Progress(num_samples, f"generating {num_samples} {label} trajectories ({dim}D, {resolution} points per "
                   f"axis)", "trajectories", enabled=progress)
    space = (slice(None), slice(None)) + (slice(None, None, stride),) * dim
    with PDEBenchWriter(path, layout, num_samples, n_save + 1, grid, num_channels, coords, times, attrs,
                        **points) as writer:
        for start in range(0, int(num_samples), int(batch)):
            stop = min(start + int(batch), int(num_samples))
            u = solve(seeds[start:stop])[space]
            writer.write(start, u if u.ndim == dim + 3 else u[..., None])
            bar.update(stop, trajectories_per_s=stop / max(bar.seconds, 1e-9))
    bar.close()


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


# --------------------------------------------------------------------------------------------------------------------
# Other equations
# --------------------------------------------------------------------------------------------------------------------

PDE_DEFAULTS = {
    "burgers": dict(dim=1, resolution=256, nu=0.01, t_end=0.4, dt_save=0.01, length=1.0),
    "ks": dict(dim=1, resolution=256, length=64.0, t_end=20.0, dt_save=0.5, t_burn=100.0, dt=0.05, amplitude=1.0,
               ic_options={"alpha": 2.0, "tau": 1.0}),
    "fisher": dict(dim=1, resolution=256, nu=0.005, rate=2.0, length=1.0, t_end=1.0, dt_save=0.05, dt=0.01,
                   amplitude=1.0),
    "navier-stokes": dict(dim=2, resolution=64, nu=1e-3, forcing=0.1, drag=0.0, length=1.0, t_end=20.0, dt_save=1.0,
                          dt=0.025, amplitude=None),
}
"""Every equation ``generate_dataset`` writes, with its default settings (a key that is absent does not apply):

- ``burgers``: ``generate_burgers_dataset`` (the command line's defaults).
- ``ks``: Kuramoto-Sivashinsky ``u_t + u u_x + u_xx + u_xxxx = 0`` on ``[0, length)``, started from GRFs
  (``ic_options``) of peak ``amplitude`` and solved for ``t_burn`` before the first stored frame (on the attractor).
- ``fisher``: Fisher-KPP ``u_t = nu Lap u + rate u (1 - u)``, GRFs mapped onto ``[0, amplitude]`` (``amplitude`` a
  float or a ``(low, high)`` range drawn per sample), 1D or 2D.
- ``navier-stokes``: 2D vorticity ``w_t + (v . grad) w = nu Lap w - drag w + f`` with the FNO paper's forcing of
  amplitude ``forcing`` (``fno_forcing``) and its initial vorticity prior (GRF ``alpha = 2.5``, ``tau = 7``, unscaled
  with ``amplitude=None``); one channel, the vorticity.
"""

_PDE_TEXT = {
    "ks": "u_t + u u_x + u_xx + u_xxxx = 0",
    "fisher": "u_t = Nu Lap u + rho u (1 - u)",
    "navier-stokes": "w_t + (v . grad) w = Nu Lap w - drag w + f; -Lap psi = w, v = (psi_y, -psi_x); "
    "f = forcing (sin(2 pi (x + y) / L) + cos(2 pi (x + y) / L))",
}


def generate_dataset(path, pde="burgers", num_samples=100, seed=0, batch=64, progress=True, layout=None,
                     points_fraction=None, **settings):
    """Generate trajectories of one of the equations of ``PDE_DEFAULTS`` and write them atomically (PDEBench layout).

    Settings left out take the equation's defaults from ``PDE_DEFAULTS``; one that the equation does not have is an
    error naming it. As for Burgers, sample ``i`` depends on ``seed`` and ``i`` only (one ``SeedSequence`` per
    sample, a fixed internal step), not on ``batch`` or ``num_samples``.

    Args:
        path: destination file.
        pde: ``"burgers"``, ``"ks"``, ``"fisher"`` or ``"navier-stokes"``.
        num_samples, seed, batch, progress, layout, points_fraction: as for ``generate_burgers_dataset``.
        **settings: ``dim``, ``resolution``, ``solver_resolution``, ``t_end``, ``dt_save``, ``dt``, ``length``,
            ``amplitude``, ``ic_options`` and the equation's own: ``nu`` (Burgers, Fisher-KPP, Navier-Stokes),
            ``rate`` (Fisher-KPP), ``t_burn`` (KS), ``forcing``, ``drag`` (Navier-Stokes), ``ic`` and ``equation``
            (Burgers).

    Returns:
        ``path``.

    Example:
        >>> generate_dataset("ks.h5", "ks", num_samples=8, resolution=64, progress=False)  # doctest: +SKIP
        'ks.h5'
    """
    if pde not in PDE_DEFAULTS:
        raise ValueError(f"pde must be one of {', '.join(PDE_DEFAULTS)}; got {pde!r}")
    common = dict(num_samples=num_samples, seed=seed, batch=batch, progress=progress, layout=layout,
                  points_fraction=points_fraction)
    if pde == "burgers":
        allowed = set(inspect.signature(generate_burgers_dataset).parameters) - set(common) - {"path"}
    else:
        allowed = set(PDE_DEFAULTS[pde]) | {"solver_resolution", "ic_options", "amplitude", "dt"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"pde {pde!r} has no setting {unknown[0]!r} (its settings: {', '.join(sorted(allowed))})")
    if pde == "burgers":
        return generate_burgers_dataset(path, **{**PDE_DEFAULTS["burgers"], **settings}, **common)
    cfg = {"solver_resolution": None, **PDE_DEFAULTS[pde], **settings}
    dim = int(cfg["dim"])
    if dim not in ((1,) if pde == "ks" else (2,) if pde == "navier-stokes" else (1, 2)):
        raise ValueError(f"pde {pde!r} does not take dim={dim}")
    solver_resolution, stride = _strides(cfg["resolution"], cfg["solver_resolution"])
    n_save, dt_save = _burgers._check_times(cfg["t_end"], cfg["dt_save"])
    length = float(cfg["length"])
    options = dict(cfg.get("ic_options") or {})
    attrs = {"equation": _PDE_TEXT[pde], "pde": pde, "ic": "grf", "seed": int(seed), "dt_save": float(dt_save),
             "length": length, "solver_resolution": solver_resolution, "dt": float(cfg["dt"])}
    for key, name in (("nu", "Nu"), ("rate", "rho"), ("t_burn", "t_burn"), ("forcing", "forcing"), ("drag", "drag")):
        if key in cfg:
            attrs[name] = float(cfg[key])

    def initial(seeds):
        fields = []
        for s in seeds:
            rng = np.random.default_rng(s)
            fields.append(_burgers.gaussian_random_field(rng, 1, solver_resolution, dim=dim, length=length,
                                                         amplitude=None if pde == "fisher" else cfg["amplitude"],
                                                         **options))
            if pde == "fisher":  # onto [0, a]: the reaction's invariant interval
                g = fields[-1]
                peak = _burgers._per_sample_amplitude(rng, cfg["amplitude"], 1)[0]
                fields[-1] = peak * (g - g.min()) / max(float(np.ptp(g)), 1e-300)
        return np.concatenate(fields)

    if pde == "ks":
        def solve(seeds):
            return _pdes.solve_kuramoto_sivashinsky(initial(seeds), cfg["t_end"], dt_save, dt=cfg["dt"],
                                                    length=length, t_burn=cfg["t_burn"])
    elif pde == "fisher":
        def solve(seeds):
            return _pdes.solve_fisher_kpp(initial(seeds), cfg["nu"], cfg["rate"], cfg["t_end"], dt_save,
                                          dt=cfg["dt"], length=length)
    else:
        forcing = _pdes.fno_forcing(solver_resolution, length, cfg["forcing"]) if cfg["forcing"] else None

        def solve(seeds):
            return _pdes.solve_navier_stokes_2d(initial(seeds), cfg["nu"], cfg["t_end"], dt_save, dt=cfg["dt"],
                                                length=length, forcing=forcing, drag=cfg["drag"])

    _write_samples(path, solve, pde, dim, cfg["resolution"], stride, 1, n_save, dt_save, length, attrs,
                   num_samples, seed, batch, progress, layout, points_fraction)
    return path
