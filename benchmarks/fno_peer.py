"""The peer of `bench_accuracy.py`: a stock neuraloperator `FNO` (an FNO2d on 2D data) trained on the split of a
UPT config for a wall-clock budget, and evaluated with the same metric (PDEBench nRMSE in physical units).

Protocol: AdamW (`FNO_LR`, `FNO_WEIGHT_DECAY`), the relative L2 loss per sample and channel on the physical field,
inputs normalised with the training statistics, `FNO_SIZES` and batch `FNO_BATCH` in 1D, `FNO2D_SIZES` and batch
`FNO2D_BATCH` in 2D. One-step nRMSE on every test pair, then autoregressive 20-step rollouts from frame 0 of every
test trajectory (median wall time of 3). torch and neuraloperator are imported inside `run_fno` only.
"""

import time

import numpy as np

# The FNO of the peer protocol (benchmarks README): neuraloperator defaults otherwise; channels from the data.
FNO_SIZES = dict(n_modes=(32,), hidden_channels=64, n_layers=4)
FNO2D_SIZES = dict(n_modes=(16, 16), hidden_channels=32, n_layers=4)
FNO_LR, FNO_WEIGHT_DECAY, FNO_BATCH, FNO2D_BATCH = 1e-3, 1e-4, 64, 16


def channel_values(metrics, prefix):
    """Per-channel values `prefix0, prefix1, ...` of a metrics dict as a list (one channel: the mean's key).

    Both workers of `bench_accuracy.py` report their per-channel nRMSE with it.
    """
    values, c = [], 0
    while f"{prefix}{c}" in metrics:
        values.append(float(metrics[f"{prefix}{c}"]))
        c += 1
    return values


def run_fno(args, overrides):
    """A stock neuraloperator FNO (FNO2d on 2D data) on the same split, AdamW, relative-L2 loss, same budget.

    `args.config` with `overrides` names the data and split, `args.budget` the training seconds; returns the
    worker's result dict (one-step and rollout nRMSE, per channel too, rollout time, steps, parameters).
    """
    import torch
    from neuralop.models import FNO

    from upt_keras.evaluation import metrics as M
    from upt_keras import training
    from upt_keras.config import load_config
    from upt_keras.evaluation import collect_pairs, curve_summary, rollout_arrays

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config(args.config, list(overrides) + ["data.rollout_steps=20"])
    data = training.prepare_data(cfg, progress=False)
    mean, std = np.asarray(data.field_mean, np.float32), np.asarray(data.field_std, np.float32)  # (C,)
    channels, dims = len(mean), len(data.grid_shape)
    sizes, batch = (FNO_SIZES, FNO_BATCH) if dims == 1 else (FNO2D_SIZES, FNO2D_BATCH)
    train_ds = data.train
    x_all = np.asarray(train_ds.trajectories[train_ds.pairs[:, 0], train_ds.pairs[:, 1]], np.float32)
    y_all = np.asarray(train_ds.trajectories[train_ds.pairs[:, 0], train_ds.pairs[:, 1] + train_ds.time_stride],
                       np.float32)
    # (n, *grid, C) channels-last -> (n, C, *grid), normalised with the training statistics (as neuraloperator's
    # normalisers); mean_t / std_t undo it on the model's channels-first output.
    to_t = lambda a: torch.from_numpy(np.moveaxis((a - mean) / std, -1, 1).copy())  # noqa: E731
    mean_t, std_t = (torch.from_numpy(a.reshape((1, channels) + (1,) * dims)) for a in (mean, std))
    x_all, y_all = to_t(x_all), to_t(y_all)
    model = FNO(in_channels=channels, out_channels=channels, **sizes)
    opt = torch.optim.AdamW(model.parameters(), lr=FNO_LR, weight_decay=FNO_WEIGHT_DECAY)

    def rel_l2(pred, true):  # per sample and channel (L2 over the grid), then the mean
        diff = (pred - true).flatten(2).norm(dim=2)
        return (diff / true.flatten(2).norm(dim=2).clamp_min(1e-12)).mean()

    rng = np.random.default_rng(0)
    steps, start = 0, time.monotonic()
    n = x_all.shape[0]
    while time.monotonic() - start < args.budget:
        perm = rng.permutation(n)
        for i in range(0, n - batch + 1, batch):
            idx = torch.from_numpy(perm[i:i + batch])
            # relative L2 of the physical field: the FNO output is denormalised before the loss
            loss = rel_l2(model(x_all[idx]) * std_t + mean_t, y_all[idx] * std_t + mean_t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.monotonic() - start >= args.budget:
                break
    train_seconds = time.monotonic() - start
    model.eval()

    def step_fn(u):  # (B, *grid, C) physical numpy -> (B, *grid, C)
        with torch.no_grad():
            out = (model(to_t(u)) * std_t + mean_t).numpy()
        return np.moveaxis(out, 1, -1).astype(np.float32)

    x, y = collect_pairs(data.test)
    pred = np.concatenate([step_fn(x[i:i + 256]) for i in range(0, x.shape[0], 256)])
    x0, targets, _ = rollout_arrays(data.rollout)

    def rollout():
        u, frames = x0, []
        for _ in range(targets.shape[1]):
            u = step_fn(u)
            frames.append(u)
        return np.stack(frames, axis=1)

    rollout()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        traj = rollout()
        times.append(time.perf_counter() - t0)
    roll = curve_summary(traj, targets)
    return {
        "per_channel": {"one_step": [float(v) for v in M.nrmse_per_channel(pred, y)],
                        "rollout": channel_values(roll, "nrmse_mean_c")},
        "one_step": M.nrmse(pred, y),
        "identity_one_step": M.nrmse(x, y),
        "rollout": {k: roll[k] for k in ("nrmse_mean", "nrmse_last", "nrmse_per_step")},
        "timing": {"rollout": float(np.median(times))},
        "train_seconds": round(train_seconds, 2),
        "train_steps": steps,
        "num_params": int(sum(p.numel() for p in model.parameters())),
    }
