"""Batched pseudo-spectral solvers for periodic PDEs beside Burgers (numpy only), on the ETDRK4 of ``burgers``.

Equations (periodic domain ``[0, length)`` in every direction, grid ``x_j = j * length / N``):

- Kuramoto-Sivashinsky, 1D: ``u_t + u u_x + u_xx + u_xxxx = 0`` (chaotic for ``length`` above about 13; 22 and 64 are
  common choices).
- Fisher-KPP diffusion-reaction, 1D or 2D: ``u_t = D Lap u + r u (1 - u)`` (PDEBench's 1D reaction-diffusion with
  ``nu = D``, ``rho = r``).
- Incompressible Navier-Stokes in vorticity form, 2D: ``w_t + (v . grad) w = nu Lap w - alpha w + f`` with the velocity
  ``v = (psi_y, -psi_x)`` from the stream function ``-Lap psi = w`` (the FNO paper's setting: ``nu = 1e-3``, no drag,
  ``f = 0.1 (sin(2 pi (x + y)) + cos(2 pi (x + y)))`` on the unit square, ``fno_forcing``).

Each solver splits its right-hand side into a diagonal linear operator, integrated exactly, and a dealiased (2/3 rule)
nonlinear term, and advances a whole batch together with ``burgers.etdrk4``. Arrays are channels-less: ``(B, N)`` in 1D,
``(B, Nx, Ny)`` in 2D; results are ``(B, T, *grid)`` with ``T = t_end / dt_save + 1`` frames at ``0, dt_save, ...``.

Example:
    >>> x = 22.0 * np.arange(64) / 64
    >>> u = solve_kuramoto_sivashinsky(np.cos(2 * np.pi * x / 22.0)[None], t_end=1.0, dt_save=0.5, length=22.0)
    >>> u.shape
    (1, 3, 64)
"""

from __future__ import annotations

import math

import numpy as np

from upt_keras.data.burgers import SpectralGrid, _check_times, etdrk4

__all__ = [
    "solve_kuramoto_sivashinsky",
    "solve_fisher_kpp",
    "solve_navier_stokes_2d",
    "fno_forcing",
    "logistic_solution",
    "vorticity_to_velocity",
]


def _checked_field(u0, name, dims, what):
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim - 1 not in dims:
        shapes = " or ".join({1: "(B, N)", 2: "(B, Nx, Ny)"}[d] for d in dims)
        raise ValueError(f"{what} needs {name} of shape {shapes}, got {u0.shape}")
    if not np.all(np.isfinite(u0)):
        raise ValueError(f"{what}: {name} contains NaN or inf")
    return u0


def _run(grid, lin, nonlinear, u0, t_end, dt_save, dt, t_burn, dtype):
    """Solve from ``u0`` (projected onto the kept modes), returning the frames from ``t_burn`` to ``t_burn + t_end``."""
    n_save, dt_save = _check_times(t_end, dt_save)
    n_burn, _ = _check_times(t_burn, dt_save)
    out = np.empty((u0.shape[0], n_save + 1) + grid.shape, dtype=dtype)

    def store(i, v):
        if i >= n_burn:
            out[:, i - n_burn] = grid.inverse(v)

    etdrk4(lin, nonlinear, grid.forward(u0) * grid.mask, n_burn + n_save, dt_save, dt, store)
    return out


def _flux_term(grid, factor):
    """``v -> factor * (u^2/2)_x`` summed over the axes, dealiased: the Burgers-type nonlinearity."""
    coeff = 0.5 * float(factor) * sum(grid.ik) * grid.mask

    def nonlinear(v):
        u = grid.inverse(v)
        return coeff * grid.forward(u * u)

    return nonlinear


def solve_kuramoto_sivashinsky(u0, t_end, dt_save, dt=0.05, length=22.0, t_burn=0.0, dtype=np.float64):
    """Solve a batch of periodic Kuramoto-Sivashinsky problems ``u_t + u u_x + u_xx + u_xxxx = 0`` with ETDRK4.

    The linear part ``k^2 - k^4`` (anti-diffusion and hyperdiffusion) is integrated exactly, the flux ``(u^2/2)_x`` is
    explicit and dealiased. The spatial mean is an invariant. Trajectories of a random start reach the chaotic attractor
    after a transient: ``t_burn`` solves that long first and returns the frames from there on.

    Args:
        u0: ``(B, N)`` initial condition.
        t_end: length of the returned time window (a multiple of ``dt_save``).
        dt_save: time between returned frames.
        dt: largest internal step (0.05 gives about 1e-7 relative error over 10 time units at ``length`` 22 and 64
            points, see the tests; the stiff modes need no smaller step).
        length: domain length in the equation's units.
        t_burn: time solved before the first returned frame (a multiple of ``dt_save``).
        dtype: dtype of the result.

    Returns:
        ``(B, t_end / dt_save + 1, N)``.
    """
    u0 = _checked_field(u0, "u0", (1,), "Kuramoto-Sivashinsky")
    grid = SpectralGrid(u0.shape[1:], length)
    lin = grid.k2 - grid.k2**2
    return _run(grid, lin, _flux_term(grid, -1.0), u0, t_end, dt_save, dt, t_burn, dtype)


def solve_fisher_kpp(u0, diffusion, rate, t_end, dt_save, dt=0.01, length=1.0, dtype=np.float64):
    """Solve a batch of periodic Fisher-KPP problems ``u_t = D Lap u + r u (1 - u)`` in 1D or 2D with ETDRK4.

    The linear part ``r - D |k|^2`` is integrated exactly, the reaction ``-r u^2`` is explicit and dealiased.
    Values in ``[0, 1]`` stay there; a spatially uniform state follows the logistic curve (``logistic_solution``).

    Args:
        u0: ``(B, N)`` or ``(B, Nx, Ny)`` initial condition.
        diffusion: ``D >= 0``.
        rate: ``r``, the reaction rate.
        t_end, dt_save: final time (a multiple of ``dt_save``) and time between frames.
        dt: largest internal step.
        length: domain length.
        dtype: dtype of the result.

    Returns:
        ``(B, T, *grid)``.
    """
    u0 = _checked_field(u0, "u0", (1, 2), "Fisher-KPP")
    if not float(diffusion) >= 0.0:
        raise ValueError(f"diffusion must be >= 0, got {diffusion}")
    grid = SpectralGrid(u0.shape[1:], length)
    rate = float(rate)
    lin = rate - float(diffusion) * grid.k2
    neg_rate = -rate * grid.mask

    def nonlinear(v):
        u = grid.inverse(v)
        return neg_rate * grid.forward(u * u)

    return _run(grid, lin, nonlinear, u0, t_end, dt_save, dt, 0.0, dtype)


def logistic_solution(u0, rate, times):
    """Exact Fisher-KPP solution for a spatially uniform state: ``u0 e^{rt} / (1 - u0 + u0 e^{rt})``.

    Example:
        >>> float(logistic_solution(0.5, 1.0, [0.0])[0])
        0.5
    """
    growth = np.exp(float(rate) * np.asarray(times, dtype=np.float64))
    return u0 * growth / (1.0 - u0 + u0 * growth)


def fno_forcing(resolution, length=1.0, amplitude=0.1):
    """The FNO paper's Navier-Stokes forcing ``amplitude (sin(2 pi (x + y) / L) + cos(2 pi (x + y) / L))``, ``(N, N)``.

    Example:
        >>> fno_forcing(4).shape
        (4, 4)
    """
    x = np.arange(int(resolution), dtype=np.float64) * (float(length) / int(resolution))
    s = 2.0 * math.pi * (x[:, None] + x[None, :]) / float(length)
    return float(amplitude) * (np.sin(s) + np.cos(s))


class _Vorticity(SpectralGrid):
    """Velocity from vorticity: ``psi_hat = w_hat / |k|^2`` (mean mode 0), ``v = (psi_y, -psi_x)``."""

    def __init__(self, shape, length):
        super().__init__(shape, length)
        k2 = self.k2
        self.inv_k2 = np.where(k2 > 0.0, 1.0 / np.where(k2 > 0.0, k2, 1.0), 0.0)

    def velocity(self, w_hat):
        psi = w_hat * self.inv_k2
        return self.inverse(self.ik[1] * psi), self.inverse(-self.ik[0] * psi)


def vorticity_to_velocity(w, length=1.0):
    """The divergence-free velocity ``(B, Nx, Ny, 2)`` of a vorticity field ``w`` ``(B, Nx, Ny)`` (zero-mean flow).

    Example:
        >>> vorticity_to_velocity(np.zeros((1, 8, 8))).shape
        (1, 8, 8, 2)
    """
    w = _checked_field(w, "w", (2,), "vorticity_to_velocity")
    grid = _Vorticity(w.shape[1:], length)
    return np.stack(grid.velocity(grid.forward(w)), axis=-1)


def solve_navier_stokes_2d(w0, nu, t_end, dt_save, dt=None, length=1.0, forcing=None, drag=0.0, dtype=np.float64):
    """Solve a batch of periodic 2D incompressible Navier-Stokes problems in vorticity form with ETDRK4.

    ``w_t + (v . grad) w = nu Lap w - drag w + forcing`` with ``v = (psi_y, -psi_x)``, ``-Lap psi = w``. Viscosity and
    drag are integrated exactly; the advection, written as ``div(v w)``, and the constant forcing are explicit, the
    product dealiased. A field whose Fourier modes all share one ``|k|`` has no advection and decays as
    ``exp(-(nu |k|^2 + drag) t)`` (Taylor-Green-like cells), which the tests use.

    Args:
        w0: ``(B, Nx, Ny)`` initial vorticity.
        nu: viscosity (>= 0).
        t_end, dt_save: final time (a multiple of ``dt_save``) and time between frames.
        dt: largest internal step; ``None`` takes ``0.5 / (max|v0| k_max)`` with ``k_max`` the largest kept angular
            wavenumber per axis times 2, from the initial velocity (for forced runs pass a step that covers the
            velocities reached).
        length: domain length (both axes).
        forcing: ``(Nx, Ny)`` time-independent forcing, or ``None``.
        drag: linear drag coefficient ``alpha >= 0``.
        dtype: dtype of the result.

    Returns:
        ``(B, T, Nx, Ny)`` vorticity frames (``vorticity_to_velocity`` gives the velocity).
    """
    w0 = _checked_field(w0, "w0", (2,), "Navier-Stokes")
    if not float(nu) >= 0.0 or not float(drag) >= 0.0:
        raise ValueError(f"nu and drag must be >= 0, got nu={nu}, drag={drag}")
    grid = _Vorticity(w0.shape[1:], length)
    lin = -float(nu) * grid.k2 - float(drag)
    f_hat = 0.0
    if forcing is not None:
        forcing = np.asarray(forcing, dtype=np.float64)
        if forcing.shape != grid.shape:
            raise ValueError(f"forcing has shape {forcing.shape}, expected the grid {grid.shape}")
        f_hat = grid.forward(forcing) * grid.mask
    neg_ikx, neg_iky = (-ik * grid.mask for ik in grid.ik)

    def nonlinear(v):
        vx, vy = grid.velocity(v)
        w = grid.inverse(v)
        return neg_ikx * grid.forward(vx * w) + neg_iky * grid.forward(vy * w) + f_hat

    if dt is None:
        vx, vy = grid.velocity(grid.forward(w0))
        speed = float(np.max(np.sqrt(vx**2 + vy**2))) if w0.size else 0.0
        kmax = 2.0 * (2.0 * math.pi / float(length)) * ((max(grid.shape) - 1) // 3)
        dt = 0.5 / (speed * kmax) if speed > 0.0 else float(dt_save)
    return _run(grid, lin, nonlinear, w0, t_end, dt_save, dt, 0.0, dtype)
