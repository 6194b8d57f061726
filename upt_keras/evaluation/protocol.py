"""Test-set evaluation in physical units: one-step metrics, rollout curves, the identity baseline, and figures.

Everything here compares arrays in the units of the data file: the model takes and returns physical fields (it
normalises internally), and the truth comes straight from the file. Beside every model figure the identity baseline
(predict `u_{t+1} = u_t`, or `u_{t+k} = u_t` for a rollout) is reported, so a number can be judged at a glance.

```python
from upt_keras import evaluation
metrics = evaluation.evaluate(model, data, run_dir="runs/burgers1d")   # writes metrics.json and the PNGs
print(evaluation.format_summary(metrics))
```

`model` only needs `predict(x, batch_size=..., verbose=...)` and `rollout(x0, num_steps, mode=...)` (a `UPT`);
`data` is a `upt_keras.training.PreparedData` (its `test` and `rollout` datasets are used).

Rollouts start, by default, from the first frame of every test trajectory (`starts="initial"`, the PDEBench protocol);
`starts="all"` uses every start frame with enough frames after it.
"""

from __future__ import annotations

import os
import time

import numpy as np

from upt_keras._optional import MissingExtra, require
from upt_keras.data.pipeline import batch_size_of, concat_batches, identity_frames, map_batch, pad_batch
from upt_keras.evaluation import metrics as M
from upt_keras.backend import inference_mode
from upt_keras.run_files import write_json

__all__ = [
    "collect_pairs",
    "predict",
    "one_step_metrics",
    "rollout_arrays",
    "curve_summary",
    "rollout_metrics",
    "write_plots",
    "evaluate",
    "format_summary",
    "write_metrics",
]

ROLLOUT_MODES = ("latent", "physical")
METRICS_FILE = "metrics.json"
STEP_HISTORY_FILE = "history_steps.csv"  # written by upt_keras.training.monitoring.StepLog


def collect_pairs(dataset) -> tuple[np.ndarray, np.ndarray]:
    """All (inputs, targets) of a dataset of batches, concatenated in dataset order, as float32 numpy arrays (the
    inputs of a point cloud: a dict of them)."""
    xs, ys = [], []
    for i in range(len(dataset)):
        x, y = dataset[i]
        xs.append(x)
        ys.append(np.asarray(y, np.float32))
    return concat_batches(xs), np.concatenate(ys)


def predict(model, x, batch_size, verbose=0) -> np.ndarray:
    """model.predict on equal-sized batches (the last one padded), so compiled backends trace one shape only."""
    n = batch_size_of(x)
    batch_size = max(1, min(int(batch_size), n))
    x = pad_batch(x, n + (-n % batch_size))
    with inference_mode():
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=verbose), dtype=np.float32)[:n]


def one_step_metrics(model, dataset, batch_size: int | None = None, verbose=0, progress: bool = False) -> dict:
    """Physical-space metrics of one-step predictions on every pair of `dataset`, and of the identity baseline.

    Args:
        progress: show the progress (batches predicted: a bar on a terminal, one line in a log).

    Returns:
        `{"model": all_metrics(pred, truth), "identity": all_metrics(u_t, truth), "num_pairs": n}` (`u_t` where the
        targets are: on the full grid for a point cloud's inputs evaluated on the grid).
    """
    from upt_keras.progress import Progress

    batch_size = batch_size or getattr(dataset, "batch_size", 32)
    bar = Progress(len(dataset), f"test, one step ({getattr(dataset, 'num_pairs', '?')} pairs)", "batches",
                   enabled=progress)
    xs, ys, preds = [], [], []
    for i in range(len(dataset)):
        x, y = dataset[i]
        xs.append(identity_frames(dataset, i, x))
        ys.append(np.asarray(y, np.float32))
        preds.append(predict(model, x, batch_size, verbose))
        bar.update(i + 1)
    bar.close()
    x, y, pred = np.concatenate(xs), np.concatenate(ys), np.concatenate(preds)
    if pred.shape != y.shape:
        raise ValueError(f"model predictions have shape {pred.shape}, the targets {y.shape}")
    return {"model": M.all_metrics(pred, y), "identity": M.all_metrics(x, y), "num_pairs": int(x.shape[0])}


def rollout_starts(dataset, starts: str = "initial") -> np.ndarray:
    """The (trajectory, start frame) pairs, (n, 2), that `rollout_arrays` rolls out from (nothing is read)."""
    if starts not in ("initial", "all"):
        raise ValueError(f"starts must be 'initial' or 'all', got {starts!r}")
    if dataset.rollout_steps is None:
        raise ValueError("the dataset has no rollout targets (build it with rollout_steps=K)")
    pairs = dataset.pairs
    return pairs[pairs[:, 1] == pairs[:, 1].min()] if starts == "initial" else pairs


def rollout_arrays(dataset, starts: str = "initial"):
    """Initial inputs, target frames and (trajectory, start frame) of the rollouts of a rollout `PairDataset`.

    Args:
        dataset: a `PairDataset` built with `rollout_steps=K`.
        starts: `"initial"` (start frame 0 of every trajectory) or `"all"` (every start frame).

    Returns:
        `(x0 (n, *grid, C), targets (n, K, *grid, C), pairs (n, 2))`; `x0` is what the model takes (a point cloud's
        dict, `PairDataset.model_inputs`).
    """
    k = dataset.rollout_steps
    pairs = rollout_starts(dataset, starts)
    traj, t0 = pairs[:, 0], pairs[:, 1]
    offsets = dataset.time_stride * np.arange(1, k + 1)
    x0 = dataset.model_inputs(traj, t0) if hasattr(dataset, "model_inputs") else dataset.trajectories[traj, t0]
    targets = dataset.trajectories[traj[:, None], t0[:, None] + offsets[None, :]]
    return map_batch(lambda a: np.asarray(a, np.float32), x0), np.asarray(targets, np.float32), pairs


def curve_summary(pred, truth) -> dict:
    """Per-step nRMSE and RMSE of (n, K, *grid, C) arrays, their mean over the K steps and the value at step K; with
    C > 1 channels also each channel's nRMSE mean over the steps (`nrmse_mean_c0`, ...)."""
    steps = M.per_step_metrics(pred, truth, time_axis=1)
    nrmse = [float(v) for v in steps["nrmse"]]
    rmse = [float(v) for v in steps["rmse"]]
    out = {
        "nrmse_mean": float(np.mean(nrmse)),
        "nrmse_last": nrmse[-1],
        "rmse_mean": float(np.mean(rmse)),
        "rmse_last": rmse[-1],
        "nrmse_per_step": nrmse,
        "rmse_per_step": rmse,
    }
    channels = steps["nrmse_per_channel"]
    if channels.shape[1] > 1:  # several channels: each one's mean over the steps
        out.update({f"nrmse_mean_c{c}": float(v) for c, v in enumerate(np.mean(channels, axis=0))})
    return out


def rollout_metrics(model, dataset, modes=ROLLOUT_MODES, starts: str = "initial", num_steps: int | None = None,
                    batch_size: int = 64, return_predictions: bool = False, progress: bool = False):
    """Autoregressive rollouts on the test trajectories, per mode, with the identity baseline.

    Args:
        model: has `rollout(x0, num_steps, mode=...)` returning (B, K, *grid, C) in physical units.
        dataset: a rollout `PairDataset` (targets (B, K, *grid, C)).
        modes: any of `"latent"` (encode once, step in latent space) and `"physical"` (decode and re-encode every
            step).
        starts: see `rollout_arrays`.
        num_steps: steps to compare (default and maximum: the dataset's `rollout_steps`).
        batch_size: rollouts computed together.
        return_predictions: also return `{mode: predictions}` and the arrays used.
        progress: show the progress of each mode (rollouts done: a bar on a terminal, one line in a log).

    Returns:
        `{"num_steps", "num_rollouts", "starts", "<mode>": curve_summary(...) + {"seconds"}, "identity": ...}`,
        and with `return_predictions` a second value `{"x0", "targets", "pairs", "<mode>": predictions}` (`x0`: the
        initial frames where the targets are).
    """
    for mode in modes:
        if mode not in ROLLOUT_MODES:
            raise ValueError(f"rollout mode must be one of {ROLLOUT_MODES}, got {mode!r}")
    x0, targets, pairs = rollout_arrays(dataset, starts)
    u0 = np.asarray(dataset.trajectories[pairs[:, 0], pairs[:, 1]], np.float32)  # u_t where the targets are
    k = targets.shape[1]
    if num_steps is not None:
        if not 1 <= int(num_steps) <= k:
            raise ValueError(f"num_steps must be in [1, {k}], got {num_steps}")
        k = int(num_steps)
        targets = targets[:, :k]
    n = batch_size_of(x0)
    out = {"num_steps": int(k), "num_rollouts": n, "starts": starts}
    preds = {"x0": u0, "targets": targets, "pairs": pairs}
    from upt_keras.progress import Progress

    for mode in modes:
        start = time.perf_counter()
        bar = Progress(n, f"test, {mode} rollouts of {k} steps", "rollouts", enabled=progress)
        parts = []
        with inference_mode():
            for i in range(0, n, batch_size):
                batch = map_batch(lambda a: a[i:i + batch_size], x0)
                parts.append(np.asarray(model.rollout(batch, k, mode=mode), np.float32))
                bar.update(min(i + batch_size, n))
        bar.close()
        seconds = time.perf_counter() - start
        pred = np.concatenate(parts)
        if pred.shape != targets.shape:
            raise ValueError(f"{mode} rollout has shape {pred.shape}, the targets {targets.shape}")
        out[mode] = {**curve_summary(pred, targets), "seconds": round(seconds, 3)}
        preds[mode] = pred
    identity = np.repeat(u0[:, None], k, axis=1)
    out["identity"] = curve_summary(identity, targets)
    return (out, preds) if return_predictions else out


def _field_name(data) -> str:
    """The first field's name: the file's channel name where it has one, else `u`."""
    names = (getattr(data, "info", None) or {}).get("channel_names")
    return str(names[0]) if names else "u"


def _has_times(data, pairs, k) -> bool:
    stride = getattr(data, "time_stride", 1) or 1
    times = getattr(data, "times", None)
    return times is not None and len(times) > int(pairs[0, 1]) + k * stride


def _frame_times(data, pairs, k):
    """Times of frames t0, t0 + s, ..., t0 + k s of the first rollout (or step numbers when unknown)."""
    stride = getattr(data, "time_stride", 1) or 1
    t0 = int(pairs[0, 1])
    times = getattr(data, "times", None)
    if times is not None and len(times) > t0 + k * stride:
        return np.asarray(times)[t0: t0 + k * stride + 1: stride]
    return np.arange(k + 1, dtype=float)


def write_plots(run_dir, rollout=None, predictions=None, data=None, history=None) -> dict:
    """Figures of a run; returns `{name: path}` of the files written.

    - `loss_curves.png`: losses, validation nRMSE beside the identity's and curriculum weights, per step when
      `history_steps.csv` lies beside the `history` CSV, else per epoch (`history`: a CSV path or dict).
    - `rollout_nrmse.png`: nRMSE per rollout step, one curve per mode and the identity baseline.
    - 1D: `rollout_spacetime_<mode>.png`: truth / prediction / |error| of the first test rollout
      (frames 0..K, the first field, named on the colourbars; physical times where the file has them); 2D:
      `rollout_frames_<mode>.png`.

    Without matplotlib (the `plot` extra) no figure is drawn: one line says so, and the result is empty.
    """
    from upt_keras.evaluation import plots

    try:
        require("matplotlib")
    except MissingExtra as err:
        print(f"upt-keras: figures skipped: {err}", flush=True)
        return {}
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    written = {}
    if isinstance(history, (str, os.PathLike)):
        steps = os.path.join(os.path.dirname(os.fspath(history)), STEP_HISTORY_FILE)
        if os.path.exists(steps) and os.path.getsize(steps) > 0:
            history = steps  # per step: a short run has one or two epochs
    if history is not None and (not isinstance(history, (str, os.PathLike)) or os.path.exists(history)):
        try:
            written["loss_curves"] = plots.plot_loss_curves(history, os.path.join(run_dir, "loss_curves.png"))
        except ValueError:
            pass  # no loss column yet (e.g. an empty history)
    if rollout is not None:
        curves = {m: rollout[m]["nrmse_per_step"] for m in (*ROLLOUT_MODES, "identity") if m in rollout}
        written["rollout_nrmse"] = plots.plot_rollout_error(
            curves, os.path.join(run_dir, "rollout_nrmse.png"),
            title=f"test nRMSE per rollout step ({rollout['num_rollouts']} rollouts)",
            dt=getattr(data, "dt", None) if getattr(data, "times", None) is not None else None,
        )
    grid = getattr(data, "grid_shape", None)
    if predictions is not None and (grid is None or predictions["targets"].shape[2:-1] == tuple(grid)):
        # (figures of fields on the grid: none of targets at scattered points)
        x0, targets, pairs = predictions["x0"], predictions["targets"], predictions["pairs"]
        k = targets.shape[1]
        truth = np.concatenate([x0[:1, None], targets[:1]], axis=1)[0, ..., 0]  # (K+1, *grid)
        grid_ndim = truth.ndim - 1
        field = _field_name(data)
        for mode in ROLLOUT_MODES:
            if mode not in predictions:
                continue
            pred = np.concatenate([x0[:1, None], predictions[mode][:1]], axis=1)[0, ..., 0]
            title = f"{mode} rollout, test trajectory {int(pairs[0, 0])}, {field}"
            if grid_ndim == 1:
                coords = getattr(data, "coords", None)
                x = coords[0] if coords is not None and len(coords[0]) == truth.shape[1] else None
                name = f"rollout_spacetime_{mode}"
                t = _frame_times(data, pairs, k) if _has_times(data, pairs, k) else None
                written[name] = plots.plot_spacetime(truth, pred, os.path.join(run_dir, f"{name}.png"), x=x, t=t,
                                                     title=title, field=field)
            elif grid_ndim == 2:
                name = f"rollout_frames_{mode}"
                times = _frame_times(data, pairs, k)
                written[name] = plots.plot_frames_2d(truth, pred, os.path.join(run_dir, f"{name}.png"), title=title,
                                                     field=field, times=times if _has_times(data, pairs, k) else None)
    return written


def write_metrics(path, metrics: dict) -> str:
    """Write `metrics` as indented JSON (atomically); returns the path."""
    return write_json(path, metrics)


def evaluate(model, data, run_dir=None, plots: bool = True, history=None, modes=ROLLOUT_MODES,
             starts: str = "initial", extra: dict | None = None, verbose=0, progress: bool = False) -> dict:
    """One-step and rollout test metrics in physical units, beside the identity baseline; optional files.

    Args:
        model: a `UPT` (or anything with the same `predict` / `rollout`).
        data: a `PreparedData` with `test` (and, for rollouts, `rollout`) datasets.
        run_dir: when given, `metrics.json` and (with `plots`) the figures are written there.
        history: training history (CSV path or dict) for the loss-curve figure.
        modes: rollout modes to evaluate.
        starts: rollout start frames (see `rollout_arrays`).
        extra: more top-level entries for the metrics dict (e.g. `{"training": {...}}`).
        progress: show the progress of the one-step predictions and of each rollout mode.

    Returns:
        dict with `one_step` (`model`, `identity`, `num_pairs`), `rollout` (see `rollout_metrics`; absent without a
        rollout dataset), `backend`, anything in `extra`, and `files` (paths written).
    """
    import keras

    result = {"backend": keras.backend.backend()}
    result.update(extra or {})
    result["one_step"] = one_step_metrics(model, data.test, verbose=verbose, progress=progress)
    predictions = None
    if data.rollout is not None and modes:
        result["rollout"], predictions = rollout_metrics(model, data.rollout, modes=modes, starts=starts,
                                                         return_predictions=True, progress=progress)
    if run_dir is not None:
        files = {}
        if plots:
            files.update(write_plots(run_dir, result.get("rollout"), predictions, data, history))
        files["metrics"] = os.path.join(os.fspath(run_dir), METRICS_FILE)
        result["files"] = files
        write_metrics(files["metrics"], result)
    return result


def format_summary(metrics: dict) -> str:
    """A short text table of `evaluate`'s result: one-step nRMSE/RMSE vs identity, and the rollout errors."""
    lines = []
    one = metrics.get("one_step")
    if one:
        lines.append(f"test, one step ({one['num_pairs']} pairs)      model        identity")
        for key, label in (("nrmse", "nRMSE"), ("rmse", "RMSE"), ("max_error", "max error")):
            lines.append(f"  {label:<30}{one['model'][key]:<13.5f}{one['identity'][key]:.5f}")
    ro = metrics.get("rollout")
    if ro:
        k = ro["num_steps"]
        lines.append(f"test, {k}-step rollout ({ro['num_rollouts']} rollouts)   mean nRMSE   nRMSE at step {k}")
        for mode in (*ROLLOUT_MODES, "identity"):
            if mode in ro:
                secs = f"   ({ro[mode]['seconds']:.1f} s)" if "seconds" in ro[mode] else ""
                lines.append(f"  {mode:<30}{ro[mode]['nrmse_mean']:<13.5f}{ro[mode]['nrmse_last']:.5f}{secs}")
    tr = metrics.get("training")
    if tr:
        lines.append(
            f"training: {tr['epochs_completed']} epoch(s) in {tr['train_seconds']:.0f} s on {tr['backend']}"
            + (" (stopped by the time budget)" if tr.get("stopped_by_time_budget") else "")
            + (f", resumed at epoch {tr['resumed_from_epoch']}" if tr.get("resumed_from_epoch") is not None else "")
        )
    return "\n".join(lines)
