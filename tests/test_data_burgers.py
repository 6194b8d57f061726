import numpy as np
import pytest

from upt_keras.data.burgers import (
    cole_hopf_solution,
    gaussian_random_field,
    periodic_grid,
    sinusoid_initial_condition,
    solve_burgers,
    stable_time_step,
)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _cole_hopf_1d(nu, n=256, t_end=0.5, dt_save=0.05):
    x = periodic_grid(n)
    # phi0 = exp(-int u0 / (2 nu)): u0 = sin(2 pi x) and u0 = sin(2 pi x) + 0.5 cos(4 pi x + 1).
    psi = np.stack([-np.cos(2 * np.pi * x) / (2 * np.pi), -np.cos(2 * np.pi * x) / (2 * np.pi)
                    + 0.5 * np.sin(4 * np.pi * x + 1) / (4 * np.pi)])
    phi0 = np.exp(-psi / (2 * nu))
    times = np.arange(round(t_end / dt_save) + 1) * dt_save
    return cole_hopf_solution(phi0, nu, times)


def test_cole_hopf_helper_gives_the_initial_condition():
    exact = _cole_hopf_1d(0.02)
    x = periodic_grid(256)
    np.testing.assert_allclose(exact[0, 0], np.sin(2 * np.pi * x), atol=1e-10)


def test_1d_matches_cole_hopf():
    nu = 0.02
    exact = _cole_hopf_1d(nu)  # fronts steepen to width ~4 nu by t ~ 0.2
    u = solve_burgers(exact[:, 0], nu, t_end=0.5, dt_save=0.05)
    assert u.shape == exact.shape
    assert _rel(u, exact) <= 1e-6


def test_2d_vector_matches_cole_hopf():
    nu, n = 0.05, 48
    x = periodic_grid(n)
    gx, gy = np.meshgrid(x, x, indexing="ij")
    phi0 = np.exp((np.cos(2 * np.pi * gx) + 0.5 * np.sin(2 * np.pi * (gx + gy))) / (4 * np.pi * nu))[None]
    exact = cole_hopf_solution(phi0, nu, np.arange(4) * 0.05)
    u = solve_burgers(exact[:, 0], nu, t_end=0.15, dt_save=0.05, equation="vector")
    assert u.shape == (1, 4, n, n, 2)
    assert _rel(u, exact) <= 1e-6


def test_fourth_order_convergence_when_dt_halved():
    nu = 0.02
    exact = _cole_hopf_1d(nu, t_end=0.4, dt_save=0.04)
    errors = [_rel(solve_burgers(exact[:, 0], nu, 0.4, 0.04, dt=dt), exact) for dt in (0.02, 0.01, 0.005)]
    # ETDRK4: each halving should divide the error by ~16; demand at least 10.
    assert errors[0] / errors[1] > 10
    assert errors[1] / errors[2] > 10


def test_internal_step_divides_save_interval():
    exact = _cole_hopf_1d(0.05, n=128, t_end=0.1, dt_save=0.01)
    # dt=0.003 does not divide 0.01: 4 substeps of 0.0025 are used and frames land exactly on the save times.
    u = solve_burgers(exact[:, 0], 0.05, 0.1, 0.01, dt=0.003)
    assert u.shape[1] == 11
    assert _rel(u, exact) < 1e-7  # a frame off by one substep would be ~1e-3 off
    with pytest.raises(ValueError, match="multiple"):
        solve_burgers(exact[:, 0], 0.05, 0.105, 0.01)


def test_1d_and_2d_scalar_conserve_the_mean_exactly():
    rng = np.random.default_rng(1)
    u0 = gaussian_random_field(rng, 3, 128, amplitude=1.0) + np.array([[0.3], [-0.2], [0.0]])
    u = solve_burgers(u0, 0.01, 0.3, 0.05)
    drift = np.abs(u.mean(axis=-1) - u[:, :1].mean(axis=-1)).max()
    assert drift < 1e-14
    u0 = gaussian_random_field(rng, 2, 32, dim=2, amplitude=1.0) + 0.25
    u = solve_burgers(u0, 0.02, 0.2, 0.05)
    assert u.shape == (2, 5, 32, 32)
    drift = np.abs(u.mean(axis=(2, 3)) - u[:, :1].mean(axis=(2, 3))).max()
    assert drift < 1e-14
    assert np.abs(u[:, -1] - u[:, 0]).max() > 0.05  # something did happen


def test_2d_vector_runs_and_conserves_mean_for_curl_free_velocity():
    rng = np.random.default_rng(2)
    u0 = gaussian_random_field(rng, 2, 32, dim=2, channels=2, amplitude=1.0, curl_free=True) + np.array([0.2, -0.1])
    u = solve_burgers(u0, 0.02, 0.2, 0.05, equation="vector")
    assert u.shape == (2, 5, 32, 32, 2)
    assert np.all(np.isfinite(u))
    drift = np.abs(u.mean(axis=(2, 3)) - u[:, :1].mean(axis=(2, 3))).max()
    assert drift < 1e-14
    # A general (rotational) velocity also runs; its mean is not an invariant of the advective form.
    u0 = gaussian_random_field(rng, 2, 32, dim=2, channels=2, amplitude=1.0)
    u = solve_burgers(u0, 0.02, 0.2, 0.05, equation="vector")
    assert np.all(np.isfinite(u)) and np.abs(u).max() <= 1.05


def test_stable_and_bounded_at_low_viscosity():
    rng = np.random.default_rng(3)
    u0 = gaussian_random_field(rng, 4, 1024, amplitude=1.0)
    u = solve_burgers(u0, 1e-3, t_end=1.0, dt_save=0.1)
    assert np.all(np.isfinite(u))
    # Maximum principle (up to small Gibbs overshoot) and energy decay (dealiased Galerkin nonlinearity is neutral).
    assert np.abs(u).max() <= 1.02 * np.abs(u[:, 0]).max()
    energy = (u**2).mean(axis=-1)
    assert np.all(np.diff(energy, axis=1) <= 1e-9)
    assert np.all(energy[:, -1] < 0.9 * energy[:, 0])  # shocks dissipate


def test_stable_time_step_scales_with_viscosity():
    assert stable_time_step(1.0, 0.01, 1024) == pytest.approx(0.004, rel=0.01)
    assert stable_time_step(1.0, 0.001, 1024) < stable_time_step(1.0, 0.01, 1024)
    assert stable_time_step(0.0, 0.01, 1024) == np.inf


def test_gaussian_random_field_properties():
    u = gaussian_random_field(np.random.default_rng(0), 5, 64, amplitude=0.7)
    assert u.shape == (5, 64)
    np.testing.assert_allclose(u.mean(axis=1), 0.0, atol=1e-14)
    np.testing.assert_allclose(np.abs(u).max(axis=1), 0.7)
    again = gaussian_random_field(np.random.default_rng(0), 5, 64, amplitude=0.7)
    np.testing.assert_array_equal(u, again)
    ranged = gaussian_random_field(7, 50, 32, amplitude=(0.5, 1.5))
    peaks = np.abs(ranged).max(axis=1)
    assert peaks.min() >= 0.5 and peaks.max() <= 1.5 and peaks.std() > 0.1
    raw = gaussian_random_field(0, 200, 64, alpha=2.0, tau=5.0, sigma=25.0, amplitude=None)
    # FNO 1D prior: pointwise variance sum_n 625 / (4 pi^2 n^2 + 25)^2 over n != 0, about 0.46.
    n = np.fft.fftfreq(64, 1 / 64)[1:]
    expected = np.sum(625.0 / (4 * np.pi**2 * n**2 + 25.0) ** 2)
    assert raw.var() == pytest.approx(expected, rel=0.15)
    vec = gaussian_random_field(0, 2, 16, dim=2, channels=2, amplitude=1.0)
    assert vec.shape == (2, 16, 16, 2)
    np.testing.assert_allclose(np.sqrt((vec**2).sum(-1)).max(axis=(1, 2)), 1.0)


def test_sinusoid_initial_condition():
    u = sinusoid_initial_condition(np.random.default_rng(0), 200, 128)
    assert u.shape == (200, 128) and np.all(np.isfinite(u))
    assert np.abs(u).max() <= 2.0  # two waves with amplitudes <= 1
    folded = np.all(u >= -1e-12, axis=1) | np.all(u <= 1e-12, axis=1)
    assert 5 <= folded.sum() <= 45  # ~10% take |.| (and some windows of folded ones)
    u2 = sinusoid_initial_condition(0, 3, 32, dim=2, channels=2)
    assert u2.shape == (3, 32, 32, 2)
