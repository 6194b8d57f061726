"""Decoding at many points: peak memory growth and points per second, per backend.

`model.decode(z, coords)` with 1e5, 1e6 and 1e7 query points on the "tiny"
preset on a 1D grid of 256 points (8 latent tokens x 16, decoder width 32, one block), batch 2,
in chunks of `--chunk` points (default 65,536, the model's default). Every row
runs in a fresh Python process with one compute thread. A background thread
samples the process's resident memory every 2 ms while the decode runs; the
table reports the growth of that peak over the resident memory just before
the call, and how much of it the result and the coordinates themselves account
for (they grow with the number of points whatever the decoder does: 4 bytes
per point for the coordinates, 4 x batch per point for the float32 output).

The claim checked: inference builds no autograd state, so the growth beyond
the inputs and outputs stays near one chunk's working set (the row with
exactly one chunk of points), flat in the number of points. The
`torch+grad` row decodes with `gradients=True` (what training needs): each
chunk's activations then stay alive until the concatenation.

Examples:
    python benchmarks/bench_decode.py --out benchmarks/results/results_decode.md
    python benchmarks/bench_decode.py --backends torch --points 100000 1000000
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

import harness

GRID = (256,)
BATCH = 2
DEFAULT_POINTS = (100_000, 1_000_000, 10_000_000)
DEFAULT_BACKENDS = ("torch", "tensorflow", "jax", "torch+grad")


def child(backend_name, points, chunk, repeats):
    """Decodes `points` query points `repeats` times on `backend_name` (`torch+grad`: with gradients)."""
    backend, _, grad = backend_name.partition("+")  # KERAS_BACKEND is `backend` (set by `run_row`)
    harness.limit_threads(backend)
    import keras

    from upt_keras import UPT

    model = UPT.from_preset("tiny", grid_shape=GRID, decode_chunk_size=chunk)
    rng = np.random.default_rng(0)
    fields = rng.standard_normal((BATCH,) + GRID + (1,)).astype("float32")
    z = model.encode(fields)
    gradients = grad == "grad"

    def decode(coords):
        return keras.ops.convert_to_numpy(model.decode(z, coords, gradients=gradients))

    decode(rng.random((chunk, 1), dtype="float32"))  # warm-up: kernels, allocator pools
    coords = rng.random((points, 1), dtype="float32")
    times = []
    for i in range(repeats):
        before = harness.rss_mib()
        with harness.PeakSampler() as sampler:
            start = time.perf_counter()
            out = decode(coords)
            times.append(time.perf_counter() - start)
        if i == 0:
            growth = sampler.peak - before
        assert out.shape == (BATCH, points, 1), out.shape
        del out
    io_mib = (coords.nbytes + BATCH * points * 4) / 2**20
    return dict(backend=backend_name, points=points, chunk=chunk, growth_mib=growth, io_mib=io_mib,
                seconds=statistics.median(times), repeats=len(times))


def run_row(backend, points, args):
    repeats = 1 if points >= 5_000_000 else args.repeats
    env = harness.child_env(backend.partition("+")[0], one_thread=True, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        return harness.run_function(child, backend, points, args.chunk, repeats, env=env)
    except harness.ChildError as err:
        return dict(backend=backend, points=points, chunk=args.chunk, error=str(err))


def render(results, info, command):
    lines = [
        "# Decoding at many points: peak memory and throughput",
        "",
        harness.machine_line(info) + " One compute thread per process.",
        "",
        f"Command: `{command}`",
        "",
        f"The `tiny` preset on a 1D grid of {GRID[0]} points (8 latent tokens x 16, decoder width 32, one block), "
        f"batch {BATCH}, "
        "`model.decode(z, coords)` in chunks of "
        f"{results[0]['chunk']:,} points; one fresh process per row. *growth*: peak resident memory during the call "
        "minus the resident memory before it (sampled every 2 ms, first call). *in/out*: the coordinates and the "
        "float32 result, which any decoder must hold. *beyond in/out* = growth - in/out: what the decoding itself "
        "keeps alive. Points/s: median over the repeats (one call at 1e7 points).",
        "",
    ]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["backend"], f"{r['points']:,}", f"failed: {r['error']}", "", "", "", ""])
            continue
        rows.append([r["backend"], f"{r['points']:,}", f"{r['growth_mib']:.0f}", f"{r['io_mib']:.0f}",
                     f"{r['growth_mib'] - r['io_mib']:.0f}", f"{r['seconds']:.2f}",
                     f"{r['points'] / r['seconds']:,.0f}"])
    lines += harness.markdown_table(
        ["backend", "points", "growth (MiB)", "in/out (MiB)", "beyond in/out (MiB)", "seconds", "points/s"],
        rows, align=["l"] + ["r"] * 6)
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS),
                        help="torch, tensorflow, jax; torch+grad decodes with gradients=True")
    parser.add_argument("--points", nargs="+", type=int, default=list(DEFAULT_POINTS))
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="write the markdown table here (and the raw numbers next to it as .json)")
    args = parser.parse_args(argv)
    results = []
    for backend in args.backends:
        # one chunk first: the working set the other rows are compared with
        rows = [args.chunk] + list(args.points)
        if backend.endswith("+grad"):  # with gradients kept, 1e7 points would need many GB: show the trend
            rows = [p for p in rows if p <= 1_000_000]
        for points in rows:
            result = run_row(backend, points, args)
            print(json.dumps(result), flush=True)
            results.append(result)
    command = harness.command_line("bench_decode.py", argv)
    info = harness.machine_info()
    text = render(results, info, command)
    print(text)
    if args.out:
        harness.write_text(args.out, text)
        harness.write_json(os.path.splitext(args.out)[0] + ".json", dict(machine=info, results=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
