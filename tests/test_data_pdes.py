import math

import numpy as np
import pytest

from upt_keras.data.burgers import gaussian_random_field, periodic_grid
from upt_keras.data.pdes import (
    fno_forcing,
    logistic_solution,
    solve_fisher_kpp,
    solve_kuramoto_sivashinsky,
    solve_navier_stokes_2d,
    vorticity_to_velocity,
)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _deriv(u, order, length, axis=-1):
    """Spectral derivative written out with the full FFT (independent of the solvers' rfft helpers)."""
    n = u.shape[axis]
    k = 2 * np.pi / length * np.fft.fftfreq(n, 1.0 / n)
    if order % 2:
        k[n // 2] = 0.0 if n % 2 == 0 else k[n // 2]  # the Nyquist mode has no odd derivative
    shape = [1] * u.ndim
    shape[axis] = n
    return np.real(np.fft.ifft((1j * k.reshape(shape)) ** order * np.fft.fft(u, axis=axis), axis=axis))


def _central_rate(solve, delta):
    """(u(t + delta) - u(t - delta)) / (2 delta) and u(t) from a solver called with frames every delta."""
    u = solve(delta)
    return (u[:, 2] - u[:, 0]) / (2 * delta), u[:, 1]


# ------------------------------------------------------------------------------------------- Kuramoto-Sivashinsky


def _ks_smooth(length, n):
    x = periodic_grid(n, length)
    q = 2 * np.pi / length
    return np.stack([np.cos(q * x) * (1 + np.sin(q * x)), 0.5 * np.sin(2 * q * x) + np.cos(3 * q * x)])


def test_ks_small_modes_grow_and_decay_with_the_linear_rate():
    # u = eps cos(k x): the nonlinear term is O(eps^2), so u(t) = eps exp((k^2 - k^4) t) cos(k x) to ~eps relative.
    length, n, eps = 22.0, 64, 1e-7
    x = periodic_grid(n, length)
    for m in (1, 4):  # k = 0.29 grows (k < 1), k = 1.14 decays
        k = 2 * np.pi * m / length
        u = solve_kuramoto_sivashinsky(eps * np.cos(k * x)[None], t_end=4.0, dt_save=2.0, length=length)
        exact = eps * np.exp((k**2 - k**4) * np.array([0.0, 2.0, 4.0]))[:, None] * np.cos(k * x)
        assert _rel(u[0], exact) < 1e-5
    assert (k**2 - k**4) < 0 < (2 * np.pi / length) ** 2 - (2 * np.pi / length) ** 4


def test_ks_satisfies_the_equation():
    # The solver's frames, differenced in time, against the right-hand side written out here.
    length = 22.0
    u0 = _ks_smooth(length, 128)
    rate, u = _central_rate(lambda d: solve_kuramoto_sivashinsky(u0, 2 * d, d, dt=d / 8, length=length), 1e-3)
    rhs = -u * _deriv(u, 1, length) - _deriv(u, 2, length) - _deriv(u, 4, length)
    assert _rel(rate, rhs) < 1e-5
    # a wrong sign of any term is far off
    assert _rel(rate, -u * _deriv(u, 1, length) + _deriv(u, 2, length) - _deriv(u, 4, length)) > 0.1


def test_ks_fourth_order_in_time():
    length, t_end = 32 * np.pi, 2.0
    u0 = _ks_smooth(length, 128)
    ref = solve_kuramoto_sivashinsky(u0, t_end, 1.0, dt=1 / 256, length=length)
    errors = [_rel(solve_kuramoto_sivashinsky(u0, t_end, 1.0, dt=dt, length=length), ref) for dt in (0.1, 0.05, 0.025)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 3.6) and np.all(orders < 4.5), orders
    assert errors[-1] < 1e-9


def test_ks_chaotic_attractor_is_bounded_and_sensitive():
    length, n = 22.0, 64
    u0 = gaussian_random_field(np.random.default_rng(0), 3, n, amplitude=1.0, length=length, alpha=2.0, tau=1.0)
    u = solve_kuramoto_sivashinsky(u0, t_end=150.0, dt_save=1.0, length=length, t_burn=50.0)
    assert np.all(np.isfinite(u)) and np.abs(u).max() < 5.0
    mean = np.broadcast_to(u0.mean(axis=-1)[:, None], u.shape[:2])
    np.testing.assert_allclose(u.mean(axis=-1), mean, atol=1e-12)  # the mean is invariant
    energy = (u**2).mean(axis=-1)  # on the L = 22 attractor <u^2> is about 1.4, between about 0.5 and 3.5
    assert np.all((energy.mean(axis=1) > 1.0) & (energy.mean(axis=1) < 2.0))
    assert energy.min() > 0.3 and energy.max() < 4.0
    assert np.all(energy.std(axis=1) > 0.1)  # not settled on a steady state or a travelling wave
    # two starts 7e-7 apart (RMS) on the attractor: the separation grows by more than 10x within 150 time units
    # (largest Lyapunov exponent about 0.04 at L = 22), where a dissipative, non-chaotic flow would shrink it
    v = solve_kuramoto_sivashinsky(u[:, 0] + 1e-6 * np.cos(2 * np.pi * periodic_grid(n)), 150.0, 150.0, length=length)
    separation = np.sqrt(((v[:, -1] - u[:, -1]) ** 2).mean(axis=-1))
    assert np.all(separation > 1e-5) and separation.max() > 1e-3


def test_ks_checks_its_input():
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        solve_kuramoto_sivashinsky(np.zeros((2, 8, 8)), 1.0, 0.5)
    with pytest.raises(ValueError, match="multiple"):
        solve_kuramoto_sivashinsky(np.zeros((2, 8)), 1.0, 0.3)


# ------------------------------------------------------------------------------------------------------ Fisher-KPP


def test_fisher_uniform_state_follows_the_logistic_curve():
    times = np.arange(11) * 0.2
    u0 = np.array([0.01, 0.3, 0.9])[:, None] * np.ones((1, 16))
    u = solve_fisher_kpp(u0, diffusion=0.01, rate=3.0, t_end=2.0, dt_save=0.2, dt=0.02)
    exact = np.stack([logistic_solution(a, 3.0, times) for a in (0.01, 0.3, 0.9)])
    np.testing.assert_allclose(u, np.broadcast_to(exact[..., None], u.shape), rtol=1e-6, atol=0)
    # ETDRK4 order: halving the step divides the error by about 16
    errors = [np.abs(solve_fisher_kpp(u0, 0.01, 3.0, 2.0, 0.2, dt=dt)[..., 0] - exact).max()
              for dt in (0.1, 0.05, 0.025)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 3.6) and np.all(orders < 4.6), orders


def test_fisher_small_perturbation_of_the_stable_state_decays_with_the_linear_rate():
    # around u = 1 the linearised equation is p_t = D p_xx - r p: p(t) = eps exp(-(r + D k^2) t) cos(k x)
    d, r, eps, n = 0.02, 2.0, 1e-7, 32
    x = periodic_grid(n)
    k = 2 * np.pi * 3
    u = solve_fisher_kpp(1 + eps * np.cos(k * x)[None], d, r, t_end=0.4, dt_save=0.2)
    exact = eps * np.exp(-(r + d * k**2) * np.array([0.0, 0.2, 0.4]))[:, None] * np.cos(k * x)
    assert _rel(u[0] - 1, exact) < 1e-5


def test_fisher_satisfies_the_equation_in_1d_and_2d():
    d, r = 0.005, 2.0
    x = periodic_grid(64)
    u0 = (0.5 + 0.4 * np.sin(2 * np.pi * x) * np.cos(4 * np.pi * x + 1))[None]
    rate, u = _central_rate(lambda s: solve_fisher_kpp(u0, d, r, 2 * s, s, dt=s / 4), 1e-3)
    assert _rel(rate, d * _deriv(u, 2, 1.0) + r * u * (1 - u)) < 1e-5
    g = np.meshgrid(x[::2], x[::2], indexing="ij")
    u0 = (0.5 + 0.4 * np.sin(2 * np.pi * g[0]) * np.cos(2 * np.pi * g[1]))[None]
    rate, u = _central_rate(lambda s: solve_fisher_kpp(u0, d, r, 2 * s, s, dt=s / 4), 1e-3)
    lap = _deriv(u, 2, 1.0, axis=-1) + _deriv(u, 2, 1.0, axis=-2)
    assert _rel(rate, d * lap + r * u * (1 - u)) < 1e-5


def test_fisher_stays_in_the_unit_interval():
    g = gaussian_random_field(np.random.default_rng(1), 4, 128, amplitude=1.0)
    u0 = (g - g.min(axis=1, keepdims=True)) / np.ptp(g, axis=1, keepdims=True)
    u = solve_fisher_kpp(u0, 0.001, 5.0, 1.0, 0.1)
    assert u.min() > -1e-3 and u.max() < 1 + 1e-3
    assert np.all(u[:, -1].mean(axis=-1) > u[:, 0].mean(axis=-1) + 0.2)  # the reaction fills the domain


# ---------------------------------------------------------------------------------------------- Navier-Stokes 2D


def _cells(n):
    x = periodic_grid(n)
    gx, gy = np.meshgrid(x, x, indexing="ij")
    # modes (3, 0), (0, 3): one shell |k| = 6 pi, so (v . grad) w vanishes identically
    return np.sin(6 * np.pi * gx) + np.cos(6 * np.pi * gy) + 0.5 * np.sin(6 * np.pi * gy + 1)


def test_navier_stokes_single_shell_decays_exactly():
    nu, w0 = 0.01, _cells(32)[None]
    w = solve_navier_stokes_2d(w0, nu, t_end=0.5, dt_save=0.1)
    exact = w0[:, None] * np.exp(-nu * (6 * np.pi) ** 2 * np.arange(6) * 0.1)[None, :, None, None]
    assert w.shape == (1, 6, 32, 32)
    assert _rel(w, exact) < 1e-12
    # with linear drag the rate is nu |k|^2 + drag
    w = solve_navier_stokes_2d(w0, nu, t_end=0.5, dt_save=0.5, drag=0.3)
    assert _rel(w[:, -1], w0 * np.exp(-(nu * (6 * np.pi) ** 2 + 0.3) * 0.5)) < 1e-12


def test_navier_stokes_forced_flow_approaches_the_laminar_state():
    # FNO forcing lies on the shell |k|^2 = 8 pi^2: from rest w(t) = f / (nu |k|^2) (1 - exp(-nu |k|^2 t))
    nu, n = 0.01, 32
    f = fno_forcing(n)
    k2 = 8 * np.pi**2
    w = solve_navier_stokes_2d(np.zeros((1, n, n)), nu, t_end=2.0, dt_save=1.0, dt=0.1, forcing=f)
    exact = f / (nu * k2) * (1 - np.exp(-nu * k2 * np.array([0.0, 1.0, 2.0])))[:, None, None]
    np.testing.assert_allclose(w[0], exact, atol=1e-12 * np.abs(exact).max())


def test_navier_stokes_satisfies_the_equation():
    # w_t = -(u w_x + v w_y) + nu Lap w + f, the advective form written out here (the solver uses div(v w))
    nu, n = 0.002, 64
    x = periodic_grid(n)
    gx, gy = np.meshgrid(x, x, indexing="ij")
    # modes up to |n| = 4 in each direction: the products stay far below the dealiasing cut-off, so the solver's
    # dealiased advection equals the one written out here
    w0 = (2 * np.sin(2 * np.pi * (gx + 2 * gy)) + np.cos(2 * np.pi * (3 * gx - gy) + 0.3) + 1.5 * np.sin(8 * np.pi * gy)
          + np.cos(2 * np.pi * gx))[None]
    f = fno_forcing(n)
    rate, w = _central_rate(lambda s: solve_navier_stokes_2d(w0, nu, 2 * s, s, dt=s / 4, forcing=f), 1e-3)
    vel = vorticity_to_velocity(w)
    lap = _deriv(w, 2, 1.0, axis=-1) + _deriv(w, 2, 1.0, axis=-2)
    rhs = -(vel[..., 0] * _deriv(w, 1, 1.0, axis=-2) + vel[..., 1] * _deriv(w, 1, 1.0, axis=-1)) + nu * lap + f
    assert _rel(rate, rhs) < 1e-5
    advection = rhs - nu * lap - f
    assert _rel(rate, -advection + nu * lap + f) > 0.1  # the advection matters here: a sign error would show


def test_velocity_is_divergence_free_with_the_right_curl():
    raw = gaussian_random_field(np.random.default_rng(3), 2, 32, dim=2, amplitude=1.0)
    w = solve_navier_stokes_2d(raw, 0.01, 0.0, 1.0)[:, 0]  # frame 0: the field without its dealiased modes
    v = vorticity_to_velocity(w)
    div = _deriv(v[..., 0], 1, 1.0, axis=-2) + _deriv(v[..., 1], 1, 1.0, axis=-1)
    curl = _deriv(v[..., 1], 1, 1.0, axis=-2) - _deriv(v[..., 0], 1, 1.0, axis=-1)
    assert np.abs(div).max() < 1e-12
    np.testing.assert_allclose(curl, w, atol=1e-12)


def test_navier_stokes_inviscid_conserves_energy_and_enstrophy():
    w0 = gaussian_random_field(np.random.default_rng(4), 2, 32, dim=2, alpha=3.0, tau=3.0, amplitude=5.0)
    w = solve_navier_stokes_2d(w0, 0.0, t_end=0.4, dt_save=0.2)
    enstrophy = (w**2).mean(axis=(2, 3))
    energy = np.stack([(vorticity_to_velocity(w[:, i]) ** 2).sum(-1).mean(axis=(1, 2)) for i in range(3)], axis=1)
    np.testing.assert_allclose(enstrophy, enstrophy[:, :1] * np.ones(3), rtol=1e-6)
    np.testing.assert_allclose(energy, energy[:, :1] * np.ones(3), rtol=1e-6)
    np.testing.assert_allclose(w.mean(axis=(2, 3)), 0.0, atol=1e-12)
    assert _rel(w[:, -1], w[:, 0]) > 0.1  # the flow did move


def test_navier_stokes_checks_its_input():
    with pytest.raises(ValueError, match=r"forcing has shape \(8, 8\)"):
        solve_navier_stokes_2d(np.zeros((1, 16, 16)), 0.01, 1.0, 0.5, forcing=np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"\(B, Nx, Ny\)"):
        solve_navier_stokes_2d(np.zeros((1, 16)), 0.01, 1.0, 0.5)
    assert math.isfinite(float(np.abs(solve_navier_stokes_2d(np.zeros((1, 8, 8)), 0.01, 1.0, 0.5)).max()))
