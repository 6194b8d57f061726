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
import math
import os
import statistics
import sys
import time

import harness
from workload_b64 import B64_GRID, B64_SIZES, BATCH_SIZE, LEARNING_RATE, ROWS, SEED, make_data, model_kwargs

BACKENDS = ("torch", "tensorflow", "jax")


def child(args):
    backend = os.environ["KERAS_BACKEND"]
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    harness.check_gpu_visible(backend)
    import keras

    from upt_keras import UPT, UPTObjective

    policy = "float32" if args.float32 else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    u_t, u_next = make_data(BATCH_SIZE * (args.warmup + args.steps))
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
        gpu_peak=harness.gpu_peak_mib(backend),
    )
    harness.emit(result)


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
    if not harness.gpu_present():
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
        env = harness.child_env(backend, XLA_PYTHON_CLIENT_PREALLOCATE="false")
        cmd = ["--child", "--row", args.row, "--steps", args.steps, "--warmup", args.warmup]
        try:
            r = harness.run_script(__file__, cmd + (["--float32"] if args.float32 else []), env=env,
                                   timeout=args.timeout)
        except harness.ChildError as err:
            print(f"{backend:10s} FAILED: {err}")
            failed = True
            continue
        finite = math.isfinite(r["loss"])
        failed |= not finite
        scale = "none" if r["loss_scale"] is None else f"{r['loss_scale']:g}"
        print(f"{backend:10s} {r['policy']} (variables {r['variable_dtype']}, compute {r['compute_dtype']}): "
              f"median step {r['median'] * 1000:.1f} ms (first {r['first']:.1f} s), peak GPU "
              f"{r['gpu_peak']:.0f} MiB, loss {r['loss']:.4g}{'' if finite else ' NOT FINITE'}, loss scale {scale}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
