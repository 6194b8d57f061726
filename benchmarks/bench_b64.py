"""Workload B64: step time and peak memory of UPT training on each Keras backend and in plain PyTorch.

2D 64x64 grid, 1 field, batch 10, patch 4 -> 256 patch tokens -> 128 latent
tokens x 128; approximator width 256, depth 8, 8 heads, MLP ratio 4; decoder
width 256, 3 blocks, 4 heads, MLP 256; Fourier frequencies 1, 2, 4, 8; Adam
lr 1e-4; float32 (or mixed_float16 on a GPU with `--mixed`). The model, data and step are those of
`workload_b64.py`.

Every (backend, row) pair runs in a fresh Python process, so the peak memory of
a row is its own (CPU: peak RSS of that process, libraries included; GPU: the
backend's peak allocated device memory). The parent collects the results and
writes a markdown table with ratios measured in the same run (`b64_report.py`).

Rows (pick with `--rows`):
    fwd4096  forward loss only, Q = 4096 (all points)
    fwd2048  forward loss only, Q = 2048 uniformly sampled points
    inv4096  + inverse losses (both lambdas 0.01) on every step, Q = 4096
    inv2048  + inverse losses on every step, Q = 2048
    freq2    + inverse losses on every 2nd step, Q = 4096

Backends (pick with `--backends`): torch, tensorflow, jax (Keras 3 backends,
KERAS_BACKEND set in the child) and reference (the plain-PyTorch twin in
`torch_reference.py`, same sizes, losses and seeds).

On a shared, loaded machine step times drift by several times within minutes.
Two measurements hold up better there: `--lockstep` runs groups of jobs as
processes that take turns step by step (so a ratio compares steps taken side by
side), and `--flops` counts the matrix-multiply work of a step with the torch
profiler (torch backend and plain torch), which does not depend on the load.

Examples:
    python benchmarks/bench_b64.py                       # everything, CPU, 5 timed steps per row
    python benchmarks/bench_b64.py --backends torch,reference --rows fwd4096,inv4096 --steps 3
    python benchmarks/bench_b64.py --backends torch,reference --flops --steps 1 --warmup 1
    python benchmarks/bench_b64.py --lockstep torch:fwd4096+reference:fwd4096,torch:inv4096+torch:fwd4096
    python benchmarks/bench_b64.py --device gpu --mixed --out benchmarks/results/results_b64_gpu_mixed.md
    python benchmarks/bench_b64.py --json raw.json ...; python benchmarks/bench_b64.py --render raw.json
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time

import harness
from b64_report import BACKENDS, summarise, write_report
from workload_b64 import ROWS, count_flops, setup, time_steps


# --------------------------------------------------------------------------- child
def child(args):
    row, backend = args.rows[0], args.backends[0]
    step, info = setup(backend, row, args.device, args.mixed, args.jit_compile)
    if args.lockstep:  # the parent says when to step, one "step" line at a time
        print("READY", flush=True)
        times, flags = [], []
        for line in sys.stdin:
            if line.strip() != "step":
                break
            t, f = time_steps(step, 1)
            times += t
            flags += f
            print(f"STEP {t[0]!r} {int(f[0])}", flush=True)
    else:
        times, flags = time_steps(step, args.warmup + args.steps)
    flops = count_flops(step, args.flops_steps) if args.flops_steps else None
    result = info()
    result.update(backend=backend, row=row, warmup=args.warmup, steps=args.steps, times=times, flags=flags,
                  peak_rss=harness.peak_rss_mib(), flops=flops)
    harness.emit(result)


# --------------------------------------------------------------------------- parent
def _child_env(backend, device):
    env = harness.child_env("torch" if backend == "reference" else backend, cpu_only=device == "cpu")
    if device == "gpu":
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # report use, not the preallocated pool
    return env


def _steps_for(row, args):
    """freq2 needs both kinds of step in warm-up and equally many of each timed."""
    warmup, steps = args.warmup, args.steps
    if ROWS[row]["inverse_loss_frequency"] == 2:
        warmup, steps = max(2, warmup + warmup % 2), steps + steps % 2
    return warmup, steps


def _child_args(backend, row, warmup, steps, args, lockstep=False):
    cmd = ["--child", "--backends", backend, "--rows", row, "--steps", steps, "--warmup", warmup,
           "--device", args.device, "--jit-compile", args.jit_compile]
    if args.flops and backend in ("torch", "reference"):
        cmd += ["--flops-steps", "2" if ROWS[row]["inverse_loss_frequency"] == 2 else "1"]
    return cmd + (["--mixed"] if args.mixed else []) + (["--lockstep-child"] if lockstep else [])


def run_row(backend, row, args):
    warmup, steps = _steps_for(row, args)
    start = time.perf_counter()
    try:
        result = harness.run_script(__file__, _child_args(backend, row, warmup, steps, args),
                                    env=_child_env(backend, args.device), timeout=args.timeout)
    except harness.ChildError as err:
        result = dict(backend=backend, row=row, error=str(err))
    result["wall"] = time.perf_counter() - start
    return result


def _read_tagged(proc, tag):
    """Next stdout line of `proc` starting with `tag`, without the tag (None at end of output)."""
    for line in proc.stdout:
        if line.startswith(tag):
            return line[len(tag):].strip()
    return None


def run_lockstep(jobs, args):
    """Runs (backend, row) jobs as processes stepped in turn: one steps while the others wait.

    All jobs live through the same stretch of machine load, so the ratio of
    their step times is far steadier than that of runs made one after another.
    The order alternates every step. Peak memory here is not per row (the
    processes coexist but only one computes at a time), so it is not reported.
    """
    warmups, steps = zip(*(_steps_for(row, args) for _, row in jobs))
    warmup, steps = max(warmups), max(steps)
    procs, logs = [], []
    try:
        for backend, row in jobs:
            log = tempfile.TemporaryFile("w+")
            logs.append(log)
            procs.append(harness.start_script(__file__, _child_args(backend, row, warmup, steps, args, lockstep=True),
                                              env=_child_env(backend, args.device), stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=log))
        for proc, log in zip(procs, logs):  # model built: the import and build time is not timed
            if _read_tagged(proc, "READY") is None:
                raise RuntimeError(harness.error_text(_log_text(log), proc.wait()))
        for i in range(warmup + steps):
            order = range(len(procs)) if i % 2 == 0 else reversed(range(len(procs)))
            for k in order:
                procs[k].stdin.write("step\n")
                procs[k].stdin.flush()
                if _read_tagged(procs[k], "STEP ") is None:
                    raise RuntimeError(harness.error_text(_log_text(logs[k]), procs[k].wait()))
        results = []
        for (backend, row), proc, log in zip(jobs, procs, logs):
            proc.stdin.write("done\n")
            proc.stdin.close()
            line = _read_tagged(proc, harness.RESULT_TAG)
            if line is None:
                raise RuntimeError(harness.error_text(_log_text(log), proc.wait()))
            proc.wait()
            result = json.loads(line)
            result["wall"] = float("nan")
            results.append(summarise(result))
        return dict(jobs=jobs, results=results)
    except RuntimeError as err:
        return dict(jobs=jobs, error=str(err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def _log_text(log):
    log.seek(0)
    return log.read()


def _parse_groups(text, parser):
    """`torch:fwd4096+reference:fwd4096,jax:inv4096+jax:fwd4096` -> [[(backend, row), ...], ...]."""
    groups = []
    for chunk in filter(None, (c.strip() for c in text.split(","))):
        jobs = []
        for job in chunk.split("+"):
            backend, _, row = job.strip().partition(":")
            if backend not in BACKENDS or row not in ROWS:
                parser.error(f"--lockstep job {job!r}: want backend:row with a backend of {BACKENDS} "
                             f"and a row of {tuple(ROWS)}")
            jobs.append((backend, row))
        if len(jobs) < 2:
            parser.error(f"--lockstep group {chunk!r} needs at least two jobs joined by '+'")
        groups.append(jobs)
    return groups


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated subset of {','.join(BACKENDS)} (default: all)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--mixed", action="store_true", help="mixed_float16 (GPU only)")
    parser.add_argument("--jit-compile", default="auto", help="passed to Keras compile(jit_compile=...)")
    parser.add_argument("--out", default=harness.results_path("results_b64.md"), help="markdown report path")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per row process")
    parser.add_argument("--lockstep", default="",
                        help="instead of the rows, run groups of jobs stepped in turn, e.g. "
                             "'torch:fwd4096+reference:fwd4096,torch:inv4096+torch:fwd4096'")
    parser.add_argument("--flops", action="store_true",
                        help="torch backend and plain torch: also count each row's matmul/conv FLOPs per step "
                             "with the torch profiler (after the timed steps)")
    parser.add_argument("--flops-steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", default="", help="also save the raw results as JSON to this path")
    parser.add_argument("--render", default="",
                        help="write the report from raw results saved by --json, without running anything")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lockstep-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.groups = _parse_groups(args.lockstep, parser)
    args.lockstep = args.lockstep_child
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    for b in args.backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}; choose from {BACKENDS}")
    for r in args.rows:
        if r not in ROWS:
            parser.error(f"unknown row {r!r}; choose from {tuple(ROWS)}")
    if args.mixed and args.device != "gpu":
        parser.error("--mixed needs --device gpu (float16 step times on a CPU mean nothing)")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.jit_compile in ("true", "True", "false", "False"):
        args.jit_compile = args.jit_compile in ("true", "True")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    command = harness.command_line("bench_b64.py", argv, local=())
    info = harness.machine_info()
    start = time.perf_counter()
    results, groups = [], []

    def save():  # after every row, so a long run leaves partial results
        elapsed = time.perf_counter() - start
        harness.write_text(args.out, write_report(results, args, info, elapsed, command, groups))
        if args.json:
            harness.write_json(args.json, dict(command=command, info=info, elapsed=elapsed, warmup=args.warmup,
                                               steps=args.steps, device=args.device, mixed=args.mixed,
                                               results=results, groups=groups))

    if args.render:
        with open(args.render) as f:
            saved = json.load(f)
        args.warmup, args.steps, args.device, args.mixed = (saved[k] for k in ("warmup", "steps", "device", "mixed"))
        harness.write_text(args.out, write_report(saved["results"], args, saved["info"], saved["elapsed"],
                                                  saved["command"], saved["groups"]))
        print(f"wrote {args.out}")
        return

    for jobs in args.groups:
        group = run_lockstep(jobs, args)
        groups.append(group)
        if "error" in group:
            print(f"{jobs} FAILED {group['error']}", flush=True)
        else:
            print("  |  ".join(f"{r['backend']} {r['row']} median {r['median']:.2f} s" for r in group["results"]),
                  flush=True)
        save()
    # Rows outer, backends inner: the runs compared in a ratio sit close in time
    # on a machine whose load changes.
    for row in args.rows if not args.groups else []:
        for backend in args.backends:
            result = summarise(run_row(backend, row, args))
            results.append(result)
            if "error" in result:
                print(f"{backend:10s} {row:8s} FAILED {result['error']}", flush=True)
            else:
                mem = result["gpu_peak"] if args.device == "gpu" else result["peak_rss"]
                print(f"{backend:10s} {row:8s} median {result['median']:.2f} s  mem {mem:.0f} MiB  "
                      f"params {result['params']:,}  steps {' '.join(f'{t:.2f}' for t in result['times'])}",
                      flush=True)
            save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
