"""The markdown report of `bench_b64.py`: the statistics of a row's timed steps (`summarise`), then the main table,
the inverse-frequency-2 table, same-run ratios against `TARGETS`, work per step, raw step times and the lockstep
section.

A result is what a `bench_b64.py` child returns (backend, row, step times and inverse flags, memory, parameters,
FLOPs), or `{backend, row, error}` for a failed row; a lockstep group is `{jobs, results}` or `{jobs, error}`.
"""

import statistics

import harness
from workload_b64 import ROWS

BACKENDS = ("torch", "tensorflow", "jax", "reference")  # in the report's order; "reference" is plain torch
KERAS_BACKENDS = ("torch", "tensorflow", "jax")

TARGETS = {  # the targets of the same-run ratios (a ratio meets its target when at or below it)
    "torch_vs_ref": 1.0,
    "best_vs_ref": 0.7,
    "inv_vs_fwd": 2.0,
    "q2048_vs_q4096": 0.55,
}


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
