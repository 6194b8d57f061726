"""What the inverse losses buy: latent vs physical rollouts on the default 1D Burgers set (B1D).

Trains the B1D model twice with the same budget, with inverse losses (curriculum on) and without, then
compares 20-step rollouts on the test trajectories:
- accuracy: nRMSE (mean over the 20 steps and at step 20) for latent rollouts (encode once, step the
  approximator, decode) and physical rollouts (decode and re-encode every step);
- speed: wall time of the test-set rollout for physical mode, latent mode decoding every frame, and latent
  mode decoding only the last frame (what a user who needs the final state pays).

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_rollout.py --budget 300 --out benchmarks/results_rollout.md
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np


def train_variant(config, use_inverse, budget, epochs, run_dir):
    from upt_keras import training
    from upt_keras.config import load_config

    overrides = [f"training.use_inverse_losses={str(use_inverse).lower()}",
                 f"training.time_budget_seconds={budget}", f"training.epochs={epochs}", "output.plots=false"]
    cfg = load_config(config, overrides)
    model, _, metrics = training.train(cfg, run_dir=run_dir, verbose=2)
    return model, metrics, training.prepare_data(cfg, splits=("rollout",), progress=False)


def time_rollouts(model, x0, steps, repeats):
    def timed(**kwargs):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.rollout(x0, steps, **kwargs)
            runs.append(time.perf_counter() - start)
        return float(np.median(runs))

    model.rollout(x0[:2], 2, mode="physical")  # warm-up
    model.rollout(x0[:2], 2, mode="latent")
    return {
        "physical": timed(mode="physical"),
        "latent_all_frames": timed(mode="latent"),
        "latent_last_frame": timed(mode="latent", decode_steps=[steps]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "configs",
                                                         "train_burgers1d.yaml"))
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per variant")
    parser.add_argument("--epochs", type=int, default=200, help="epoch cap (the time budget usually stops first)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-root", default="runs/rollout_ablation")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results_rollout.md"))
    args = parser.parse_args()

    import keras

    from upt_keras.evaluation import rollout_arrays, rollout_metrics
    from upt_keras.plots import plot_rollout_error

    results = {}
    curves = {}
    for use_inverse in (True, False):
        name = "with inverse losses" if use_inverse else "without inverse losses"
        run_dir = os.path.join(args.run_root, "inverse" if use_inverse else "plain")
        model, metrics, data = train_variant(args.config, use_inverse, args.budget, args.epochs, run_dir)
        roll = rollout_metrics(model, data.rollout, num_steps=args.steps)
        x0, _, _ = rollout_arrays(data.rollout)
        results[name] = {
            "one_step_nrmse": metrics["one_step"]["model"]["nrmse"] if "one_step" in metrics else None,
            "train_seconds": metrics["training"]["train_seconds"],
            "epochs": metrics["training"]["epochs_completed"],
            "latent": roll["latent"],
            "physical": roll["physical"],
            "identity": roll["identity"],
            "inverse": model.inverse_losses(x0[:64]),
            "timing": time_rollouts(model, x0, args.steps, args.repeats),
            "num_rollouts": int(x0.shape[0]),
        }
        tag = "inv" if use_inverse else "no inv"
        curves[f"latent ({tag})"] = roll["latent"]["nrmse_per_step"]
        curves[f"physical ({tag})"] = roll["physical"]["nrmse_per_step"]
        curves.setdefault("identity", roll["identity"]["nrmse_per_step"])

    out_dir = os.path.dirname(os.path.abspath(args.out))
    plot_rollout_error(curves, os.path.join(out_dir, "results_rollout.png"))
    with open(os.path.join(out_dir, "results_rollout.json"), "w") as f:
        json.dump(results, f, indent=2)

    lines = [
        "# Rollout ablation: latent vs physical rollouts, with and without inverse losses (B1D)",
        "",
        f"Generated {datetime.date.today()} by `KERAS_BACKEND={keras.backend.backend()} python "
        f"benchmarks/bench_rollout.py --budget {args.budget:g}`.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared, so times are noisy); "
        f"keras {keras.__version__}, backend {keras.backend.backend()}.",
        f"Each variant trains `configs/train_burgers1d.yaml` for at most {args.budget:g} s; rollouts start at frame 0 of "
        "every test trajectory; nRMSE in physical units (PDEBench definition); times are medians of "
        f"{args.repeats} runs over the whole test set.",
        "",
        "| variant | epochs | one-step nRMSE | latent nRMSE mean / step 20 | physical nRMSE mean / step 20 "
        "| latent / physical (mean) | inv-enc MSE | physical s | latent s (all frames) | latent s (last frame) "
        "| speed-up (last frame) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lat, phy, tm = r["latent"], r["physical"], r["timing"]
        lines.append(
            f"| {name} | {r['epochs']} | {r['one_step_nrmse']:.4f} | {lat['nrmse_mean']:.4f} / {lat['nrmse_last']:.4f} "
            f"| {phy['nrmse_mean']:.4f} / {phy['nrmse_last']:.4f} | {lat['nrmse_mean'] / phy['nrmse_mean']:.2f}x "
            f"| {r['inverse']['inv_enc_loss']:.2e} | {tm['physical']:.3f} | {tm['latent_all_frames']:.3f} "
            f"| {tm['latent_last_frame']:.3f} | {tm['physical'] / tm['latent_last_frame']:.1f}x |"
        )
    ident = next(iter(results.values()))["identity"]
    lines += ["", f"Identity baseline (u_t+k = u_t): nRMSE mean {ident['nrmse_mean']:.4f}, step 20 "
              f"{ident['nrmse_last']:.4f}.", "", "![nRMSE per rollout step](results_rollout.png)", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
