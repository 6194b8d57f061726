"""What the inverse losses buy: latent vs physical rollouts on the default 1D Burgers set (B1D).

Trains the B1D model (`configs/train_burgers1d.yaml`) once per variant with the same time budget, then compares
20-step rollouts on the test trajectories:
- accuracy: nRMSE (mean over the 20 steps and at step 20) for latent rollouts (encode once, step the
  approximator, decode) and physical rollouts (decode and re-encode every step);
- speed: wall time of the test-set rollout for physical mode, latent mode decoding every frame, and latent
  mode decoding only the last frame (what a user who needs the final state pays).

Variants (`--variants`, default all): `default` (the config as it is: what `examples/train.py` trains), `inverse`
(inverse losses with their curriculum, as configured), `plain` (no inverse losses), `inverse_rollout3` and `plain_rollout3` (the same with the 3-step latent rollout loss,
`training.rollout_loss_steps=3`), and `inverse_rollout2_1epoch` (a 2-step loss over one epoch, so that its learning-rate
schedule ends within the budget, with the inverse terms on from the start).

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_rollout.py --budget 300 --out benchmarks/results/results_rollout.md
"""

import argparse
import json
import os
import sys
import time

import numpy as np

import harness

VARIANTS = {
    "default": [],
    "inverse": ["training.use_inverse_losses=true"],
    "plain": ["training.use_inverse_losses=false"],
    "inverse_rollout3": ["training.use_inverse_losses=true", "training.rollout_loss_steps=3"],
    "plain_rollout3": ["training.use_inverse_losses=false", "training.rollout_loss_steps=3"],
    # A 2-step loss costs about twice a one-step loss per batch: one epoch, so that the learning-rate schedule
    # completes within the same budget; the inverse terms then start at once (no warmup epoch).
    "inverse_rollout2_1epoch": ["training.use_inverse_losses=true", "training.rollout_loss_steps=2",
                                "training.epochs=1", "training.inverse_loss_warmup_epochs=0"],
}


def train_variant(config, overrides, budget, epochs, run_dir):
    from upt_keras import training
    from upt_keras.config import load_config

    overrides = list(overrides) + [f"training.time_budget_seconds={budget}", "output.plots=false"]
    if epochs is not None:
        overrides.append(f"training.epochs={epochs}")
    cfg = load_config(config, overrides)
    model, _, metrics = training.train(cfg, run_dir=run_dir, verbose=2)
    return model, metrics, training.prepare_data(cfg, splits=("rollout",), progress=False)


def time_rollouts(model, x0, steps, repeats):
    from upt_keras.backend import inference_mode

    def timed(**kwargs):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            with inference_mode():
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


def time_2d(config, num_rollouts, steps, repeats):
    """Rollout wall time on the 2D 64x64 model of `config` (weights as initialised: timing does not depend on them)."""
    from upt_keras.config import load_config
    from upt_keras.models.upt import UPT
    from upt_keras.training import model_kwargs

    cfg = load_config(config)
    model = UPT.from_sizes((64, 64), 1, **model_kwargs(cfg), dt=0.01)
    x0 = np.random.default_rng(0).normal(size=(num_rollouts, 64, 64, 1)).astype("float32")
    return time_rollouts(model, x0, steps, repeats)


def _table_2d(t2, results, args):
    results["timing_2d_64x64"] = t2
    return [
        "",
        f"Rollout time where decoding is expensive: the 2D 64x64 model of `configs/train_burgers2d_64.yaml` "
        f"(N = 4096 points per frame), {args.rollouts_2d} rollouts of {args.steps} steps, median of "
        f"{args.repeats}; untrained weights, since the cost does not depend on them:",
        "",
        "| physical s | latent s (all frames) | latent s (last frame) | speed-up (all frames) | speed-up (last frame) |",
        "|---|---|---|---|---|",
        f"| {t2['physical']:.2f} | {t2['latent_all_frames']:.2f} | {t2['latent_last_frame']:.2f} "
        f"| {t2['physical'] / t2['latent_all_frames']:.1f}x | {t2['physical'] / t2['latent_last_frame']:.1f}x |",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(harness.ROOT, "configs", "train_burgers1d.yaml"))
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per variant")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: the config's; the learning-rate schedule spans them)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--config-2d", default=os.path.join(harness.ROOT, "configs", "train_burgers2d_64.yaml"),
                        help="model sizes for the 2D 64x64 timing rows")
    parser.add_argument("--rollouts-2d", type=int, default=8, help="rollouts timed at once on the 2D grid")
    parser.add_argument("--skip-2d", action="store_true", help="skip the 2D 64x64 timing rows")
    parser.add_argument("--only-2d", action="store_true",
                        help="time the 2D 64x64 rollouts only and append them to an existing --out (and its JSON)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-root", default="runs/rollout_ablation")
    parser.add_argument("--out", default=harness.results_path("results_rollout.md"))
    args = parser.parse_args()

    import keras

    from upt_keras.evaluation import rollout_arrays, rollout_metrics
    from upt_keras.evaluation.plots import plot_rollout_error

    out_dir = os.path.dirname(os.path.abspath(args.out))
    if args.only_2d:
        with open(os.path.join(out_dir, "results_rollout.json")) as f:
            results = json.load(f)
        lines = _table_2d(time_2d(args.config_2d, args.rollouts_2d, args.steps, args.repeats), results, args)
        harness.write_json(os.path.join(out_dir, "results_rollout.json"), results, indent=2)
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0

    results = {}
    curves = {}
    for name in args.variants:
        run_dir = os.path.join(args.run_root, name)
        if os.path.exists(run_dir):
            import shutil

            shutil.rmtree(run_dir)  # a fresh run, never a resumed one
        model, metrics, data = train_variant(args.config, VARIANTS[name], args.budget, args.epochs, run_dir)
        roll = rollout_metrics(model, data.rollout, num_steps=args.steps)
        x0, _, _ = rollout_arrays(data.rollout)
        results[name] = {
            "one_step_nrmse": metrics["one_step"]["model"]["nrmse"] if "one_step" in metrics else None,
            "train_seconds": metrics["training"]["train_seconds"],
            "epochs": metrics["training"]["epochs_completed"],
            "overrides": VARIANTS[name],
            "latent": roll["latent"],
            "physical": roll["physical"],
            "identity": roll["identity"],
            "inverse": model.objective.inverse_losses(model, x0[:64]),
            "timing": time_rollouts(model, x0, args.steps, args.repeats),
            "num_rollouts": int(x0.shape[0]),
        }
        print(json.dumps({name: {k: v for k, v in results[name].items() if k not in ("latent", "physical",
                                                                                    "identity")}}, indent=1))
        curves[f"latent ({name})"] = roll["latent"]["nrmse_per_step"]
        curves[f"physical ({name})"] = roll["physical"]["nrmse_per_step"]
        curves.setdefault("identity", roll["identity"]["nrmse_per_step"])

    plot_rollout_error(curves, os.path.join(out_dir, "results_rollout.png"))

    lines = [
        "# Rollout ablation: latent vs physical rollouts, with and without inverse losses (B1D)",
        "",
        f"Generated by `KERAS_BACKEND={keras.backend.backend()} python "
        f"benchmarks/bench_rollout.py --budget {args.budget:g} --variants {' '.join(args.variants)}`.",
        f"{harness.machine_line()} The cores may be shared, so times are noisy; backend {keras.backend.backend()}.",
        f"Each variant trains `configs/train_burgers1d.yaml` (its epochs and schedule) for at most {args.budget:g} s; "
        "rollouts start at frame 0 of "
        "every test trajectory; nRMSE in physical units (PDEBench definition); times are medians of "
        f"{args.repeats} runs over the whole test set.",
        "",
        "| variant | epochs | one-step nRMSE | latent nRMSE mean / step 20 | physical nRMSE mean / step 20 "
        "| latent / physical (mean) | inv-enc MSE | inv-dec MSE | physical s | latent s (all frames) "
        "| latent s (last frame) | speed-up (last frame) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lat, phy, tm = r["latent"], r["physical"], r["timing"]
        lines.append(
            f"| {name} | {r['epochs']} | {r['one_step_nrmse']:.4f} | {lat['nrmse_mean']:.4f} / {lat['nrmse_last']:.4f} "
            f"| {phy['nrmse_mean']:.4f} / {phy['nrmse_last']:.4f} | {lat['nrmse_mean'] / phy['nrmse_mean']:.2f}x "
            f"| {r['inverse']['inv_enc_loss']:.2e} | {r['inverse']['inv_dec_loss']:.2e} | {tm['physical']:.3f} | {tm['latent_all_frames']:.3f} "
            f"| {tm['latent_last_frame']:.3f} | {tm['physical'] / tm['latent_last_frame']:.1f}x |"
        )
    if not args.skip_2d:
        lines += _table_2d(time_2d(args.config_2d, args.rollouts_2d, args.steps, args.repeats), results, args)
    ident = next(v for v in results.values() if "identity" in v)["identity"]
    lines += ["", f"Identity baseline (u_t+k = u_t): nRMSE mean {ident['nrmse_mean']:.4f}, step 20 "
              f"{ident['nrmse_last']:.4f}.", "", "![nRMSE per rollout step](results_rollout.png)", ""]
    harness.write_json(os.path.join(out_dir, "results_rollout.json"), results, indent=2)
    harness.write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
