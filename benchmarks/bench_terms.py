"""What each term of the training objective costs: the step time of a config with its terms switched on one at a time.

The model and optimiser are built from the config as `upt-keras train` builds them (`training.setup.build_model`),
on random fields of the config's preset grid (one channel): step times do not depend on the values. Each row is
the config plus overrides, trained in a fresh process pinned to one core with one thread: `--warmup` steps, then
`--repeats` epochs of `--steps` steps; the row reports the median seconds per step over those epochs. Rows run one
after the other, never together.

    KERAS_BACKEND=torch python benchmarks/bench_terms.py --out benchmarks/results/results_terms.md

Rows (overrides of `--config`, default the 1D default):
- forward only: the one-step forward term alone (no rollout loss, no reconstruction, no consistency term);
- + one term: the forward term and that term, at the config's setting;
- the config: every term as shipped.
"""

import argparse
import os
import statistics
import sys
import time
import types

import numpy as np

import harness

OFF = ["training.rollout_loss_steps=1", "training.use_inverse_losses=false", "training.lambda_latent_consistency=0"]
ROWS = {
    "forward only": OFF,
    "+ 2-step rollout loss": [OFF[1], OFF[2]],
    "+ reconstruction (inverse encoding)": [OFF[0], OFF[2]],
    "+ latent consistency": [OFF[0], OFF[1]],
    "the config": [],
}


def child(config_path, overrides, steps, warmup, repeats, batch):
    """Median seconds per training step of `config_path` + `overrides` on random fields."""
    backend = os.environ.get("KERAS_BACKEND", "torch")
    harness.limit_threads(backend)
    from upt_keras.config import load_config
    from upt_keras.models.presets import preset
    from upt_keras.training.setup import build_model

    cfg = load_config(config_path, list(overrides) + [f"training.batch_size={batch}"])
    grid = tuple(preset(cfg.model.preset)["grid_shape"])
    data = types.SimpleNamespace(grid_shape=grid, num_channels=1, dt=1.0, field_mean=[0.0], field_std=[1.0])
    model = build_model(cfg, data, steps_per_epoch=steps)
    frames = model.objective.settings.target_steps
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * steps,) + grid + (1,)).astype("float32")
    y = rng.standard_normal((batch * steps,) + ((frames,) if frames > 1 else ()) + grid + (1,)).astype("float32")
    model.fit(x[:batch * warmup], y[:batch * warmup], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        times.append((time.perf_counter() - start) / steps)
    return dict(seconds=statistics.median(times), spread=[min(times), max(times)], frames=frames)


def render(results, info, command, config, batch):
    base = results["forward only"]["seconds"]
    lines = ["# What each objective term costs per training step", "",
             harness.machine_line(info) + " One core, one thread, one fresh process per row, rows one after the other.",
             "", f"Command: `{command}`", "",
             f"`{config}` in batches of {batch} on random fields; seconds per step are the median of the epochs "
             "(min-max beside it); *added* is the row's time less the forward term's alone.", ""]
    rows = [[name, f"{r['seconds'] * 1e3:.1f}", f"{r['spread'][0] * 1e3:.1f}-{r['spread'][1] * 1e3:.1f}",
             f"{(r['seconds'] - base) * 1e3:+.1f}", f"{r['seconds'] / base:.2f}x"] for name, r in results.items()]
    lines += harness.markdown_table(["row", "ms per step", "min-max", "added ms", "of forward only"], rows,
                                    align=["l", "r", "r", "r", "r"])
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join("configs", "train_burgers1d.yaml"))
    parser.add_argument("--batch", type=int, default=None, help="default: the config's training.batch_size")
    parser.add_argument("--steps", type=int, default=40, help="steps per timed epoch")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per row")
    parser.add_argument("--out", default=None, help="markdown report (default: print only); the JSON goes beside it")
    args = parser.parse_args(argv)
    backend = os.environ.get("KERAS_BACKEND", "torch")
    config = os.path.join(harness.ROOT, args.config) if not os.path.isabs(args.config) else args.config
    if args.batch is None:
        from upt_keras.config import load_config

        args.batch = load_config(config).training.batch_size
    env = harness.child_env(backend, one_thread=True, TF_CPP_MIN_LOG_LEVEL="3")
    core = harness.cores()[0]
    results = {}
    for name, overrides in ROWS.items():
        results[name] = harness.run_function(child, config, overrides, args.steps, args.warmup, args.repeats,
                                             args.batch, env=env, core=core)
        print(f"{name:38s} {results[name]['seconds'] * 1e3:7.1f} ms per step", flush=True)
    command = harness.command_line("bench_terms.py", argv, backend)
    text = render(results, harness.machine_info(), command, args.config, args.batch)
    print(text)
    if args.out:
        harness.write_text(args.out, text)
        harness.write_json(os.path.splitext(args.out)[0] + ".json", dict(command=command, rows=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
