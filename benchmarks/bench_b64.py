"""Workload B64: step time and peak memory of UPT training on each Keras backend and in plain PyTorch.

2D 64x64 grid, 1 field, batch 10, patch 4 -> 256 patch tokens -> 128 latent
tokens x 128; approximator width 256, depth 8, 8 heads, MLP ratio 4; decoder
width 256, 3 blocks, 4 heads, MLP 256; Fourier frequencies 1, 2, 4, 8; Adam
lr 1e-4; float32 (or mixed_float16 on a GPU with `--mixed`). The model, data and step are those of
`workload_b64.py`.

Every (backend, row) pair runs in a fresh Python process, so the peak memory of
a row is its own (CPU: peak RSS of that process, libraries included; GPU: the
backend's peak allocated device memory). The parent collects the results and
writes a markdown table with ratios measured in the same run.

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
import statistics
import subprocess
import sys
import tempfile
import time

import harness
from workload_b64 import ROWS, count_flops, setup, time_steps

BACKENDS = ("torch", "tensorflow", "jax", "reference")
KERAS_BACKENDS = ("torch", "tensorflow", "jax")

TARGETS = {  # the targets, compared against same-run ratios
    "torch_vs_ref": 1.0,
    "best_vs_ref": 0.7,
    "inv_vs_fwd": 2.0,
    "q2048_vs_q4096": 0.55,
}


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


def summarise(result):
    """Adds median / mean / on-off medians over the timed steps."""
    if "error" in result:
        return result
    timed = result["times"][result["warmup"]:]
    flags = result["flags"][result["warmup"]:]
    result["median"] = statistics.median(timed)
    result["mean"] = statistics.fmean(timed)
    on = [t for t, f in zip(timed, flags) if f]
    off = [t for t, f in zip(timed, flags) if not f]
    result["median_on"] = statistics.median(on) if on else None
    result["median_off"] = statistics.median(off) if off else None
    return result


def _fmt(value, spec=".2f"):
    return "n/a" if value is None else format(value, spec)


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _name(backend):
    return "plain torch" if backend == "reference" else backend


def write_report(results, args, info, elapsed, command, groups=()):
    """The markdown report: main table and ratios for `results`, a section for lockstep `groups`."""
    order = list(BACKENDS)
    results = sorted(results, key=lambda r: (order.index(r["backend"]), list(ROWS).index(r["row"])))
    everything = results + [r for g in groups for r in g.get("results", [])]
    lines = _header(everything, args, info, elapsed, command)
    if results:
        lines += _main_tables(results, args)
    if groups:
        lines += _lockstep_section(groups)
    return "\n".join(lines) + "\n"


def _header(results, args, info, elapsed, command):
    return [
        "# B64 benchmark: UPT training step time and peak memory",
        "",
        f"Generated {info.get('date', '')} by `{command}` ({elapsed / 60:.1f} min wall).",
        "",
        f"- {harness.machine_line(info)} Device: {args.device}{' (mixed_float16)' if args.mixed else ' (float32)'}.",
        "- Workload B64: 2D 64x64 grid (N = 4096), 1 field, batch 10, patch 4 -> 256 patch tokens -> 128 latent "
        "tokens x 128 (encoder width 128, 1 block, perceiver pooling); approximator width 256, depth 8, 8 heads, "
        "MLP ratio 4, qk-norm, adaLN; decoder width 256, 3 cross-attention blocks, 4 heads, MLP 256; Fourier "
        "frequencies 1, 2, 4, 8; Adam lr 1e-4; uniform query sampling; inverse lambdas 0.01.",
        f"- Timing: `train_on_batch` (Keras) / one optimizer step (plain torch) after {args.warmup} warm-up "
        f"step(s), median of {args.steps} timed steps (freq 2: warm-up and timed counts rounded up to even).",
        "- Threads: " + "; ".join(sorted({f"{_name(r['backend'])}: {r['threads']}" for r in results
                                          if "threads" in r}))
        + ". No thread settings were changed (library defaults).",
        "- Keras `jit_compile`: " + ", ".join(sorted({f"{r['backend']}: {r['jit_compile']}" for r in results
                                                       if "jit_compile" in r and r["backend"] != "reference"}))
        + " (`auto` means XLA on JAX, eager on torch, and on TensorFlow XLA only when a GPU is present: Keras "
        "turns it off on CPU-only machines, where TensorFlow runs a `tf.function` graph).",
    ]


def _main_tables(results, args):
    by = {(r["backend"], r["row"]): r for r in results}

    def med(backend, row):
        r = by.get((backend, row))
        return None if r is None or "error" in r else r["median"]

    ref_fwd = med("reference", "fwd4096")
    mem_label = "peak GPU MiB (backend allocator)" if args.device == "gpu" else "peak RSS MiB"
    lines = [
        "",
        "One fresh process per row. Rows run in the order fwd4096, fwd2048, ..., with every backend back to back, "
        "so the runs a ratio compares are close in time.",
        "",
        f"| backend | row | Q | median step s | vs same-backend fwd Q=4096 | vs plain-torch fwd Q=4096 | "
        f"{mem_label} | RSS after build MiB | params |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = _name(r["backend"])
        spec = ROWS[r["row"]]
        if "error" in r:
            lines.append(f"| {name} | {spec['label']} | {spec['num_queries']} | failed: {r['error']} |  |  |  |  |  |")
            continue
        mem = r["gpu_peak"] if args.device == "gpu" else r["peak_rss"]
        lines.append(
            f"| {name} | {spec['label']} | {spec['num_queries']} | {r['median']:.2f} | "
            f"{_fmt(_ratio(r['median'], med(r['backend'], 'fwd4096')))} | {_fmt(_ratio(r['median'], ref_fwd))} | "
            f"{mem:.0f} | {r['rss_build']:.0f} | {r['params']:,} |"
        )

    freq2 = [r for r in results if r["row"] == "freq2" and "error" not in r]
    if freq2:
        lines += [
            "",
            "Inverse losses on every 2nd step (Q = 4096): on-steps decode the full grid once and re-encode it, "
            "off-steps should cost about a forward-only step.",
            "",
            "| backend | mean step s | median on-step s | median off-step s | off-step / fwd-only Q=4096 | "
            "on-step / inverse freq 1 Q=4096 |",
            "|---|---|---|---|---|---|",
        ]
        for r in freq2:
            name = _name(r["backend"])
            lines.append(
                f"| {name} | {r['mean']:.2f} | {_fmt(r['median_on'])} | {_fmt(r['median_off'])} | "
                f"{_fmt(_ratio(r['median_off'], med(r['backend'], 'fwd4096')))} | "
                f"{_fmt(_ratio(r['median_on'], med(r['backend'], 'inv4096')))} |"
            )

    keras_done = [b for b in KERAS_BACKENDS if med(b, "fwd4096") is not None]
    columns = keras_done + ["reference"]
    lines += ["", "## Same-run ratios against the targets", "",
              "A cell is marked `ok` when it meets the row's target.", "",
              "| ratio | " + " | ".join(_name(b) for b in columns) + " | target |",
              "|---|" + "---|" * (len(columns) + 1)]

    def ratio_row(title, fn, target_key, judged):
        target = TARGETS[target_key]
        cells = []
        for b in columns:
            value = fn(b)
            mark = " ok" if b in judged and value is not None and value <= target else ""
            cells.append("" if value is None else f"{value:.2f}{mark}")
        lines.append(f"| {title} | " + " | ".join(cells) + f" | <= {target} ({', '.join(map(_name, judged))}) |")

    for row in ("fwd4096", "inv4096"):
        ratio_row(f"backend / plain torch, {ROWS[row]['label']} Q=4096",
                  lambda b, row=row: None if b == "reference" else _ratio(med(b, row), med("reference", row)),
                  "torch_vs_ref", ["torch"])
    fastest = min(keras_done, key=lambda b: med(b, "fwd4096"), default=None)
    if fastest is not None:
        ratio_row("best backend / plain torch, forward only Q=4096",
                  lambda b: _ratio(med(b, "fwd4096"), ref_fwd) if b == fastest else None, "best_vs_ref", [fastest])
    ratio_row("inverse freq 1 / forward only, Q=4096",
              lambda b: _ratio(med(b, "inv4096"), med(b, "fwd4096")), "inv_vs_fwd", columns)
    ratio_row("inverse Q=2048 / inverse Q=4096",
              lambda b: _ratio(med(b, "inv2048"), med(b, "inv4096")), "q2048_vs_q4096", columns)
    lines += ["", "The torch-backend target is <= 1.0x plain torch; the other backends' ratios are shown for "
              "reference. `best backend` is the fastest Keras backend on the forward-only Q=4096 row. By work, "
              "`inverse Q=2048 / inverse Q=4096` cannot go much below 0.75 (see the note below); measured times "
              "can come out lower where memory traffic, which also shrinks with Q, dominates."]
    lines += [
        "",
        "Cost model (the decoder dominates; its cost is linear in the points it decodes): a forward-only step "
        "decodes Q points. An inverse step decodes the next-step latent once on the full grid (N points, shared by "
        "the forward term and the inverse-decoding term, which re-encodes it) plus z_t at Q points (inverse "
        "encoding): N + Q points and a second encoder pass. At Q = N that is about 2x a forward-only step. Halving Q "
        "shrinks only the Q part: (N + N/2) / (N + N) = 0.75, so by decoder work about 0.75x, not 0.5x, is the floor "
        "of `inverse Q=2048 / inverse Q=4096` for a grid encoder, which needs the full grid (0.78x counting every "
        "matrix multiply). Forward-only steps scale with Q down to the fixed encoder + approximator cost.",
    ]

    counted = [r for r in results if r.get("flops")]
    if counted:
        lines += ["", "## Work per step (load-independent)", "",
                  "Matrix-multiply and convolution GFLOP of one training step, counted by the torch profiler "
                  "(forward, backward and optimizer). Steps marked * computed the inverse terms. On the torch backend "
                  "Keras's per-call symbolic build runs on the meta device and computes nothing: it is left out "
                  "of the count.", "",
                  "| backend | row | Q | GFLOP per step | vs same-backend fwd Q=4096 |", "|---|---|---|---|---|"]
        base = {r["backend"]: r["flops"][0][0] for r in counted if r["row"] == "fwd4096"}
        for r in counted:
            cells = " / ".join(f"{g:.1f}{'*' if on else ''}" for g, on in r["flops"])
            ratios = " / ".join(_fmt(_ratio(g, base.get(r["backend"]))) for g, _ in r["flops"])
            lines.append(f"| {_name(r['backend'])} | {ROWS[r['row']]['label']} | {ROWS[r['row']]['num_queries']} | "
                         f"{cells} | {ratios} |")

    lines += ["", "## Raw step times (s; warm-up first, * = inverse terms computed)", ""]
    for r in results:
        if "error" in r:
            continue
        name = _name(r["backend"])
        steps = [f"{t:.2f}{'*' if f else ''}" for t, f in zip(r["times"], r["flags"])]
        lines.append(f"- {name} {r['row']}: warm-up {' '.join(steps[:r['warmup']])} | timed "
                     f"{' '.join(steps[r['warmup']:])} (process wall {r['wall']:.0f} s)")
    return lines


def _lockstep_section(groups):
    lines = [
        "",
        "## Lockstep groups: step-time ratios under the same load",
        "",
        "The processes of a group take turns, one training step each (the order alternating every step), so they "
        "run through the same stretch of machine load; the ratio is the median over timed steps of "
        "(this job's step / the group's last job's step taken right beside it). Memory is not per row here.",
        "",
        "| job | median step s | vs last job of its group (median of per-step ratios) | per-step ratios |",
        "|---|---|---|---|",
    ]
    for group in groups:
        label = " + ".join(f"{_name(b)} {r}" for b, r in group["jobs"])
        if "error" in group:
            lines.append(f"| {label} | failed: {group['error']} |  |  |")
            continue
        base = group["results"][-1]
        base_t = base["times"][base["warmup"]:]
        for r in group["results"]:
            ratios = [a / b for a, b in zip(r["times"][r["warmup"]:], base_t)]
            lines.append(
                f"| {_name(r['backend'])} {r['row']} | {r['median']:.2f} | "
                f"{'' if r is base else format(statistics.median(ratios), '.2f')} | "
                f"{'' if r is base else ' '.join(f'{x:.2f}' for x in ratios)} |"
            )
    return lines


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
    command = "python benchmarks/bench_b64.py " + " ".join(sys.argv[1:] if argv is None else argv)
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
