"""Batched pseudo-spectral solvers for periodic viscous Burgers equations (numpy only).

Three equations on the periodic domain ``[0, length)`` (``length`` in every direction):

- 1D scalar:  ``u_t + (u^2/2)_x = nu u_xx``
- 2D scalar:  ``u_t + (u^2/2)_x + (u^2/2)_y = nu Lap u``
- 2D vector:  ``u_t + u u_x + v u_y = nu Lap u`` and ``v_t + u v_x + v v_y = nu Lap v``

Time stepping is ETDRK4 (Cox-Matthews) with the coefficients evaluated by contour integrals as proposed by Kassam and
Trefethen, so the stiff diffusion is integrated exactly and only the nonlinear term is explicit. Products are formed on
the grid and truncated with the 2/3 rule. All samples of a batch are advanced together (the batch is the leading axis).

Grid convention: ``x_j = j * length / N`` for ``j = 0..N-1`` (the point 0 is included, ``length`` is not). Arrays are
channels-last: a 2D vector field has shape ``(batch, Nx, Ny, 2)`` with components ``(u, v)``.

Note on the 2D vector equation: its spatial mean is not an invariant in general (``d/dt mean(u_i) = mean(u_i div u)``).
It is conserved for curl-free velocities (``u = grad psi``), which the equation keeps curl-free; use
``gaussian_random_field(..., channels=2, curl_free=True)`` to draw such initial conditions.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "periodic_grid",
    "gaussian_random_field",
    "sinusoid_initial_condition",
    "stable_time_step",
    "solve_burgers",
    "cole_hopf_solution",
    "SpectralGrid",
    "etdrk4",
    "substeps_for",
]

# Points on the upper half of the contour circle used for the ETDRK4 coefficients. 32 points give coefficients accurate
# to roundoff for every value of h*L (Kassam & Trefethen use 16).
_CONTOUR_POINTS = 32


def periodic_grid(resolution, length=1.0):
    """Grid points of the periodic domain ``[0, length)`` along one axis.

    The model's ``upt_keras.grid_coordinates(grid_shape)`` uses the same convention on ``[0, 1)`` for every point of
    a grid.

    Args:
        resolution: number of points ``N``.
        length: domain length.

    Returns:
        float64 array ``(N,)`` with ``x_j = j * length / N``.

    Example:
        >>> periodic_grid(4)
        array([0.  , 0.25, 0.5 , 0.75])
    """
    resolution = int(resolution)
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    return np.arange(resolution, dtype=np.float64) * (float(length) / resolution)


# --------------------------------------------------------------------------------------------------------------------
# Spectral helpers
# --------------------------------------------------------------------------------------------------------------------


def _wavenumbers(shape, length):
    """Angular wavenumbers and integer mode indices broadcast to the rfftn layout of a grid of ``shape``."""
    dim = len(shape)
    ks, ns = [], []
    for axis, n in enumerate(shape):
        if axis == dim - 1:
            idx = np.fft.rfftfreq(n, d=1.0 / n)
        else:
            idx = np.fft.fftfreq(n, d=1.0 / n)
        bshape = [1] * dim
        bshape[axis] = idx.size
        idx = idx.reshape(bshape)
        ns.append(idx)
        ks.append(idx * (2.0 * math.pi / length))
    return ks, ns


def _dealias_mask(shape, ns):
    """2/3 rule: keep modes with |n| <= (N-1)//3 along every axis (so no product aliases back into the kept band)."""
    mask = np.ones([1] * len(shape), dtype=bool)
    for n_axis, n in zip(ns, shape):
        mask = mask & (np.abs(n_axis) <= (n - 1) // 3)
    return mask


def _etdrk4_coefficients(lin, h):
    """ETDRK4 coefficients for the diagonal linear operator ``lin`` and step ``h`` (contour integral evaluation)."""
    hl = h * lin
    roots = np.exp(1j * math.pi * (np.arange(1, _CONTOUR_POINTS + 1) - 0.5) / _CONTOUR_POINTS)
    lr = hl[..., None] + roots  # (..., M): points on a unit circle around each h*L
    e_lr = np.exp(lr)
    q = h * np.real(np.mean((np.exp(lr / 2.0) - 1.0) / lr, axis=-1))
    f1 = h * np.real(np.mean((-4.0 - lr + e_lr * (4.0 - 3.0 * lr + lr**2)) / lr**3, axis=-1))
    f2 = h * np.real(np.mean((2.0 + lr + e_lr * (-2.0 + lr)) / lr**3, axis=-1))
    f3 = h * np.real(np.mean((-4.0 - 3.0 * lr - lr**2 + e_lr * (4.0 - lr)) / lr**3, axis=-1))
    return np.exp(hl), np.exp(hl / 2.0), q, f1, f2, f3


class SpectralGrid:
    """Fourier operators of a periodic grid for the pseudo-spectral solvers (rfftn layout over the trailing axes).

    Attributes: ``shape``, ``dim``, ``axes`` (the spatial axes, counted from the end), ``ks`` (angular wavenumbers per
    axis, broadcast to the rfftn layout), ``k2`` (``|k|^2``), ``ik`` (``1j * k`` per axis) and ``mask`` (the 2/3 rule).

    Example:
        >>> g = SpectralGrid((8,), 1.0)
        >>> g.k2.shape
        (5,)
    """

    def __init__(self, shape, length):
        self.shape = tuple(int(s) for s in shape)
        self.dim = len(self.shape)
        self.axes = tuple(range(-self.dim, 0))
        self.ks, ns = _wavenumbers(self.shape, float(length))
        self.mask = _dealias_mask(self.shape, ns)
        self.k2 = sum(k**2 for k in self.ks)
        self.ik = [1j * k for k in self.ks]

    def forward(self, u):
        return np.fft.rfftn(u, axes=self.axes)

    def inverse(self, v):
        return np.fft.irfftn(v, s=self.shape, axes=self.axes)


class _Problem(SpectralGrid):
    """Operators of one Burgers equation on one grid (state: rfftn coefficients, components first for vectors)."""

    def __init__(self, shape, length, nu, equation):
        super().__init__(shape, length)
        self.equation = equation
        self.lin = -float(nu) * self.k2
        if equation == "scalar":
            # (u^2/2)_x + (u^2/2)_y = sum_i d_i (u^2/2): one transform pair per evaluation.
            self._flux_factor = -0.5 * sum(self.ik) * self.mask
        else:
            self._neg_mask = -self.mask.astype(np.float64)

    def nonlinear(self, v):
        """Spectral coefficients of minus the (dealiased) nonlinear term."""
        if self.equation == "scalar":
            u = self.inverse(v)
            return self._flux_factor * self.forward(u * u)
        # Vector: state (B, dim, *spectral); advective form -(u . grad) u_i.
        u = self.inverse(v)  # (B, dim, *grid)
        adv = None
        for j in range(self.dim):
            du = self.inverse(self.ik[j] * v)  # d_j u_i for every component i
            term = u[:, j : j + 1] * du
            adv = term if adv is None else adv + term
        return self._neg_mask * self.forward(adv)


def substeps_for(dt_save, dt):
    """The internal step ``dt_save / m`` for the smallest integer ``m`` with ``dt_save / m <= dt``; returns ``(h, m)``.

    Example:
        >>> substeps_for(0.01, 0.003)
        (0.0025, 4)
    """
    dt = float(dt)
    if not dt > 0.0:
        raise ValueError(f"dt must be > 0, got {dt}")
    m = max(1, int(math.ceil(float(dt_save) / dt - 1e-9)))
    return float(dt_save) / m, m


def etdrk4(lin, nonlinear, state, n_save, dt_save, dt, store):
    """Advance ``v_t = lin * v + nonlinear(v)`` in Fourier space with ETDRK4 and call ``store(i, v)`` at every frame.

    The one time integrator of the solvers in this package (Cox-Matthews ETDRK4, coefficients by Kassam-Trefethen
    contour integrals): ``lin`` is the diagonal linear operator (broadcast against ``state``), ``nonlinear`` maps the
    spectral state to the spectral coefficients of the rest of the right-hand side. The internal step is
    ``substeps_for(dt_save, dt)``, so frames land exactly on ``0, dt_save, ..., n_save * dt_save``.

    Args:
        lin: complex or real array, the linear operator's eigenvalues.
        nonlinear: callable ``v -> N(v)`` (same shape as ``v``).
        state: initial spectral state.
        n_save: frames after the initial one.
        dt_save: time between frames.
        dt: largest internal step.
        store: callable ``(i, v)``, called for ``i = 0..n_save``.

    Returns:
        the final spectral state.

    Example:
        >>> out = []
        >>> v = etdrk4(np.array([-1.0]), lambda v: 0.0 * v, np.array([1.0 + 0j]), 1, 1.0, 0.5,
        ...            lambda i, v: out.append(v.real[0]))
        >>> bool(abs(out[-1] - math.exp(-1.0)) < 1e-12)
        True
    """
    h, substeps = substeps_for(dt_save, dt)
    e, e2, q, f1, f2, f3 = _etdrk4_coefficients(lin, h)
    store(0, state)
    for i in range(1, int(n_save) + 1):
        for _ in range(substeps):
            nv = nonlinear(state)
            a = e2 * state + q * nv
            na = nonlinear(a)
            b = e2 * state + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2.0 * nb - nv)
            nc = nonlinear(c)
            state = e * state + f1 * nv + 2.0 * f2 * (na + nb) + f3 * nc
        store(i, state)
    return state


def stable_time_step(u_max, nu, resolution, length=1.0, dim=1, safety=1.0):
    """A time step for ETDRK4 on the Burgers equations, chosen for about 1e-6 relative accuracy (and stability).

    Diffusion is integrated exactly, so only the advective rate ``u_max |k|`` of the retained (2/3-rule) modes limits
    the step, and strongly damped high modes tolerate more. The step is ``1 / max_k (u_max |k| - 0.1 nu |k|^2)``, which
    for resolved runs is about ``0.4 nu / u_max^2``. Calibrated on 1D runs with ``nu`` from 1e-3 to 1e-1 and 256 to 1024
    points against runs with a 20x smaller step (relative errors about 1e-7 at nu <= 0.01, up to 1e-4 at nu = 0.1).
    Burgers solutions obey a maximum principle, so ``u_max`` of the initial condition bounds the whole run.

    Args:
        u_max: maximum absolute velocity (scalar).
        nu: viscosity.
        resolution: grid points per direction.
        length: domain length.
        dim: spatial dimension (1 or 2); for 2D the advective rate is taken along the diagonal (sum of both speeds).
        safety: factor (< 1 is more conservative).

    Returns:
        float, the suggested step.

    Example:
        >>> h = stable_time_step(1.0, 0.01, 1024)
        >>> 0.0 < h < 0.1
        True
    """
    u_max = float(u_max) * (dim if dim > 1 else 1)
    if u_max <= 0.0:
        return math.inf
    kmax_index = (int(resolution) - 1) // 3
    k = np.arange(1, kmax_index + 1) * (2.0 * math.pi / float(length))
    rate = u_max * k - _DAMPING_CREDIT * float(nu) * k**2
    worst = float(np.max(rate))
    if worst <= 0.0:
        worst = u_max * k[0]
    return safety * _ADVECTIVE_LIMIT / worst


_ADVECTIVE_LIMIT = 1.0
_DAMPING_CREDIT = 0.1


def _check_times(t_end, dt_save):
    t_end = float(t_end)
    dt_save = float(dt_save)
    if dt_save <= 0.0 or t_end < 0.0:
        raise ValueError(f"need dt_save > 0 and t_end >= 0, got dt_save={dt_save}, t_end={t_end}")
    n_save = int(round(t_end / dt_save))
    if abs(n_save * dt_save - t_end) > 1e-9 * max(1.0, t_end):
        raise ValueError(f"t_end={t_end} is not a multiple of dt_save={dt_save}")
    return n_save, dt_save


def solve_burgers(u0, nu, t_end, dt_save, dt=None, length=1.0, equation="scalar", dtype=np.float64):
    """Solve a batch of periodic viscous Burgers problems with ETDRK4 and 2/3 dealiasing.

    The equation and dimension follow from ``equation`` and the shape of ``u0``:
    ``(B, N)`` scalar 1D, ``(B, Nx, Ny)`` scalar 2D, ``(B, Nx, Ny, 2)`` vector 2D (``equation="vector"``).
    The initial state is projected onto the retained (2/3-rule) Fourier modes first; the returned frame 0 is that
    projection (identical to ``u0`` for resolved data).

    Args:
        u0: initial condition, shape as above (float array).
        nu: viscosity (> 0).
        t_end: final time; must be a multiple of ``dt_save``.
        dt_save: interval between returned frames.
        dt: largest allowed internal step. The step used is ``dt_save / m`` with the smallest integer ``m`` such that it
            does not exceed ``dt``. ``None`` picks ``stable_time_step`` from ``max |u0|``.
        length: domain length (same in every direction).
        equation: ``"scalar"`` or ``"vector"``.
        dtype: dtype of the returned array.

    Returns:
        array ``(B, T, *grid)`` (scalar) or ``(B, T, Nx, Ny, 2)`` (vector) with ``T = t_end / dt_save + 1`` frames at
        times ``0, dt_save, ..., t_end``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> u0 = gaussian_random_field(rng, 4, 256, amplitude=1.0)
        >>> u = solve_burgers(u0, nu=0.01, t_end=0.1, dt_save=0.01)
        >>> u.shape
        (4, 11, 256)
    """
    if equation not in ("scalar", "vector"):
        raise ValueError(f"equation must be 'scalar' or 'vector', got {equation!r}")
    u0 = np.asarray(u0, dtype=np.float64)
    if equation == "scalar":
        if u0.ndim not in (2, 3):
            raise ValueError(f"scalar Burgers needs u0 of shape (B, N) or (B, Nx, Ny), got {u0.shape}")
        grid = u0.shape[1:]
    else:
        if u0.ndim != 4 or u0.shape[-1] != 2:
            raise ValueError(f"vector Burgers needs u0 of shape (B, Nx, Ny, 2), got {u0.shape}")
        grid = u0.shape[1:3]
    nu = float(nu)
    if not nu > 0.0:
        raise ValueError(f"nu must be > 0, got {nu}")
    if not np.all(np.isfinite(u0)):
        raise ValueError("u0 contains NaN or inf")
    n_save, dt_save = _check_times(t_end, dt_save)

    if dt is None:
        dt = stable_time_step(np.max(np.abs(u0)) if u0.size else 0.0, nu, max(grid), length, dim=len(grid))
    prob = _Problem(grid, length, nu, equation)
    batch = u0.shape[0]

    if equation == "vector":
        state = prob.forward(np.moveaxis(u0, -1, 1))  # (B, 2, *spectral)
    else:
        state = prob.forward(u0)
    state = state * prob.mask

    out = np.empty((batch, n_save + 1) + tuple(u0.shape[1:]), dtype=dtype)

    def store(i, v):
        u = prob.inverse(v)
        out[:, i] = np.moveaxis(u, 1, -1) if equation == "vector" else u

    etdrk4(prob.lin, prob.nonlinear, state, n_save, dt_save, dt, store)
    return out


def cole_hopf_solution(phi0, nu, times, length=1.0):
    """Exact viscous Burgers solution via the Cole-Hopf transform, for a positive initial potential ``phi0``.

    ``phi`` solves the heat equation ``phi_t = nu Lap phi`` (evaluated exactly in Fourier space) and
    ``u = -2 nu grad(phi) / phi`` solves the Burgers equation: ``u_t + (u^2/2)_x = nu u_xx`` in 1D, and the 2D vector
    equation ``u_t + (u . grad) u = nu Lap u`` (a curl-free solution) in 2D.

    Args:
        phi0: positive array ``(B, N)`` (1D) or ``(B, Nx, Ny)`` (2D) on the grid of ``periodic_grid``; it should be
            smooth enough to be resolved spectrally.
        nu: viscosity.
        times: 1D sequence of times.
        length: domain length.

    Returns:
        float64 array ``(B, len(times), N)`` in 1D or ``(B, len(times), Nx, Ny, 2)`` in 2D.

    Example:
        >>> x = periodic_grid(128)
        >>> phi0 = np.exp(np.cos(2 * np.pi * x) / (4 * np.pi * 0.05))[None]  # gives u0 = sin(2 pi x)
        >>> u = cole_hopf_solution(phi0, nu=0.05, times=[0.0, 0.1])
        >>> u.shape
        (1, 2, 128)
    """
    phi0 = np.asarray(phi0, dtype=np.float64)
    if phi0.ndim not in (2, 3):
        raise ValueError(f"phi0 must have shape (B, N) or (B, Nx, Ny), got {phi0.shape}")
    if not np.all(phi0 > 0.0):
        raise ValueError("phi0 must be positive everywhere")
    grid = phi0.shape[1:]
    dim = len(grid)
    axes = tuple(range(-dim, 0))
    ks, _ = _wavenumbers(grid, float(length))
    k2 = sum(k**2 for k in ks)
    phi_hat = np.fft.rfftn(phi0, axes=axes)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    out_shape = (phi0.shape[0], times.size) + grid + ((dim,) if dim > 1 else ())
    out = np.empty(out_shape, dtype=np.float64)
    for i, t in enumerate(times):
        ph = phi_hat * np.exp(-float(nu) * k2 * t)
        phi = np.fft.irfftn(ph, s=grid, axes=axes)
        grads = [np.fft.irfftn(1j * k * ph, s=grid, axes=axes) for k in ks]
        if dim == 1:
            out[:, i] = -2.0 * nu * grads[0] / phi
        else:
            out[:, i] = np.stack([-2.0 * nu * g / phi for g in grads], axis=-1)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Initial conditions
# --------------------------------------------------------------------------------------------------------------------


def _as_rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _per_sample_amplitude(rng, amplitude, num_samples):
    if amplitude is None:
        return None
    if np.ndim(amplitude) == 0:
        return np.full(num_samples, float(amplitude))
    low, high = (float(a) for a in amplitude)
    if not 0.0 <= low <= high:
        raise ValueError(f"amplitude range must satisfy 0 <= low <= high, got {amplitude}")
    return rng.uniform(low, high, size=num_samples)


def _rescale(u, target, channel_axis):
    """Scale each sample so that its largest value of |u| (vector norm when channel_axis is set) equals target."""
    if target is None:
        return u
    mag = np.abs(u) if channel_axis is None else np.sqrt(np.sum(u**2, axis=channel_axis))
    peak = mag.reshape(u.shape[0], -1).max(axis=1)
    scale = np.where(peak > 0.0, target / np.where(peak > 0.0, peak, 1.0), 0.0)
    return u * scale.reshape((-1,) + (1,) * (u.ndim - 1))


def gaussian_random_field(
    rng,
    num_samples,
    resolution,
    dim=1,
    channels=None,
    alpha=2.5,
    tau=7.0,
    sigma=None,
    amplitude=1.0,
    length=1.0,
    curl_free=False,
):
    """Zero-mean periodic Gaussian random fields ``N(0, sigma^2 (-Lap + tau^2 I)^-alpha)`` (FNO-style).

    White noise is filtered in Fourier space with the square root of the covariance eigenvalues
    ``sigma^2 (|k|^2 + tau^2)^-alpha`` (``k`` angular wavenumbers of the domain ``[0, length)``); the mean mode is set
    to zero. With ``amplitude`` given, every sample is then rescaled so that its maximum of ``|u|`` (vector norm for
    vector fields) equals the amplitude (or a value drawn uniformly from an ``(low, high)`` range, one per sample).

    Args:
        rng: ``numpy.random.Generator`` or a seed.
        num_samples: number of fields ``B``.
        resolution: points per direction ``N``.
        dim: 1 or 2.
        channels: ``None`` for a scalar field, or the number of components (2 for a 2D velocity).
        alpha: smoothness exponent (larger is smoother).
        tau: inverse length scale.
        sigma: amplitude of the covariance; default ``tau**(alpha - dim/2)`` as in the FNO data generators. Irrelevant
            when ``amplitude`` is set.
        amplitude: target max ``|u|`` per sample (float), a ``(low, high)`` range, or ``None`` for no rescaling.
        length: domain length.
        curl_free: 2D vector only: draw a scalar potential ``psi`` and return ``grad psi`` (its spectrum is divided by
            ``|k|`` so the velocity has the same spectrum shape as a plain field).

    Returns:
        float64 array ``(B, N)``, ``(B, N, N)``, or with a trailing channel axis ``(B, ..., channels)``.

    Example:
        >>> u0 = gaussian_random_field(np.random.default_rng(0), 8, 256, amplitude=(0.5, 1.5))
        >>> u0.shape
        (8, 256)
    """
    rng = _as_rng(rng)
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim}")
    if curl_free and (dim != 2 or channels != 2):
        raise ValueError("curl_free needs dim=2 and channels=2")
    if sigma is None:
        sigma = tau ** (alpha - dim / 2.0)
    shape = (int(resolution),) * dim
    points = int(np.prod(shape))
    axes = tuple(range(-dim, 0))
    ks, _ = _wavenumbers(shape, float(length))
    k2 = sum(k**2 for k in ks)
    # Scaling so that u(x) = sum_k sqrt(lambda_k) xi_k e^{ikx} with E|xi_k|^2 = 1 (continuum normalisation).
    sqrt_eig = sigma * (k2 + tau**2) ** (-alpha / 2.0) * math.sqrt(points)
    sqrt_eig.flat[0] = 0.0
    amps = _per_sample_amplitude(rng, amplitude, num_samples)

    n_fields = 1 if (channels is None or curl_free) else int(channels)
    noise = rng.standard_normal((num_samples, n_fields) + shape)
    coeff = np.fft.rfftn(noise, axes=axes) * sqrt_eig
    if curl_free:
        kabs = np.sqrt(k2)
        inv = np.where(kabs > 0.0, 1.0 / np.where(kabs > 0.0, kabs, 1.0), 0.0)
        psi = coeff[:, 0] * inv
        u = np.stack([np.fft.irfftn(1j * k * psi, s=shape, axes=axes) for k in ks], axis=-1)
    else:
        u = np.fft.irfftn(coeff, s=shape, axes=axes)  # (B, C, *grid)
        u = u[:, 0] if channels is None else np.moveaxis(u, 1, -1)
    return _rescale(u, amps, None if channels is None else -1)


def sinusoid_initial_condition(
    rng,
    num_samples,
    resolution,
    dim=1,
    channels=None,
    num_waves=2,
    max_wavenumber=4,
    amplitude=1.0,
    p_abs=0.1,
    p_window=0.1,
    length=1.0,
):
    """PDEBench-style initial conditions: a few sinusoids, sometimes folded by ``|.|`` or cut by a tanh window.

    Each field is ``sum_j A_j sin(2 pi n_j . x / length + phi_j)`` with ``num_waves`` wave numbers drawn with
    replacement from ``1..max_wavenumber`` (in 2D each component of ``n_j`` in ``0..max_wavenumber``, not both 0),
    ``A_j ~ U[0, 1]``, ``phi_j ~ U[0, 2 pi)``. With probability ``p_abs`` the absolute value is taken; with probability
    ``p_window`` the field is multiplied by ``0.5 (tanh((x - xL)/d) - tanh((x - xR)/d))`` with
    ``xL ~ U[0.1, 0.45] L``, ``xR ~ U[0.55, 0.9] L``, ``d = 0.01 L`` (in 2D the product of such windows in x and y);
    finally a random sign and the factor ``amplitude`` are applied. The sharp windows need fine grids (>= 1024 in 1D).

    Args:
        rng: ``numpy.random.Generator`` or a seed.
        num_samples: number of fields ``B``.
        resolution: points per direction ``N``.
        dim: 1 or 2.
        channels: ``None`` for scalar, or number of independent components (trailing axis).
        num_waves: sinusoids per field.
        max_wavenumber: largest wave number.
        amplitude: overall factor (float).
        p_abs: probability of the absolute-value fold.
        p_window: probability of the tanh window.
        length: domain length.

    Returns:
        float64 array ``(B, N)``, ``(B, N, N)``, or with a trailing channel axis.

    Example:
        >>> u0 = sinusoid_initial_condition(np.random.default_rng(0), 8, 1024)
        >>> u0.shape
        (8, 1024)
    """
    rng = _as_rng(rng)
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim}")
    n_fields = 1 if channels is None else int(channels)
    length = float(length)
    x = periodic_grid(resolution, length)
    coords = np.meshgrid(*([x] * dim), indexing="ij")  # dim arrays of shape grid
    total = num_samples * n_fields
    u = np.zeros((total,) + coords[0].shape)
    for _ in range(num_waves):
        if dim == 1:
            waves = rng.integers(1, max_wavenumber + 1, size=(total, 1))
        else:
            waves = rng.integers(0, max_wavenumber + 1, size=(total, 2))
            zero = np.all(waves == 0, axis=1)
            waves[zero, 0] = rng.integers(1, max_wavenumber + 1, size=int(zero.sum()))
        amp = rng.uniform(0.0, 1.0, size=total)
        phase = rng.uniform(0.0, 2.0 * math.pi, size=total)
        arg = sum(waves[:, d].reshape((-1,) + (1,) * dim) * coords[d][None] for d in range(dim))
        u += amp.reshape((-1,) + (1,) * dim) * np.sin(2.0 * math.pi * arg / length + phase.reshape((-1,) + (1,) * dim))
    fold = rng.uniform(size=total) < p_abs
    u[fold] = np.abs(u[fold])
    window = rng.uniform(size=total) < p_window
    width = 0.01 * length
    for i in np.flatnonzero(window):
        mask = np.ones(coords[0].shape)
        for d in range(dim):
            xl = rng.uniform(0.1, 0.45) * length
            xr = rng.uniform(0.55, 0.9) * length
            mask = mask * 0.5 * (np.tanh((coords[d] - xl) / width) - np.tanh((coords[d] - xr) / width))
        u[i] *= mask
    sign = rng.choice([-1.0, 1.0], size=total)
    u *= (sign * float(amplitude)).reshape((-1,) + (1,) * dim)
    u = u.reshape((num_samples, n_fields) + coords[0].shape)
    return u[:, 0] if channels is None else np.moveaxis(u, 1, -1)
