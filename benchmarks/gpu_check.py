"""Mixed-precision check on a GPU: a short B64 `fit` under mixed_float16 on each Keras backend.

For every backend (one fresh process each) this builds the B64 model of
`bench_b64.py` under `keras.mixed_precision.set_global_policy("mixed_float16")`,
runs one short epoch of `fit` and prints the median step time, the backend's
peak allocated GPU memory, the final loss (must be finite) and the loss scale.
`--float32` runs the same fit in float32 for comparison.

Exit status: 0 when every requested backend ran, 1 when one failed, 2 when no
GPU is visible (nothing is run).

    python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --backends torch,tensorflow --row inv2048 --steps 20
"""

import argparse
import glob
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_b64 import (  # noqa: E402
    B64_GRID,
    B64_SIZES,
    BATCH_SIZE,
    LEARNING_RATE,
    ROWS,
    SEED,
    _check_gpu_visible,
    _gpu_peak,
    model_kwargs,
)

BACKENDS = ("torch", "tensorflow", "jax")


def gpu_present():
    """True when the machine shows an NVIDIA GPU (without importing a framework)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
            return out.returncode == 0 and "GPU" in out.stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def child(args):
    import numpy as np

    backend = os.environ["KERAS_BACKEND"]
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    _check_gpu_visible(backend, "gpu")
    import keras

    sys.path.insert(0, os.path.dirname(HERE))
    from upt_keras import UPT, UPTObjective

    policy = "float32" if args.float32 else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(SEED)
    num = BATCH_SIZE * (args.warmup + args.steps)
    u_t = rng.standard_normal((num,) + B64_GRID + (B64_SIZES["num_fields"],)).astype("float32")
    u_next = np.roll(u_t, 1, axis=1)
    keras.utils.set_random_seed(SEED)
    model = UPT.from_sizes(B64_GRID, **B64_SIZES, objective=UPTObjective(**model_kwargs(args.row)))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE))

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.losses = [], []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))  # reading the loss waits for the step
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    model.fit(u_t, u_next, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    scale = getattr(model.optimizer, "dynamic_scale", None)
    result = dict(
        backend=backend,
        policy=policy,
        variable_dtype=model.trainable_weights[0].dtype,
        compute_dtype=model.decoder.compute_dtype,
        median=statistics.median(timer.times[args.warmup:]),
        first=timer.times[0],
        loss=timer.losses[-1],
        loss_scale=None if scale is None else float(keras.ops.convert_to_numpy(scale)),
        gpu_peak=_gpu_peak(backend),
    )
    print("RESULT " + json.dumps(result), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of torch,tensorflow,jax")
    parser.add_argument("--row", default="inv4096", choices=tuple(ROWS), help="B64 row (see bench_b64.py)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (tracing, compilation)")
    parser.add_argument("--float32", action="store_true", help="float32 instead of mixed_float16")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds allowed per backend")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if not gpu_present():
        print("gpu_check: no GPU visible on this machine (no nvidia-smi GPU, no /dev/nvidia*); it needs a CUDA GPU. "
              "Nothing was run.")
        return 2
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    failed = False
    print(f"B64 row {args.row} ({ROWS[args.row]['label']}, Q={ROWS[args.row]['num_queries']}), "
          f"{'float32' if args.float32 else 'mixed_float16'}, median of {args.steps} fit steps after {args.warmup}")
    for backend in backends:
        if backend not in BACKENDS:
            print(f"{backend:10s} unknown backend (choose from {BACKENDS})")
            failed = True
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, XLA_PYTHON_CLIENT_PREALLOCATE="false")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--row", args.row,
               "--steps", str(args.steps), "--warmup", str(args.warmup)] + (["--float32"] if args.float32 else [])
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{backend:10s} FAILED: timed out after {args.timeout:.0f} s")
            failed = True
            continue
        results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if not results:
            tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
            print(f"{backend:10s} FAILED (exit {proc.returncode}): {tail}")
            failed = True
            continue
        r = results[0]
        finite = math.isfinite(r["loss"])
        failed |= not finite
        scale = "none" if r["loss_scale"] is None else f"{r['loss_scale']:g}"
        print(f"{backend:10s} {r['policy']} (variables {r['variable_dtype']}, compute {r['compute_dtype']}): "
              f"median step {r['median'] * 1000:.1f} ms (first {r['first']:.1f} s), peak GPU "
              f"{r['gpu_peak']:.0f} MiB, loss {r['loss']:.4g}{'' if finite else ' NOT FINITE'}, loss scale {scale}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
