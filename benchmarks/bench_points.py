"""Point-cloud UPT: 2D Burgers fields given as scattered points, decoded on the full grid.

Data (the project's solver): 2D scalar viscous Burgers on the periodic unit
square, 64 x 64, nu = 0.01, sinusoid initial conditions (amplitude 1), frames
every 0.01 up to t = 0.1; 120 trajectories for training, 24 for testing (10
pairs each). Every sample's input is a random subset of `--points` of the 4096
grid points (a different subset per sample, fixed by the seed); the target is
the next frame on the full grid.

Runs, two at a time side by side at the same wall-clock budget, each pinned to
its own core with one thread; every run decodes Q = 1024 sampled grid points
per training step (forward term):
- `points`: `UPT.from_preset("points64")` (supernode pooling) on the scattered inputs;
- `grid`: a grid UPT of the same widths on the full 64 x 64 input (patches of 4,
  average pooling to the same 64 positioned tokens, the same local decoder): what
  seeing every point buys;
- `points_inv_all` / `points_inv_queries`: `points` with both inverse terms
  (weights 0.1, every step), re-encoding the decoded next frame from the full
  grid (`training.inverse_decoding_points: all`) or from the Q sampled points
  only (`queries`): time per step, peak memory and accuracy of that trade.
Reported on the test pairs (full-grid nRMSE): the one-step prediction from the
scattered input, the same model given all 4096 points as its point cloud,
the grid model, and the identity (u_t on the full grid, which has every
point).

    KERAS_BACKEND=torch python benchmarks/bench_points.py --budget 240 --out benchmarks/results/results_points.md
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

import harness

GRID = (64, 64)
NU, DT, FRAMES = 0.01, 0.01, 11


def make_data(path, num_train=120, num_test=24, seed=0):
    from upt_keras.data.burgers import sinusoid_initial_condition, solve_burgers

    rng = np.random.default_rng(seed)
    u0 = sinusoid_initial_condition(rng, num_train + num_test, GRID[0], dim=2, num_waves=3, max_wavenumber=3,
                                    amplitude=1.0, p_abs=0.0, p_window=0.0)
    traj = solve_burgers(u0, NU, t_end=DT * (FRAMES - 1), dt_save=DT, dtype=np.float32)  # (B, T, 64, 64)
    np.savez(path, train=traj[:num_train], test=traj[num_train:])


def pairs(traj):
    u_t = traj[:, :-1].reshape((-1,) + GRID + (1,))
    u_next = traj[:, 1:].reshape((-1,) + GRID + (1,))
    return u_t.astype("float32"), u_next.astype("float32")


def scatter(u, num_points, seed):
    """(fields (B, M, 1), positions (B, M, 2)): a random subset of M grid points per sample."""
    from upt_keras.layers import grid_coordinates

    coords = grid_coordinates(GRID)
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(coords.shape[0], num_points, replace=False) for _ in range(u.shape[0])])
    flat = u.reshape(u.shape[0], -1, 1)
    return np.take_along_axis(flat, idx[..., None], axis=1), coords[idx]


def worker(name, budget, num_points, data_path):
    """Trains run `name` for `budget` seconds on one thread; returns its numbers (see `render`)."""
    harness.limit_threads(os.environ["KERAS_BACKEND"])
    import keras

    from upt_keras import UPT, UPTObjective
    from upt_keras.evaluation.metrics import nrmse

    keras.utils.set_random_seed(0)
    data = np.load(data_path)
    x_tr, y_tr = pairs(data["train"])
    x_te, y_te = pairs(data["test"])
    mean, std = [float(x_tr.mean())], [float(x_tr.std())]
    settings = dict(seed=0, lambda_latent_consistency=1.0, num_queries=1024)
    if name.startswith("points_inv_"):
        settings.update(use_inverse_losses=True, lambda_inv_enc=0.1, lambda_inv_dec=0.1,
                        inverse_decoding_points=name[len("points_inv_"):])
    common = dict(dt=DT, field_mean=mean, field_std=std, objective=UPTObjective(**settings))
    if name.startswith("points"):
        model = UPT.from_preset("points64", **common)
        fields, positions = scatter(x_tr, num_points, seed=1)
        train_x = {"fields": fields, "positions": positions}
    else:
        model = UPT.from_preset("points64", encoder="grid", patch_size=4, pooling="average", **common)
        train_x = x_tr
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4, clipnorm=1.0))

    class Budget(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.perf_counter() - start > budget:
                self.model.stop_training = True

    start = time.perf_counter()
    history = model.fit(train_x, y_tr, batch_size=16, epochs=1000, callbacks=[Budget()], verbose=0)
    seconds = time.perf_counter() - start
    peak_rss_mib = harness.peak_rss_mib()
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    out = dict(worker=name, steps=steps, seconds=seconds, epochs=len(history.history["loss"]),
               params=int(model.count_params()), peak_rss_mib=peak_rss_mib)
    if name.startswith("points"):
        fields, positions = scatter(x_te, num_points, seed=2)
        out["one_step"] = nrmse(model.predict({"fields": fields, "positions": positions}, batch_size=32,
                                              verbose=0), y_te)
        from upt_keras.layers import grid_coordinates

        full = grid_coordinates(GRID)
        all_points = {"fields": x_te.reshape(x_te.shape[0], -1, 1),
                      "positions": np.broadcast_to(full, (x_te.shape[0],) + full.shape).copy()}
        out["one_step_all_points"] = nrmse(model.predict(all_points, batch_size=32, verbose=0), y_te)
        path = os.path.join(tempfile.mkdtemp(), "points.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        out["reload_max_abs_diff"] = float(np.max(np.abs(
            reloaded.predict({"fields": fields[:4], "positions": positions[:4]}, verbose=0)
            - model.predict({"fields": fields[:4], "positions": positions[:4]}, verbose=0))))
    else:
        out["one_step"] = nrmse(model.predict(x_te, batch_size=32, verbose=0), y_te)
    out["identity"] = nrmse(x_te, y_te)
    return out


def render(results, args):
    p, g = results["points"], results["grid"]
    ia, iq = results["points_inv_all"], results["points_inv_queries"]
    lines = [
        "# Point-cloud UPT on scattered 2D Burgers data",
        "",
        f"{harness.machine_line()} One core and one thread per run, both runs side by side; Keras "
        f"{results['keras']} on {results['backend']}.",
        "",
        f"Command: `KERAS_BACKEND={results['backend']} python benchmarks/bench_points.py --budget {args.budget:g} "
        f"--points {args.points}`",
        "",
        f"2D viscous Burgers, 64 x 64 periodic, nu = {NU}, sinusoid initial conditions, frames every {DT}; 1200 "
        f"training pairs, 240 test pairs. The point-cloud model sees {args.points} of the 4096 points of each "
        "sample (a different random subset per sample) and decodes the next frame on the full grid. "
        f"{args.budget:g} s of training each; nRMSE on the full grid over the test pairs.",
        "",
        "| model | input | steps | params | one-step nRMSE |",
        "|---|---|---:|---:|---:|",
        f"| point cloud (`points64`) | {args.points} scattered points | {p['steps']} | {p['params']:,} | "
        f"{p['one_step']:.4f} |",
        f"| the same model | all 4096 points as a point cloud | | | {p['one_step_all_points']:.4f} |",
        f"| grid encoder, same widths | the full grid | {g['steps']} | {g['params']:,} | {g['one_step']:.4f} |",
        f"| identity (u_t) | the full grid | | | {p['identity']:.4f} |",
        "",
        f"Saved and reloaded (`.keras`), the point-cloud model predicts the same values (max abs difference "
        f"{p['reload_max_abs_diff']:.2e}).",
        "",
        "Inverse decoding from the full grid or from the Q sampled points (both inverse terms at weight 0.1 on every "
        "step, same budget; peak RSS of the whole training process, libraries included):",
        "",
        "| inverse terms | re-encoded from | steps | s / step | peak RSS (MiB) | one-step nRMSE |",
        "|---|---|---:|---:|---:|---:|",
        f"| off | - | {p['steps']} | {p['seconds'] / p['steps']:.3f} | {p['peak_rss_mib']:.0f} | "
        f"{p['one_step']:.4f} |",
        f"| on | full grid (4096 points) | {ia['steps']} | {ia['seconds'] / ia['steps']:.3f} | "
        f"{ia['peak_rss_mib']:.0f} | {ia['one_step']:.4f} |",
        f"| on | Q = 1024 sampled points | {iq['steps']} | {iq['seconds'] / iq['steps']:.3f} | "
        f"{iq['peak_rss_mib']:.0f} | {iq['one_step']:.4f} |",
        "",
        f"Same-run ratio, s / step of full-grid / queries re-encoding: "
        f"{(ia['seconds'] / ia['steps']) / (iq['seconds'] / iq['steps']):.2f}x.",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--data", default=None, help="cached data file (default: generated in a temporary folder)")
    parser.add_argument("--out", help="write the markdown table here (raw numbers beside it as .json)")
    args = parser.parse_args()
    args.data = args.data or os.path.join(tempfile.mkdtemp(), "burgers2d_points.npz")
    if not os.path.exists(args.data):
        started = time.perf_counter()
        make_data(args.data)
        print(f"data: {time.perf_counter() - started:.0f} s", flush=True)
    import keras

    results = dict(backend=keras.backend.backend(), keras=keras.__version__)
    env = harness.child_env(keras.backend.backend(), one_thread=True, TF_CPP_MIN_LOG_LEVEL="3")
    cores = harness.cores()
    for pair in (("points", "grid"), ("points_inv_all", "points_inv_queries")):
        procs = {name: harness.start_function(worker, name, args.budget, args.points, args.data, env=env,
                                              core=cores[i % len(cores)])
                 for i, name in enumerate(pair)}
        for name, proc in procs.items():
            try:
                results[name] = harness.finish(proc)
            except harness.ChildError as err:
                raise SystemExit(f"{name} run failed:\n{err.stderr[-3000:]}") from None
            print(json.dumps(results[name]), flush=True)
    text = render(results, args)
    print(text)
    if args.out:
        harness.write_text(args.out, text)
        harness.write_json(os.path.splitext(args.out)[0] + ".json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
