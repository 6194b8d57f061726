"""Figures for training runs and evaluations, written as PNG files.

matplotlib is imported inside each function and figures are drawn on the Agg canvas directly (no pyplot, no global
backend switch), so importing this module is cheap and it works on machines without a display. matplotlib comes with
the `plot` extra (`pip install "upt-keras[plot]"`); without it, each function raises `MissingExtra` saying so.
Every function returns the path it wrote.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Mapping, Sequence

import numpy as np

__all__ = ["plot_loss_curves", "plot_spacetime", "plot_frames_2d", "plot_rollout_error", "read_history"]

#: Loss components drawn by `plot_loss_curves`, in this order, when present in the history.
LOSS_COLUMNS = ("loss", "forward_loss", "inv_enc_loss", "inv_dec_loss", "consistency_loss", "val_loss",
                "val_forward_loss")
#: Validation nRMSE and the identity baseline's, drawn on a panel of their own when present.
NRMSE_COLUMNS = ("val_nrmse", "val_identity_nrmse")
#: Curriculum weights drawn on the lower panel when present.
WEIGHT_COLUMNS = ("lambda_inv_enc", "lambda_inv_dec")

_DPI = 100


def _new_figure(width_in: float, height_in: float, layout: str | None = None):
    from upt_keras._optional import require  # here, so that this module loads on its own

    require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _to_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_history(history) -> dict[str, np.ndarray]:
    """Load a training history: a CSV path (as written by keras.callbacks.CSVLogger), a dict of per-epoch lists,
    or a keras History object (its `.history` dict). Non-numeric cells become nan."""
    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history
    if isinstance(history, Mapping):
        return {str(k): np.array([_to_float(v) for v in np.ravel(vals)]) for k, vals in history.items()}
    if isinstance(history, (str, os.PathLike)):
        with open(history, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            return {}
        return {k: np.array([_to_float(r.get(k)) for r in rows]) for k in rows[0] if k is not None}
    raise TypeError(f"history must be a CSV path, a dict of lists or a History, got {type(history).__name__}")


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y)
    return x[: len(y)][keep[: len(x)]], y[keep][: len(x)]


def plot_loss_curves(history_csv_or_dict, path, title: str | None = None) -> str:
    """Training history at a glance: losses (log y), the validation nRMSE beside the identity's, and, when logged, the
    inverse-loss curriculum weights.

    The x axis is the training step when the history has a `step` column (`history_steps.csv`), else the epoch
    (1-based); ticks are integers. Drawn when present: `loss, forward_loss, inv_enc_loss, inv_dec_loss,
    consistency_loss, val_forward_loss` (`val_loss` only when `val_forward_loss` is absent: they are the same value
    and one would hide the other); `val_nrmse` with `val_identity_nrmse` (the error of predicting `u_t+1 = u_t`);
    `lambda_inv_enc`, `lambda_inv_dec`. A value missing in a row (e.g. no validation at that step) is skipped.

    Raises:
        ValueError: when none of the loss columns is present.
    """
    hist = read_history(history_csv_or_dict)
    columns = list(LOSS_COLUMNS)
    if "val_forward_loss" in hist and np.any(np.isfinite(hist["val_forward_loss"])):
        columns.remove("val_loss")
    losses = [c for c in columns if c in hist and np.any(np.isfinite(hist[c]))]
    weights = [c for c in WEIGHT_COLUMNS if c in hist and np.any(np.isfinite(hist[c]))]
    nrmse = [c for c in NRMSE_COLUMNS if c in hist and np.any(np.isfinite(hist[c]))]
    if not losses:
        raise ValueError(f"no loss columns to plot; expected some of {list(LOSS_COLUMNS)}, got {sorted(hist)}")
    n = len(hist[losses[0]])
    if "step" in hist and len(hist["step"]) == n:
        xs, xlabel = hist["step"], "training step"
    else:
        epochs = hist["epoch"] if "epoch" in hist and len(hist["epoch"]) == n else np.arange(n, dtype=float)
        xs, xlabel = epochs + 1, "epoch"

    panels = 1 + bool(nrmse) + bool(weights)
    ratios = [3] + ([2] if nrmse else []) + ([1] if weights else [])
    fig = _new_figure(8, 3.0 + 2.0 * (panels - 1) + 1.5)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": ratios})[:, 0]
    ax = axes[0]
    for col in losses:
        x, y = _finite(xs, hist[col][:n])
        val = col.startswith("val_")
        ax.plot(x, y, "--" if val else "-", marker="o" if val else None, markersize=3, label=col)
    if any(np.any(hist[c] > 0) for c in losses):
        ax.set_yscale("log")  # non-positive values (e.g. inverse losses switched off) are masked
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "training history")
    row = 1
    if nrmse:
        ax_n = axes[row]
        row += 1
        for col in nrmse:
            x, y = _finite(xs, hist[col][:n])
            label = "identity (u_t+1 = u_t)" if col == "val_identity_nrmse" else "validation nRMSE"
            ax_n.plot(x, y, ":" if col == "val_identity_nrmse" else "-", marker="o", markersize=3, label=label,
                      color="grey" if col == "val_identity_nrmse" else None)
        if all(np.any(hist[c] > 0) for c in nrmse):
            ax_n.set_yscale("log")
        ax_n.set_ylabel("one-step nRMSE")
        ax_n.grid(True, which="both", alpha=0.3)
        ax_n.legend(fontsize=8)
    if weights:
        ax_w = axes[row]
        for col in weights:
            x, y = _finite(xs, hist[col][:n])
            ax_w.plot(x, y, marker="o", markersize=2.5, label=col)
        ax_w.set_ylabel("weight")
        ax_w.grid(True, alpha=0.3)
        ax_w.legend(fontsize=8)
    axes[-1].set_xlabel(xlabel)
    _integer_ticks(axes[-1].xaxis)
    fig.tight_layout()
    return _save(fig, path)


def _squeeze_channel(a: np.ndarray, ndim: int, name: str, layout: str) -> np.ndarray:
    if a.ndim == ndim + 1 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != ndim:
        raise ValueError(f"{name} must be shaped {layout} (or with a trailing channel of size 1), got shape {a.shape}")
    return a


def _check_pair(true, pred, ndim: int, layout: str) -> tuple[np.ndarray, np.ndarray]:
    t = _squeeze_channel(np.asarray(true, dtype=float), ndim, "true", layout)
    p = _squeeze_channel(np.asarray(pred, dtype=float), ndim, "pred", layout)
    if t.shape != p.shape:
        raise ValueError(f"true and pred must have the same shape {layout}, got {t.shape} and {p.shape}")
    if min(t.shape) < 1:
        raise ValueError(f"empty array of shape {t.shape}")
    return t, p


def _value_range(*arrays: np.ndarray) -> tuple[float, float]:
    lo = min(float(np.nanmin(a)) for a in arrays)
    hi = max(float(np.nanmax(a)) for a in arrays)
    if hi == lo:
        hi = lo + 1e-12
    return lo, hi


def plot_spacetime(true, pred, path, x=None, t=None, title: str | None = None, field: str = "u") -> str:
    """Truth, prediction and absolute error of one 1D trajectory shaped (T, X) as space-time images.

    Args:
        x: optional coordinates of the X points (for the axis extent); defaults to indices.
        t: optional times of the T steps (the axis is then labelled `t`); defaults to step indices (`step`).
        field: the field's name, on the colourbars.
    """
    tr, pr = _check_pair(true, pred, 2, "(T, X)")
    nt, nx = tr.shape
    xs = np.arange(nx, dtype=float) if x is None else np.asarray(x, dtype=float).ravel()
    ts = np.arange(nt, dtype=float) if t is None else np.asarray(t, dtype=float).ravel()
    if xs.shape != (nx,) or ts.shape != (nt,):
        raise ValueError(f"x and t must have {nx} and {nt} entries for shape {tr.shape}, got {xs.shape} and {ts.shape}")
    extent = (xs[0], xs[-1] if nx > 1 else xs[0] + 1, ts[0], ts[-1] if nt > 1 else ts[0] + 1)
    err = np.abs(pr - tr)
    vmin, vmax = _value_range(tr, pr)

    fig = _new_figure(13, 4)
    axes = fig.subplots(1, 3, sharey=True)
    panels = ((tr, "truth", "viridis", vmin, vmax), (pr, "prediction", "viridis", vmin, vmax),
              (err, "|error|", "magma", 0.0, max(float(np.nanmax(err)), 1e-12)))
    for ax, (img, label, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(img, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=lo, vmax=hi,
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, label=f"|error| of {field}" if label == "|error|" else field)
        ax.set_title(label)
        ax.set_xlabel("x")
    axes[0].set_ylabel("t" if t is not None else "step")
    if t is None:
        _integer_ticks(axes[0].yaxis)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_frames_2d(true, pred, path, steps: Sequence[int] | None = None, title: str | None = None,
                   field: str = "u", times=None) -> str:
    """Rows truth / prediction / |error| of a 2D trajectory shaped (T, H, W), one column per selected step.

    Args:
        steps: time indices to show (negative indices count from the end); by default up to four evenly spaced steps
            including the first and the last.
        field: the field's name, on the colourbars.
        times: the T frame times (columns are then titled `t = ...`), or None (`step k`).
    """
    tr, pr = _check_pair(true, pred, 3, "(T, H, W)")
    nt = tr.shape[0]
    if steps is None:
        steps = sorted(set(np.linspace(0, nt - 1, num=min(4, nt)).round().astype(int).tolist()))
    steps = [int(s) for s in steps]
    if not steps:
        raise ValueError("steps must name at least one time index")
    bad = [s for s in steps if not -nt <= s < nt]
    if bad:
        raise ValueError(f"steps {bad} out of range for {nt} time steps (shape {tr.shape})")
    steps = [s % nt for s in steps]
    err = np.abs(pr - tr)
    vmin, vmax = _value_range(tr[steps], pr[steps])
    emax = max(float(np.nanmax(err[steps])), 1e-12)

    ncol = len(steps)
    fig = _new_figure(2.6 * ncol + 1.2, 7.5, layout="constrained")
    axes = np.array(fig.subplots(3, ncol, squeeze=False))
    rows = ((tr, "truth", "viridis", vmin, vmax), (pr, "prediction", "viridis", vmin, vmax),
            (err, "|error|", "magma", 0.0, emax))
    for r, (data, label, cmap, lo, hi) in enumerate(rows):
        for c, s in enumerate(steps):
            ax = axes[r, c]
            im = ax.imshow(data[s], origin="lower", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {float(times[s]):.4g}" if times is not None and len(times) == nt else f"step {s}")
            if c == 0:
                ax.set_ylabel(label)
        fig.colorbar(im, ax=list(axes[r]), shrink=0.9, label=f"|error| of {field}" if label == "|error|" else field)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_rollout_error(curves: Mapping[str, Sequence[float]], path, ylabel: str = "nRMSE",
                       title: str | None = None, logy: bool = True, dt: float | None = None) -> str:
    """Error per rollout step for several named curves (e.g. latent vs physical rollout); step 1 is the first
    predicted step. With `dt` (time per step) a second axis on top gives the physical time `step x dt`."""
    if not curves:
        raise ValueError("curves must contain at least one named curve")
    arrays = {}
    for name, values in curves.items():
        a = np.asarray(values, dtype=float)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"curve {name!r} must be a non-empty 1D array of per-step errors, got shape {a.shape}")
        arrays[name] = a
    fig = _new_figure(7, 4.5)
    ax = fig.subplots(1, 1)
    for name, a in arrays.items():
        ax.plot(np.arange(1, a.size + 1), a, marker="o", markersize=3, label=str(name))
    if logy and all(np.any(a > 0) for a in arrays.values()):
        ax.set_yscale("log")
    ax.set_xlabel("rollout step")
    _integer_ticks(ax.xaxis)
    if dt:
        top = ax.secondary_xaxis("top", functions=(lambda k: k * dt, lambda t: t / dt))
        top.set_xlabel(f"time after the start (dt = {dt:g})")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title or f"{ylabel} per rollout step")
    fig.tight_layout()
    return _save(fig, path)
