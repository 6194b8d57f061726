"""Accuracy against a peer: upt-keras and a stock neuraloperator FNO, side by side at equal wall-clock budget.

For every data set and budget, two worker processes start together, each pinned to its own CPU core with one thread:
one trains upt-keras through the library's own `training.train` (the config as a user would run it, with only `data.*`
and the time budget changed), the other a stock neuraloperator `FNO` on the same split. Both are then evaluated on the
same test trajectories with the same metric (PDEBench nRMSE in physical units): one-step nRMSE on every test pair, and
20-step rollouts from frame 0 of every test trajectory (UPT: latent and physical; FNO: autoregressive), with the wall
time of each rollout.

Data sets (made with the project's solver, `upt_keras.data.generate_burgers_dataset`):
- `b1d`: the built-in default set (GRF initial conditions, nu = 0.01, peaks 0.5-1.5); the defaults were developed on it.
- `sines`: PDEBench-style initial conditions (two sinusoids, 10% folded, 10% windowed, amplitude up to 1), nu = 0.01/pi
  (PDEBench's nu = 0.01 convention), 640 trajectories (512 for training).
- `smooth`: GRF initial conditions of another spectrum (alpha 2, tau 5), nu = 0.02, peaks 0.2-0.8.
- the sets of `benchmarks/make_sets.py` (`ks1d`, `fisher1d`, `burgers2d_64`, `burgers2d_velocity_64`, `ns2d_64`:
  Kuramoto-Sivashinsky, Fisher-KPP, 2D scalar and velocity Burgers, 2D Navier-Stokes), written by
  `upt_keras.data.generate_dataset` with the settings of its table. On the 2D sets the peer is an FNO2d
  (`FNO2D_SIZES`, batch 16) with the same loss, protocol and metric (nRMSE per sample and channel).
The defaults were never tuned on `sines`, `smooth` or the sets of `make_sets.py`.

Usage (needs the benchmark extra: `pip install -e ".[bench]"`):
    KERAS_BACKEND=torch python benchmarks/bench_accuracy.py --datasets b1d sines --budgets 60 300
    KERAS_BACKEND=torch python benchmarks/bench_accuracy.py --variants default no_consistency --budgets 60
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import harness
from make_sets import SETS as PDE_SETS

DEFAULT_CONFIG = os.path.join(harness.ROOT, "configs", "train_burgers1d.yaml")

DATASETS = {
    "b1d": None,  # the built-in default set
    "sines": dict(dim=1, num_samples=640, resolution=256, solver_resolution=1024, nu=0.01 / np.pi, t_end=0.4,
                  dt_save=0.01, ic="sinusoid", amplitude=1.0, seed=11),
    "smooth": dict(dim=1, num_samples=640, resolution=256, solver_resolution=1024, nu=0.02, t_end=0.4,
                   dt_save=0.01, ic="grf", amplitude=(0.2, 0.8), ic_options={"alpha": 2.0, "tau": 5.0}, seed=12),
}

# Inverse encoding on every step at weight 1, inverse decoding off: the reconstruction variants share it.
RECONSTRUCTION = ["training.use_inverse_losses=true", "training.lambda_inv_enc=1.0", "training.lambda_inv_dec=0",
                  "training.inverse_loss_max_weight=1.0", "training.inverse_loss_frequency=1"]

# Ablation variants: config overrides on top of --config (the default config is variant "default").
VARIANTS = {
    "default": [],
    # decode the change, u_t + decode(step(z_t)) - decode(z_t), or the field itself (off: the default before it)
    "residual": ["model.residual=true"],
    "no_residual": ["model.residual=false"],
    "residual_recon": ["model.residual=true"] + RECONSTRUCTION,
    "residual_rollout_2": ["model.residual=true", "training.rollout_loss_steps=2"],
    "rollout_2_steps": ["training.rollout_loss_steps=2"],
    "rollout_1_step": ["training.rollout_loss_steps=1"],
    "consistency_1.0": ["training.lambda_latent_consistency=1.0"],
    # the default with other seeds (model initialisation, batches): how far one run is from the next
    "seed_1": ["seed=1"],
    "seed_2": ["seed=2"],
    # reconstruction (inverse encoding at weight 1 on every step) on the residual default, which gives the encoder a
    # reason to keep its latents faithful to the field; with seed 1 too (a seed whose default run went wrong)
    "recon": RECONSTRUCTION,
    "recon_seed_1": RECONSTRUCTION + ["seed=1"],
    # the default without reconstruction (the round before it), and that config's variants
    "no_recon": ["training.use_inverse_losses=false"],
    "no_recon_rollout_1_step": ["training.use_inverse_losses=false", "training.rollout_loss_steps=1"],
    "no_recon_no_residual": ["training.use_inverse_losses=false", "model.residual=false"],
    "no_recon_consistency_1.0": ["training.use_inverse_losses=false", "training.lambda_latent_consistency=1.0"],
    "no_recon_seed_1": ["training.use_inverse_losses=false", "seed=1"],
    "no_recon_seed_2": ["training.use_inverse_losses=false", "seed=2"],
    # what each change of the accuracy work buys: each variant undoes one of them
    "no_locality": ["model.decoder_locality=false"],
    "no_approximator_locality": ["model.approximator_locality=false"],
    "no_zero_init": ["model.approximator_zero_init=false"],
    "no_consistency": ["training.lambda_latent_consistency=0"],
    "no_budget_schedule": ["training.fit_schedule_to_budget=false"],
    "inverse_losses": ["training.use_inverse_losses=true", "training.inverse_loss_warmup_epochs=0",
                       "training.inverse_loss_frequency=4"],
    "consistency_2_steps": ["training.latent_consistency_steps=2"],
    "latent_noise": ["training.latent_noise=0.05"],
    # latent rollouts: train the approximator on its own outputs over 4 latent steps
    "rollout_4_steps": ["training.rollout_loss_steps=4"],
    "consistency_4_steps": ["training.latent_consistency_steps=4"],
    # the consistency norm: the default divides by the latent step ("step"); LE-PDE's divides by the target latent's
    # second moment ("latent", weight 1: the previous default), under which the decoder learns the dynamics
    "latent_norm": ["training.latent_consistency_norm=latent", "training.lambda_latent_consistency=1.0"],
    "step_norm_1.0": ["training.latent_consistency_norm=step", "training.lambda_latent_consistency=1.0"],
    "step_norm_0.1": ["training.latent_consistency_norm=step", "training.lambda_latent_consistency=0.1"],
    "step_norm_0.01": ["training.latent_consistency_norm=step", "training.lambda_latent_consistency=0.01"],
    # reconstruction on every step (inverse encoding at weight 1): the decoder must reproduce u_t from encode(u_t)
    "recon_latent_norm": RECONSTRUCTION + ["training.latent_consistency_norm=latent",
                                           "training.lambda_latent_consistency=1.0"],
    "recon_step_norm_1.0": RECONSTRUCTION + ["training.latent_consistency_norm=step",
                                             "training.lambda_latent_consistency=1.0"],
    "recon_step_norm_1.0_w64": RECONSTRUCTION + ["training.latent_consistency_norm=step",
                                                 "training.lambda_latent_consistency=1.0", "model.approximator_width=64"],
    # the consistency term on every 2nd / 4th step only (one approximator pass and one encoding fewer on the
    # others), its weight scaled up to keep its share
    "consistency_every_2": ["training.latent_consistency_frequency=2", "training.lambda_latent_consistency=0.2"],
    "consistency_every_4": ["training.latent_consistency_frequency=4", "training.lambda_latent_consistency=0.4"],
    # the forward and rollout terms (and the reconstruction) on Q = 128 of the 256 grid points, resampled every step
    # (half the decoding cost per step)
    "queries_128": ["training.query_sampling.enabled=true", "training.query_sampling.num_queries=128"],
    "queries_128_stratified": ["training.query_sampling.enabled=true", "training.query_sampling.num_queries=128",
                               "training.query_sampling.strategy=stratified"],
    # the forward term as the relative L2 error per sample (the metric's form, the FNO's loss) instead of the MSE
    "relative_loss": ["training.forward_loss=relative"],
    # the approximator's distance bias, measured as a change when the b1d preset did not have it (it has it since)
    "approximator_locality": ["model.approximator_locality=true"],
    # decoder and encoder position features up to frequency 128 (the grid's Nyquist) instead of 32
    "frequencies_128": ["model.frequencies=[1,2,4,8,16,32,64,128]"],
    # the sizes of the previous default (4x the cost per step)
    "previous_sizes": ["model.approximator_width=128", "model.approximator_depth=4", "model.decoder_width=128",
                       "model.decoder_depth=2", "model.decoder_mlp_dim=256"],
    # 2D (configs/train_burgers2d.yaml, the b2d preset): wider latent tokens (each 8x8 patch in 128 numbers, not 64)
    "2d_latent_128": ["model.encoder_dim=128", "model.latent_dim=128", "model.approximator_width=128"],
    # position features up to the grid's Nyquist frequency (32 on 64 points), and a deeper, wider decoder
    "2d_frequencies_32": ["model.frequencies=[1,2,4,8,16,32]"],
    "2d_decoder_2x128": ["model.decoder_depth=2", "model.decoder_mlp_dim=256"],
    # every grid point a query (the FNO's supervision per sample), and the rollout loss over 1 step (cheaper steps)
    "2d_queries_all": ["training.query_sampling.enabled=false"],
    "2d_rollout_1_step": ["training.rollout_loss_steps=1"],
    # 4x4 patches: 256 tokens, 16 points per token (3.2x the step time)
    "2d_patch_4": ["model.patch_size=4", "model.num_latent_tokens=256"],
    "2d_lr_4e-3": ["training.learning_rate=4.0e-3"],
    # the decoder's bilinear readout (a position-dependent linear read of the decoded features), with frequencies
    # up to 32 so that the position weights can tell the points of an 8x8 patch apart
    "2d_bilinear_f32": ["model.decoder_readout=bilinear", "model.frequencies=[1,2,4,8,16,32]"],
    "bilinear": ["model.decoder_readout=bilinear"],
    # a deeper, wider approximator (4 blocks of width 128) for faster dynamics (Kuramoto-Sivashinsky)
    "approximator_4x128": ["model.approximator_depth=4", "model.approximator_width=128"],
    # the b2d decoder before the bilinear readout was adopted (linear readout, frequencies up to 16)
    "2d_linear_f16": ["model.decoder_readout=linear", "model.frequencies=[1,2,4,8,16]"],
    # the previous default config as a whole: previous sizes, none of the changes, inverse losses after one epoch
    "previous_default": ["model.approximator_width=128", "model.approximator_depth=4", "model.decoder_width=128",
                         "model.decoder_depth=2", "model.decoder_mlp_dim=256", "model.decoder_locality=false",
                         "model.approximator_zero_init=false", "training.lambda_latent_consistency=0",
                         "training.fit_schedule_to_budget=false", "training.epochs=2",
                         "training.use_inverse_losses=true", "training.inverse_loss_warmup_epochs=1",
                         "training.inverse_loss_frequency=4"],
}

# The FNO of the peer protocol (benchmarks README / issue): neuraloperator defaults otherwise; channels from the data.
FNO_SIZES = dict(n_modes=(32,), hidden_channels=64, n_layers=4)
FNO2D_SIZES = dict(n_modes=(16, 16), hidden_channels=32, n_layers=4)
FNO_LR, FNO_WEIGHT_DECAY, FNO_BATCH, FNO2D_BATCH = 1e-3, 1e-4, 64, 16


def dataset_overrides(name, data_dir):
    """Config overrides that point `data.*` at data set `name` (generated into `data_dir` on first use)."""
    if name in PDE_SETS:
        from upt_keras.data import generate_dataset

        pde, settings = PDE_SETS[name]
        path = os.path.join(data_dir, f"{name}.h5")
        if not os.path.exists(path):
            generate_dataset(path, pde, progress=False, **settings)
        return ["data.source=hdf5", f"data.path={path}", "data.max_train_samples=null"]
    if DATASETS[name] is None:
        return ["data.source=default", "data.max_train_samples=null"]
    from upt_keras.data import generate_burgers_dataset

    path = os.path.join(data_dir, f"bench_{name}.h5")
    if not os.path.exists(path):
        os.makedirs(data_dir, exist_ok=True)
        generate_burgers_dataset(path, progress=False, **DATASETS[name])
    return ["data.source=hdf5", f"data.path={path}", "data.max_train_samples=null"]


def _channels(metrics, prefix):
    """Per-channel values `prefix0, prefix1, ...` of a metrics dict as a list (one channel: the mean's key)."""
    values, c = [], 0
    while f"{prefix}{c}" in metrics:
        values.append(float(metrics[f"{prefix}{c}"]))
        c += 1
    return values


def run_upt(args, overrides):
    from bench_rollout import time_rollouts  # physical / latent all frames / latent last frame, medians
    from upt_keras import training
    from upt_keras.config import load_config
    from upt_keras.evaluation import rollout_arrays

    cfg = load_config(args.config, list(overrides) + [f"training.time_budget_seconds={args.budget}",
                                                      "output.plots=false", "data.rollout_steps=20"])
    run_dir = os.path.join(args.run_root, "upt")
    if os.path.exists(run_dir):
        import shutil

        shutil.rmtree(run_dir)  # always a fresh run
    start = time.monotonic()
    model, _, metrics = training.train(cfg, run_dir=run_dir, verbose=0, progress=False)
    wall = time.monotonic() - start
    data = training.prepare_data(cfg, splits=("rollout",), progress=False)
    x0, _, _ = rollout_arrays(data.rollout)
    roll = metrics["rollout"]
    per_channel = {"one_step": _channels(metrics["one_step"]["model"], "nrmse_c"),
                   "latent": _channels(roll["latent"], "nrmse_mean_c"),
                   "physical": _channels(roll["physical"], "nrmse_mean_c")}
    return {
        "per_channel": per_channel,
        "one_step": metrics["one_step"]["model"]["nrmse"],
        "identity_one_step": metrics["one_step"]["identity"]["nrmse"],
        "latent": {k: roll["latent"][k] for k in ("nrmse_mean", "nrmse_last", "nrmse_per_step")},
        "physical": {k: roll["physical"][k] for k in ("nrmse_mean", "nrmse_last", "nrmse_per_step")},
        "identity": {k: roll["identity"][k] for k in ("nrmse_mean", "nrmse_last", "nrmse_per_step")},
        "timing": time_rollouts(model, x0, 20, repeats=3),
        "train_seconds": metrics["training"]["train_seconds"],
        "train_steps": int(model.optimizer.iterations.numpy() if hasattr(model.optimizer.iterations, "numpy")
                           else model.optimizer.iterations),
        "num_params": metrics["training"]["num_params"],
        "wall_seconds": round(wall, 1),
    }


def run_fno(args, overrides):
    """A stock neuraloperator FNO (FNO2d on 2D data) on the same split, AdamW, relative-L2 loss, same budget."""
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
                        "rollout": _channels(roll, "nrmse_mean_c")},
        "one_step": M.nrmse(pred, y),
        "identity_one_step": M.nrmse(x, y),
        "rollout": {k: roll[k] for k in ("nrmse_mean", "nrmse_last", "nrmse_per_step")},
        "timing": {"rollout": float(np.median(times))},
        "train_seconds": round(train_seconds, 2),
        "train_steps": steps,
        "num_params": int(sum(p.numel() for p in model.parameters())),
    }


def worker(args):
    harness.pin_to_core(args.core)
    with open(args.overrides_file) as f:
        overrides = json.load(f)
    result = run_upt(args, overrides) if args.worker == "upt" else run_fno(args, overrides)
    harness.write_json(args.out, result)
    return 0


def launch(kind, core, budget, overrides, run_root, config, backend):
    os.makedirs(run_root, exist_ok=True)
    ov_file = os.path.join(run_root, f"{kind}_overrides.json")
    with open(ov_file, "w") as f:
        json.dump(overrides, f)
    out = os.path.join(run_root, f"{kind}.json")
    if os.path.exists(out):
        os.remove(out)
    env = harness.child_env(backend if kind == "upt" else "torch", one_thread=True, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = ["--worker", kind, "--core", core, "--budget", budget, "--overrides-file", ov_file, "--out", out,
           "--run-root", run_root, "--config", config]
    log = open(os.path.join(run_root, f"{kind}.log"), "w")
    return harness.start_script(__file__, cmd, env, stdout=log, stderr=subprocess.STDOUT), out, kind, run_root


def _collect(procs, label):
    results = {}
    for proc, out, kind, run_root in procs:
        rc = proc.wait()
        if rc != 0 or not os.path.exists(out):
            raise RuntimeError(f"{kind} worker for {label} failed (exit {rc}); see "
                               f"{os.path.join(run_root, kind + '.log')}")
        with open(out) as f:
            results[kind] = json.load(f)
    return results


def run_pair(args, dataset, budget, variant):
    """UPT (first core) and FNO (last core), started together."""
    data_over = dataset_overrides(dataset, args.data_dir)
    run_root = os.path.join(args.run_root, f"{dataset}_{variant}_{int(budget)}s")
    cores = harness.cores()
    procs = [launch("upt", cores[0], budget, data_over + VARIANTS[variant], run_root, args.config, args.backend),
             launch("fno", cores[-1], budget, data_over, run_root, args.config, args.backend)]
    return _collect(procs, f"{dataset} / {variant} / {budget:g} s")


def run_variants(args, dataset, budget, variants):
    """UPT variants only, one per core, as many at once as there are cores."""
    data_over = dataset_overrides(dataset, args.data_dir)
    cores, results = harness.cores(), {}
    for i in range(0, len(variants), len(cores)):
        batch = variants[i:i + len(cores)]
        procs = []
        for core, variant in zip(cores, batch):
            run_root = os.path.join(args.run_root, f"{dataset}_{variant}_{int(budget)}s")
            procs.append(launch("upt", core, budget, data_over + VARIANTS[variant], run_root, args.config,
                                args.backend))
        for proc, variant in zip(procs, batch):
            results[variant] = _collect([proc], f"{dataset} / {variant} / {budget:g} s")
    return results


def _command_line(argv, backend):
    """The command as recorded in the results: without the local --run-root / --data-dir / --out / --report paths."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--run-root", "--data-dir", "--out", "--report"):
            skip = True
        else:
            kept.append(arg)
    return f"KERAS_BACKEND={backend} python benchmarks/bench_accuracy.py " + " ".join(kept)


def write_report(payloads, md_path):
    """Markdown tables (and a rollout figure per data set) from the results JSON payloads of one or more runs."""
    from upt_keras.evaluation.plots import plot_rollout_error

    lines = [
        "# Accuracy: upt-keras against a stock FNO at equal wall-clock budget",
        "",
        "Generated by `benchmarks/bench_accuracy.py` (protocol in its docstring). Each UPT and FNO worker runs on its "
        "own CPU core with one thread, started together, same data, split and budget; nRMSE is PDEBench's, in "
        "physical units, on the test trajectories; rollouts are 20 steps from frame 0 of every test trajectory. "
        "Budgets are training seconds (UPT's calibration steps count against it); rollout times are medians of 3.",
        "",
        "Runs:",
    ]
    rows = []
    for payload in payloads:
        meta = payload["meta"]
        note = f" Note: {meta['note']}." if meta.get("note") else ""
        lines += [f"- `{meta['command']}`: {meta['machine']}; keras {meta['keras']}, UPT backend {meta['backend']}; "
                  f"{meta['date']}.{note}"]
        rows += payload["results"]
    lines.append("")
    peers = [r for r in rows if "fno" in r]
    if peers:
        lines += [
            "| data set | variant | budget | UPT steps | FNO steps | UPT one-step | FNO one-step | identity one-step "
            "| UPT latent mean / step 20 | UPT physical mean / step 20 | FNO rollout mean / step 20 "
            "| identity mean / step 20 | UPT one-step / FNO | UPT latent / FNO | latent / physical "
            "| UPT latent rollout s (all frames / last frame) | UPT physical rollout s | FNO rollout s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in peers:
            u, f = r["upt"], r["fno"]
            lat, phy, fr, ide = u["latent"], u["physical"], f["rollout"], u["identity"]
            lines.append(
                f"| {r['dataset']} | {r['variant']} | {r['budget']:g} s | {u['train_steps']} | {f['train_steps']} | {u['one_step']:.4f} "
                f"| {f['one_step']:.4f} | {u['identity_one_step']:.4f} "
                f"| {lat['nrmse_mean']:.3f} / {lat['nrmse_last']:.3f} | {phy['nrmse_mean']:.3f} / {phy['nrmse_last']:.3f} "
                f"| {fr['nrmse_mean']:.3f} / {fr['nrmse_last']:.3f} | {ide['nrmse_mean']:.3f} / {ide['nrmse_last']:.3f} "
                f"| {u['one_step'] / f['one_step']:.2f}x | {lat['nrmse_mean'] / fr['nrmse_mean']:.2f}x "
                f"| {lat['nrmse_mean'] / phy['nrmse_mean']:.2f}x "
                f"| {u['timing']['latent_all_frames']:.2f} / {u['timing']['latent_last_frame']:.2f} "
                f"| {u['timing']['physical']:.2f} | {f['timing']['rollout']:.2f} |")
        lines.append("")
        multi = [r for r in peers if len(r["upt"].get("per_channel", {}).get("one_step", [])) > 1]
        if multi:
            fmt = lambda values: " / ".join(f"{v:.4f}" for v in values)  # noqa: E731
            lines += ["Per channel (channel 0 / 1 / ...):", "",
                      "| data set | variant | budget | UPT one-step | FNO one-step | UPT latent mean | UPT physical mean "
                      "| FNO rollout mean |", "|---|---|---|---|---|---|---|---|"]
            for r in multi:
                u, f = r["upt"]["per_channel"], r["fno"]["per_channel"]
                lines.append(f"| {r['dataset']} | {r['variant']} | {r['budget']:g} s | {fmt(u['one_step'])} "
                             f"| {fmt(f['one_step'])} | {fmt(u['latent'])} | {fmt(u['physical'])} "
                             f"| {fmt(f['rollout'])} |")
            lines.append("")
        md_dir = os.path.dirname(os.path.abspath(md_path))
        for dataset in dict.fromkeys(r["dataset"] for r in peers):
            # the longest budget of the first variant run on this data set
            first = next(r["variant"] for r in peers if r["dataset"] == dataset)
            last = max((r for r in peers if r["dataset"] == dataset and r["variant"] == first),
                       key=lambda r: r["budget"])
            curves = {"UPT latent": last["upt"]["latent"]["nrmse_per_step"],
                      "UPT physical": last["upt"]["physical"]["nrmse_per_step"],
                      "FNO": last["fno"]["rollout"]["nrmse_per_step"],
                      "identity": last["upt"]["identity"]["nrmse_per_step"]}
            png = f"results_accuracy_{dataset}.png"
            plot_rollout_error(curves, os.path.join(md_dir, png),
                               title=f"{dataset}: rollout nRMSE after {last['budget']:g} s of training")
            lines += [f"![{dataset} rollout]({png})", ""]
    ablation = [r for r in rows if "fno" not in r]
    if ablation:
        lines += ["| data set | budget | variant | steps | one-step | identity | latent mean / step 20 "
                  "| physical mean / step 20 | latent / physical |", "|---|---|---|---|---|---|---|---|---|"]
        for r in ablation:
            u = r["upt"]
            lat, phy = u["latent"], u["physical"]
            lines.append(
                f"| {r['dataset']} | {r['budget']:g} s | {r['variant']} | {u['train_steps']} | {u['one_step']:.4f} "
                f"| {u['identity_one_step']:.4f} | {lat['nrmse_mean']:.3f} / {lat['nrmse_last']:.3f} "
                f"| {phy['nrmse_mean']:.3f} / {phy['nrmse_last']:.3f} | {lat['nrmse_mean'] / phy['nrmse_mean']:.2f}x |")
        lines.append("")
    harness.write_text(md_path, "\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS) + sorted(PDE_SETS), default=["b1d", "sines"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[60.0, 300.0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["default"])
    parser.add_argument("--no-fno", action="store_true", help="train the UPT variants only (ablations)")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "torch"))
    parser.add_argument("--data-dir", default=os.path.join("runs", "bench_data"))
    parser.add_argument("--run-root", default=os.path.join("runs", "bench_accuracy"))
    parser.add_argument("--out", default=None, help="results JSON (default: print only)")
    parser.add_argument("--report", default=None, help="write Markdown tables (and figures) from --out to this file")
    parser.add_argument("--report-from", nargs="+", default=None, metavar="JSON",
                        help="with --report: write the tables of these results files (one or more runs) and exit")
    # worker mode (internal)
    parser.add_argument("--worker", choices=["upt", "fno"])
    parser.add_argument("--core", type=int)
    parser.add_argument("--budget", type=float)
    parser.add_argument("--overrides-file")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.report_from:
        if not args.report:
            parser.error("--report-from needs --report")
        payloads = []
        for path in args.report_from:  # a file holds one run's payload, or a list of them
            with open(path) as f:
                loaded = json.load(f)
            payloads += loaded if isinstance(loaded, list) else [loaded]
        write_report(payloads, args.report)
        return 0

    all_results = []

    def report(row, seconds):
        u = row["upt"]
        msg = (f"{row['dataset']:7s} {row['variant']:19s} {row['budget']:5.0f}s | UPT steps {u['train_steps']:5d} "
               f"one-step {u['one_step']:.4f} (id {u['identity_one_step']:.4f}) latent {u['latent']['nrmse_mean']:.4f}"
               f" physical {u['physical']['nrmse_mean']:.4f}")
        if "fno" in row:
            f = row["fno"]
            msg += (f" | FNO steps {f['train_steps']:5d} one-step {f['one_step']:.4f} rollout "
                    f"{f['rollout']['nrmse_mean']:.4f}")
        print(msg + f" [{seconds:.0f} s]", flush=True)

    for dataset in args.datasets:
        for budget in args.budgets:
            start = time.monotonic()
            if args.no_fno:
                for variant, res in run_variants(args, dataset, budget, args.variants).items():
                    all_results.append({"dataset": dataset, "budget": budget, "variant": variant, **res})
                    report(all_results[-1], time.monotonic() - start)
                continue
            for variant in args.variants:
                start = time.monotonic()
                res = run_pair(args, dataset, budget, variant)
                all_results.append({"dataset": dataset, "budget": budget, "variant": variant, **res})
                report(all_results[-1], time.monotonic() - start)
    if args.out:
        import keras

        meta = {"date": str(datetime.date.today()), "machine": f"{platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} cores", "keras": keras.__version__, "backend": args.backend,
                "command": _command_line(sys.argv[1:], args.backend)}
        harness.write_json(args.out, {"meta": meta, "results": all_results})
        if args.report:
            write_report([{"meta": meta, "results": all_results}], args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
