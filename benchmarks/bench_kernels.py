"""The kernels a B64 training step is made of, timed alone on each Keras backend: why JAX is slower on CPU.

B64 (`bench_b64.py`) runs 1.8-2.6x slower on JAX than on the torch backend and 2.3x slower than on TensorFlow on this
CPU, with the same model and the same work. This script times the operations that step spends its time in, at the
step's own shapes, one fresh process per backend, each compiled the way the backend runs a training step (JAX:
`jax.jit`, XLA; TensorFlow: a `tf.function` graph without XLA, as Keras runs it on a CPU-only machine; torch: eager),
forward and backward (`value_and_grad` / `GradientTape` / `autograd`):

- `dense 40960x256x256`: the decoder's projections (batch 10 x 4096 queries, width 256), `x @ w + b`;
- `dense 1280x256x1024`: the approximator's MLP (batch 10 x 128 tokens);
- `attention 4096<-128`: the decoder's cross-attention (4 heads of 64), `ops.dot_product_attention`, and the same
  written out with two einsums and a float32 softmax (`explicit attention`, `upt_keras.layers.attention`);
- `layer norm 40960x256` and `gelu 40960x256`: the elementwise work around them.

    python benchmarks/bench_kernels.py --out benchmarks/results/results_kernels.md
    XLA_FLAGS=... python benchmarks/bench_kernels.py --backends jax   # try XLA options on the JAX row

Medians of `--repeats` timed calls after 3 warm-up calls; GFLOP/s counts the multiply-adds of the forward and
backward matrix products (2 x 3 x m x k x n for a dense layer, 2 x 2 x 2 x B x h x Q x T x d for attention).
"""

import argparse
import os
import sys
import time

import numpy as np

import harness

BACKENDS = ("torch", "tensorflow", "jax")
B, Q, T, HEADS, HEAD_DIM, WIDTH = 10, 4096, 128, 4, 64, 256


def _cases(rng):
    f32 = np.float32
    return {
        "dense 40960x256x256": (dict(x=rng.normal(size=(B * Q, WIDTH)).astype(f32),
                                     w=rng.normal(size=(WIDTH, WIDTH)).astype(f32) / 16,
                                     b=rng.normal(size=(WIDTH,)).astype(f32)), 6 * B * Q * WIDTH * WIDTH),
        "dense 1280x256x1024": (dict(x=rng.normal(size=(B * T, WIDTH)).astype(f32),
                                     w=rng.normal(size=(WIDTH, 4 * WIDTH)).astype(f32) / 16,
                                     b=rng.normal(size=(4 * WIDTH,)).astype(f32)), 6 * B * T * WIDTH * 4 * WIDTH),
        "attention 4096<-128": (dict(q=rng.normal(size=(B, Q, HEADS, HEAD_DIM)).astype(f32),
                                     k=rng.normal(size=(B, T, HEADS, HEAD_DIM)).astype(f32),
                                     v=rng.normal(size=(B, T, HEADS, HEAD_DIM)).astype(f32)),
                                8 * B * HEADS * Q * T * HEAD_DIM),
        "explicit attention 4096<-128": (None, 8 * B * HEADS * Q * T * HEAD_DIM),
        "layer norm 40960x256": (dict(x=rng.normal(size=(B * Q, WIDTH)).astype(f32)), 0),
        "gelu 40960x256": (dict(x=rng.normal(size=(B * Q, WIDTH)).astype(f32)), 0),
    }


def _loss_fns(ops):
    """Scalar losses whose gradient runs the backward pass of each kernel (the kernels are Keras ops)."""
    def dense(x, w, b):
        return ops.sum(ops.matmul(x, w) + b)

    def attention(q, k, v):
        return ops.sum(ops.dot_product_attention(q, k, v))

    def explicit(q, k, v):
        from upt_keras.layers.attention import explicit_attention

        return ops.sum(explicit_attention(q, k, v))

    def layer_norm(x):
        return ops.sum(ops.layer_normalization(x, ops.ones((WIDTH,)), ops.zeros((WIDTH,)), epsilon=1e-6))

    def gelu(x):
        return ops.sum(ops.gelu(x))

    return {"dense": dense, "attention": attention, "explicit": explicit, "layer": layer_norm, "gelu": gelu}


def child(repeats):
    """{kernel: {"ms": median ms, "gflops": GFLOP/s or None}} on the backend of `KERAS_BACKEND`."""
    import keras
    from keras import ops

    backend = keras.backend.backend()
    fns = _loss_fns(ops)
    results = {}
    cases = _cases(np.random.default_rng(0))
    for name, (arrays, flops) in cases.items():
        arrays = cases["attention 4096<-128"][0] if arrays is None else arrays  # the same q, k, v
        fn = fns[name.split()[0]]
        names = list(arrays)
        if backend == "jax":
            import jax

            grad = jax.jit(jax.value_and_grad(lambda *a: fn(*a), argnums=tuple(range(len(names)))))
            inputs = [jax.numpy.asarray(arrays[n]) for n in names]

            def run():
                value, grads = grad(*inputs)
                jax.block_until_ready(grads)
        elif backend == "tensorflow":
            import tensorflow as tf

            inputs = [tf.Variable(arrays[n]) for n in names]

            @tf.function(jit_compile=False)
            def step():
                with tf.GradientTape() as tape:
                    value = fn(*inputs)
                return tape.gradient(value, inputs)

            def run():
                [g.numpy() for g in step()]
        else:
            import torch

            inputs = [torch.tensor(arrays[n], requires_grad=True) for n in names]

            def run():
                for t in inputs:
                    t.grad = None
                fn(*inputs).backward()
        for _ in range(3):
            run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        ms = float(np.median(times)) * 1e3
        results[name] = {"ms": ms, "gflops": flops / ms / 1e6 if flops else None}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=None, help="markdown report (default: print only)")
    args = parser.parse_args(argv)
    results = {}
    for backend in args.backends:
        env = harness.child_env(backend, cpu_only=True, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            results[backend] = harness.run_function(child, args.repeats, env=env)
        except harness.ChildError as err:
            raise SystemExit(f"{backend}: {err}") from None
    names = list(next(iter(results.values())))
    flags = os.environ.get("XLA_FLAGS")
    info = harness.machine_info()
    others = [b for b in args.backends if b != "torch"] if "torch" in args.backends else []
    rows = []
    for name in names:
        cells = []
        for b in args.backends:
            r = results[b][name]
            cells.append(f"{r['ms']:.1f}" + (f" ({r['gflops']:.0f})" if r["gflops"] else ""))
        ratios = [f"{results[b][name]['ms'] / results['torch'][name]['ms']:.2f}" for b in others]
        rows.append([name] + cells + ratios)
    lines = ["# Kernels of the B64 step, timed alone per backend (forward + backward)", "",
             f"Generated {info['date']} by `{'XLA_FLAGS=' + repr(flags) + ' ' if flags else ''}python "
             f"benchmarks/bench_kernels.py --backends {' '.join(args.backends)} --repeats {args.repeats}`.",
             f"{harness.machine_line(info)} The cores may be shared; library default threads. Median ms "
             f"of {args.repeats} calls after 3 warm-up calls (GFLOP/s of the matrix products in brackets).", ""]
    lines += harness.markdown_table(["kernel"] + args.backends + [f"{b} / torch" for b in others], rows)
    text = "\n".join(lines) + "\n"
    if args.out:
        harness.write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
