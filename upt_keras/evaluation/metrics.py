"""Physical-space error metrics for PDE surrogates, following the PDEBench definitions (numpy only).

Shapes: `pred` and `true` are `(B, *grid, C)` for one step, or `(B, K, *grid, C)` for K time steps with `time_axis=1`.
`grid` is `(X,)` for 1D and `(H, W)` for 2D; a point cloud `(B, N, C)` is treated like a 1D grid for the metrics that
do not need neighbours (RMSE, nRMSE, cRMSE, max error).

Every metric is first computed per sample, per channel and per time step over the spatial points, then reduced the way
PDEBench reduces it (Takamoto et al., NeurIPS 2022 Datasets and Benchmarks):

- RMSE:   sqrt(mean_x (pred - true)^2) per (sample, step, channel); mean over samples, steps and channels.
- nRMSE:  ||pred - true|| / ||true|| per (sample, step, channel) (the sqrt(N) factors cancel); mean over the rest.
- cRMSE:  error of the spatial mean: d = mean_x pred - mean_x true per (sample, step, channel);
          sqrt(mean over samples of d^2) per (step, channel); mean over steps and channels.
- bRMSE:  1D: sqrt((e_first^2 + e_last^2) / 2); 2D: sqrt of the mean squared error over the four edges of the border
          ring (each edge taken whole, so corners count twice, divided by 2H + 2W as PDEBench does); mean over the rest.
- fRMSE:  see `frmse`.
- max error: max |pred - true| over samples and points per (step, channel); mean over steps and channels.

All arithmetic is done in float64. Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "rmse",
    "nrmse",
    "crmse",
    "brmse",
    "frmse",
    "max_error",
    "all_metrics",
    "per_step_metrics",
    "normalize",
    "denormalize",
    "FRMSE_BANDS",
]

#: Fourier bands of `frmse`, as half-open wavenumber-index ranges (PDEBench iLow=4, iHigh=12).
FRMSE_BANDS = {"low": (0, 4), "mid": (4, 12), "high": (12, None)}


def _prepare(pred, true, time_axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Return float64 copies shaped (B, T, *grid, C); T = 1 when there is no time axis."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred and true must have the same shape, got {p.shape} and {t.shape}")
    min_ndim = 3 if time_axis is None else 4
    if p.ndim < min_ndim:
        layout = "(B, *grid, C)" if time_axis is None else "(B, K, *grid, C)"
        raise ValueError(f"expected arrays shaped {layout} (at least {min_ndim} dims), got shape {p.shape}")
    if time_axis is None:
        return p[:, None], t[:, None]
    axis = time_axis % p.ndim
    if axis in (0, p.ndim - 1):
        raise ValueError(f"time_axis={time_axis} must not be the batch or channel axis of shape {p.shape}")
    return np.moveaxis(p, axis, 1), np.moveaxis(t, axis, 1)


def _flat(x: np.ndarray) -> np.ndarray:
    """(B, T, *grid, C) -> (B, T, N, C)."""
    return x.reshape(x.shape[0], x.shape[1], -1, x.shape[-1])


def _rmse_btc(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean((_flat(p) - _flat(t)) ** 2, axis=2))


def _nrmse_btc(p: np.ndarray, t: np.ndarray, eps: float) -> np.ndarray:
    err = np.sqrt(np.sum((_flat(p) - _flat(t)) ** 2, axis=2))
    norm = np.sqrt(np.sum(_flat(t) ** 2, axis=2))
    return err / np.maximum(norm, eps)


def _spatial_ndim(p: np.ndarray) -> int:
    return p.ndim - 3


def rmse(pred, true, time_axis: int | None = None) -> float:
    """Root-mean-square error over the spatial points, averaged over samples, steps and channels."""
    p, t = _prepare(pred, true, time_axis)
    return float(np.mean(_rmse_btc(p, t)))


def nrmse(pred, true, time_axis: int | None = None, eps: float = 1e-12) -> float:
    """Normalised RMSE ||pred - true|| / ||true|| (L2 over space) per sample, step and channel, then averaged.

    A truth field with zero norm is divided by `eps` instead, so an exact prediction of it scores 0 and any error
    scores very large rather than inf or nan.
    """
    p, t = _prepare(pred, true, time_axis)
    return float(np.mean(_nrmse_btc(p, t, eps)))


def nrmse_per_channel(pred, true, time_axis: int | None = None, eps: float = 1e-12) -> np.ndarray:
    """`nrmse` of each channel (C,): per sample and step, then averaged over samples and steps."""
    p, t = _prepare(pred, true, time_axis)
    return np.mean(_nrmse_btc(p, t, eps), axis=(0, 1))


def crmse(pred, true, time_axis: int | None = None) -> float:
    """RMSE of the spatial mean (conserved quantity), RMS over samples, mean over steps and channels."""
    p, t = _prepare(pred, true, time_axis)
    diff = np.mean(_flat(p), axis=2) - np.mean(_flat(t), axis=2)  # (B, T, C)
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=0))))


def brmse(pred, true, time_axis: int | None = None) -> float:
    """RMSE on the boundary: the first and last point in 1D, the four edges of the border ring in 2D."""
    p, t = _prepare(pred, true, time_axis)
    e2 = (p - t) ** 2
    nd = _spatial_ndim(p)
    if nd == 1:
        per = (e2[:, :, 0] + e2[:, :, -1]) / 2.0  # (B, T, C)
    elif nd == 2:
        h, w = p.shape[2], p.shape[3]
        edges_h = np.sum(e2[:, :, 0] + e2[:, :, -1], axis=2)  # first/last row, summed along W
        edges_w = np.sum(e2[:, :, :, 0] + e2[:, :, :, -1], axis=2)  # first/last column, summed along H
        per = (edges_h + edges_w) / (2 * h + 2 * w)
    else:
        raise ValueError(f"brmse needs a 1D or 2D grid, got {nd} spatial dims in shape {p.shape}")
    return float(np.mean(np.sqrt(per)))


def _fourier_error_spectrum(p: np.ndarray, t: np.ndarray, domain_lengths: Sequence[float] | None) -> np.ndarray:
    """Per wavenumber index: sqrt(mean over samples of |F(pred - true)|^2), normalised; shape (T, K, C)."""
    nd = _spatial_ndim(p)
    if nd not in (1, 2):
        raise ValueError(f"frmse needs a 1D or 2D grid, got {nd} spatial dims in shape {p.shape}")
    lengths = tuple(domain_lengths) if domain_lengths is not None else (1.0,) * nd
    if len(lengths) != nd:
        raise ValueError(f"domain_lengths needs {nd} entries for shape {p.shape}, got {lengths}")
    diff = p - t  # the transform is linear: F(pred) - F(true) = F(pred - true)
    if nd == 1:
        nx = p.shape[2]
        spec = np.abs(np.fft.rfft(diff, axis=2)) ** 2  # (B, T, nx//2+1, C)
        return np.sqrt(np.mean(spec, axis=0)) / nx * lengths[0]
    h, w = p.shape[2], p.shape[3]
    # The rfft over W holds the same coefficients as the full FFT for column indices < W//2 + 1,
    # so the quadrant [0, H//2) x [0, W//2) below is exactly the one PDEBench bins.
    spec = np.abs(np.fft.rfftn(diff, axes=(2, 3))) ** 2
    spec = spec[:, :, : h // 2, : w // 2]  # (B, T, H//2, W//2, C)
    num_shells = min(h // 2, w // 2)
    i, j = np.meshgrid(np.arange(h // 2), np.arange(w // 2), indexing="ij")
    shell = np.floor(np.sqrt(i**2 + j**2)).astype(int)
    binned = np.zeros(spec.shape[:2] + (num_shells,) + spec.shape[-1:])
    for s in range(num_shells):
        mask = shell == s
        binned[:, :, s] = np.sum(spec[:, :, mask], axis=2)
    return np.sqrt(np.mean(binned, axis=0)) / (h * w) * lengths[0] * lengths[1]


def frmse(pred, true, time_axis: int | None = None, domain_lengths: Sequence[float] | None = None) -> dict[str, float]:
    """Fourier-space RMSE in three wavenumber bands, as PDEBench computes it.

    What is implemented (PDEBench `metric_func`, iLow=4, iHigh=12):

    - 1D grid of N points: E_k = sqrt(mean over samples |rfft(pred - true)_k|^2) / N * L, for k = 0 .. N//2.
    - 2D grid H x W: |FFT(pred - true)|^2 on the non-negative-frequency quadrant i < H//2, j < W//2 only (as in
      PDEBench; modes with a negative frequency index and the Nyquist row/column are not counted), summed over
      radial shells s = floor(sqrt(i^2 + j^2)) for s < min(H, W)//2, then E_s = sqrt(mean over samples) / (H W) * Lx Ly.
    - Bands: low = mean of E over k < 4, mid = 4 <= k < 12, high = k >= 12; each then averaged over steps and
      channels. A band with no wavenumbers on this grid (e.g. `high` for N < 24 in 1D) is nan.

    Args:
        domain_lengths: physical length per spatial dimension (PDEBench Lx, Ly); 1.0 each by default.

    Returns:
        {"low": float, "mid": float, "high": float}
    """
    p, t = _prepare(pred, true, time_axis)
    spectrum = _fourier_error_spectrum(p, t, domain_lengths)  # (T, K, C)
    out = {}
    for name, (lo, hi) in FRMSE_BANDS.items():
        band = spectrum[:, lo:hi]
        out[name] = float(np.mean(band)) if band.shape[1] else float("nan")
    return out


def max_error(pred, true, time_axis: int | None = None) -> float:
    """Largest |pred - true| over samples and points, per step and channel, then averaged (PDEBench's reduction).

    For a single step and a single channel this is simply the global maximum absolute error.
    """
    p, t = _prepare(pred, true, time_axis)
    return float(np.mean(np.max(np.abs(_flat(p) - _flat(t)), axis=(0, 2))))


def all_metrics(
    pred, true, time_axis: int | None = None, domain_lengths: Sequence[float] | None = None
) -> dict[str, float]:
    """Every metric as a flat dict of floats.

    Keys: rmse, nrmse, crmse, max_error, on 1D/2D grids also brmse, frmse_low, frmse_mid, frmse_high, and with C > 1
    channels nrmse_c0 ... nrmse_c{C-1} (each channel's nRMSE).
    """
    p, t = _prepare(pred, true, time_axis)
    # Pass the prepared (B, T, *grid, C) arrays on with time_axis=1 so the conversion happens once.
    out = {
        "rmse": rmse(p, t, time_axis=1),
        "nrmse": nrmse(p, t, time_axis=1),
        "crmse": crmse(p, t, time_axis=1),
        "max_error": max_error(p, t, time_axis=1),
    }
    if p.shape[-1] > 1:  # several channels: each one's nRMSE too (a mean can hide one channel that is off)
        out.update({f"nrmse_c{c}": float(v) for c, v in enumerate(nrmse_per_channel(p, t, time_axis=1))})
    if _spatial_ndim(p) in (1, 2):
        out["brmse"] = brmse(p, t, time_axis=1)
        for band, value in frmse(p, t, time_axis=1, domain_lengths=domain_lengths).items():
            out[f"frmse_{band}"] = value
    return out


def per_step_metrics(pred, true, time_axis: int = 1, eps: float = 1e-12) -> dict[str, np.ndarray]:
    """nRMSE and RMSE per rollout step for arrays shaped (B, K, *grid, C).

    Returns:
        {"nrmse": array (K,), "rmse": array (K,)}, each averaged over samples and channels, and
        "nrmse_per_channel": array (K, C).
    """
    p, t = _prepare(pred, true, time_axis)
    per = _nrmse_btc(p, t, eps)
    return {
        "nrmse": np.mean(per, axis=(0, 2)),
        "nrmse_per_channel": np.mean(per, axis=0),
        "rmse": np.mean(_rmse_btc(p, t), axis=(0, 2)),
    }


def _channel_stats(x: np.ndarray, mean, std) -> tuple[np.ndarray, np.ndarray]:
    m = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    s = np.atleast_1d(np.asarray(std, dtype=np.float64))
    channels = x.shape[-1] if x.ndim else 1
    for name, v in (("mean", m), ("std", s)):
        if v.ndim != 1 or v.shape[0] not in (1, channels):
            raise ValueError(f"{name} needs 1 or {channels} per-channel values for shape {x.shape}, got {v.tolist()}")
    return m, s


def normalize(x, mean, std) -> np.ndarray:
    """(x - mean) / std with per-channel `mean` and `std` (lists or scalars) broadcast over the last axis."""
    arr = np.asarray(x)
    m, s = _channel_stats(arr, mean, std)
    if np.any(s == 0):
        raise ValueError(f"std must be non-zero for every channel, got {s.tolist()}")
    out = (arr - m) / s
    return out.astype(arr.dtype) if np.issubdtype(arr.dtype, np.floating) else out


def denormalize(x, mean, std) -> np.ndarray:
    """x * std + mean with per-channel `mean` and `std` (lists or scalars) broadcast over the last axis."""
    arr = np.asarray(x)
    m, s = _channel_stats(arr, mean, std)
    out = arr * s + m
    return out.astype(arr.dtype) if np.issubdtype(arr.dtype, np.floating) else out
