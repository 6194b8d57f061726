"""Benchmarks of the data package: Burgers solver throughput and PairDataset batch rate.

Run from the repository root:

    python benchmarks/bench_data.py            # writes benchmarks/results/results_data.md
    python benchmarks/bench_data.py --quick    # fewer repeats, prints only
    python benchmarks/bench_data.py --full-size DIR   # full-size PDEBench files made in DIR (about 33 GB):
                                                      # writes benchmarks/results/results_data_full.md (and .json)

(a) Solver: 1D Burgers, N=1024, nu=0.01, t in [0, 1], frames every 0.01, GRF initial conditions with peak |u| = 1,
    automatic internal step (stable_time_step: 0.004 here), several batch sizes; median of repeats.
(b) Default data set: time to generate it (in a fresh temporary cache), then PairDataset over the training split with
    batch 32 and shuffling: construction time and batches per second for a full pass of __getitem__; median of repeats.
(c) With --full-size: full-size files in each PDEBench layout, contiguous and chunked, cold and warm page cache: time to
    the first training step, peak RSS, what the pipeline serves against what a training step consumes
    (`workload_data_full.py` says how).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import harness
import workload_data_full
from upt_keras.data import (
    PairDataset,
    ensure_default_burgers,
    gaussian_random_field,
    open_trajectories,
    solve_burgers,
    split_indices,
    stable_time_step,
)

RESULTS = harness.results_path("results_data.md")


def bench_solver(batch_sizes, repeats):
    rows = []
    rng = np.random.default_rng(0)
    for batch in batch_sizes:
        u0 = gaussian_random_field(rng, batch, 1024, amplitude=1.0)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            solve_burgers(u0, nu=0.01, t_end=1.0, dt_save=0.01)
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        rows.append((batch, t, batch / t))
        print(f"solver batch {batch:4d}: {t:.3f} s -> {batch / t:.1f} trajectories/s")
    return rows


def bench_pairs(repeats):
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        path = ensure_default_burgers(cache, progress=False)
        generation = time.perf_counter() - start
        print(f"default set generated in {generation:.1f} s")
        with open_trajectories(path) as store:
            train = split_indices(store.num_samples)["train"]
            start = time.perf_counter()
            ds = PairDataset(store, train, batch_size=32, shuffle=True)
            construction = time.perf_counter() - start
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            rates.append(len(ds) / (time.perf_counter() - start))
            ds.on_epoch_end()
        rate = statistics.median(rates)
        print(f"PairDataset: {ds.num_pairs} pairs, {len(ds)} batches, built in {construction:.3f} s, "
              f"{rate:.0f} batches/s")
        return generation, construction, ds.num_pairs, len(ds), rate


def write_results(solver_rows, pairs):
    generation, construction, num_pairs, num_batches, rate = pairs
    lines = [
        "# Data package benchmarks",
        "",
        f"- {harness.machine_line(harness.machine_info(('numpy', 'h5py')))}",
        "- Command: `python benchmarks/bench_data.py`",
        f"- 1-minute load average when finished: {os.getloadavg()[0]:.2f} (the cores may be shared; expect noise)",
        "",
        "## (a) Burgers solver, 1D, N=1024, nu=0.01, t in [0, 1], 101 saved frames",
        "",
        f"ETDRK4 with 2/3 dealiasing, internal step {stable_time_step(1.0, 0.01, 1024):.4f} (automatic, peak |u| = 1), "
        "float64, single process. Median of repeats.",
        "",
    ]
    lines += harness.markdown_table(
        ["batch", "seconds per batch", "trajectories / s", "ms per trajectory"],
        [[batch, f"{t:.3f}", f"{tps:.1f}", f"{1000 * t / batch:.1f}"] for batch, t, tps in solver_rows], align="rrrr")
    lines += [
        "",
        "## (b) Default 1D Burgers set and PairDataset",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| generate default set (600 x 41 x 256, solved at 1024 points) | {generation:.1f} s |",
        f"| PairDataset construction (480 training trajectories read into memory) | {construction:.3f} s |",
        f"| training pairs / batches (batch 32) | {num_pairs} / {num_batches} |",
        f"| batches per second (shuffled, full pass of `__getitem__`) | {rate:.0f} |",
        "",
    ]
    harness.write_text(RESULTS, "\n".join(lines))
    print(f"wrote {RESULTS}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, no results file")
    parser.add_argument("--full-size", metavar="DIR", help="measure full-size files, made in DIR (kept for reruns)")
    parser.add_argument("--files", nargs="+", choices=sorted(workload_data_full.FILES),
                        default=list(workload_data_full.FILES), help="which full-size files (with --full-size)")
    args = parser.parse_args()
    if args.full_size:
        rows = workload_data_full.run(args.full_size, args.files)
        # the folder is this machine's: the command records it as DIR
        command = harness.command_line("bench_data.py", local=("--full-size",)) + " --full-size DIR"
        harness.write_json(harness.results_path("results_data_full.json"), rows)
        harness.write_text(harness.results_path("results_data_full.md"),
                           "\n".join(workload_data_full.report(rows, command)) + "\n")
        print(f"wrote {harness.results_path('results_data_full.md')}")
        return
    repeats = 1 if args.quick else 3
    solver_rows = bench_solver([16, 64, 128] if not args.quick else [64], repeats)
    pairs = bench_pairs(repeats)
    if not args.quick:
        write_results(solver_rows, pairs)


if __name__ == "__main__":
    main()
