"""Where the torch backend's B64 step spends its time, beside its plain-torch twin: a torch-profiler table.

One fresh process per side (the Keras torch backend, `bench_b64.py`'s model, and the plain-torch twin of
`torch_reference.py`), run one after the other, never together. Each side takes `--warmup` steps, then
profiles `--steps` steps (CPU activities) and reports, per operator, the self CPU time per step; the parent
writes a markdown table of both sides, largest difference first, plus the total per step and the number of
operator calls per step (launch overhead grows with it).

    python benchmarks/profile_b64_torch.py --rows fwd4096 inv4096 --out benchmarks/results/results_b64_profile.md

The profiler adds overhead to every operator call, so the totals are above the step times of `bench_b64.py`;
the table is for finding where the time goes, not for the ratio itself (`bench_b64.py --lockstep` measures that).
"""

import argparse
import sys

import harness

SIDES = ("torch", "reference")


def child(side, row, warmup, steps):
    """{operator: (self CPU ms per step, calls per step)} of `steps` B64 steps of `side`."""
    from torch.profiler import ProfilerActivity, profile

    from workload_b64 import setup

    step, _ = setup(side, row)
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops = {}
    for event in prof.key_averages():
        ops[event.key] = (event.self_cpu_time_total / 1e3 / steps, event.count / steps)  # ms, calls per step
    return ops


def run_side(side, row, warmup, steps):
    env = harness.child_env("torch", CUDA_VISIBLE_DEVICES="")
    try:
        return harness.run_function(child, side, row, warmup, steps, env=env)
    except harness.ChildError as err:
        raise RuntimeError(f"{side} {row}: {err}") from None


def table(row, keras_ops, plain_ops, top):
    names = set(keras_ops) | set(plain_ops)
    rows = []
    for name in names:
        k_ms, k_n = keras_ops.get(name, (0.0, 0.0))
        p_ms, p_n = plain_ops.get(name, (0.0, 0.0))
        rows.append((k_ms - p_ms, name, k_ms, p_ms, k_n, p_n))
    rows.sort(key=lambda r: -abs(r[0]))
    k_total = sum(v[0] for v in keras_ops.values())
    p_total = sum(v[0] for v in plain_ops.values())
    k_calls = sum(v[1] for v in keras_ops.values())
    p_calls = sum(v[1] for v in plain_ops.values())
    lines = [f"### {row}", "",
             f"Self CPU time per step, all operators: torch backend {k_total:.0f} ms ({k_calls:.0f} operator calls), "
             f"plain torch {p_total:.0f} ms ({p_calls:.0f} calls); ratio {k_total / p_total:.2f}.", ""]
    return lines + harness.markdown_table(
        ["operator", "torch backend ms", "plain torch ms", "difference ms", "calls (backend / plain)"],
        [[f"`{name}`", f"{k_ms:.1f}", f"{p_ms:.1f}", f"{diff:+.1f}", f"{k_n:.0f} / {p_n:.0f}"]
         for diff, name, k_ms, p_ms, k_n, p_n in rows[:top]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=["fwd4096", "inv4096"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--top", type=int, default=20, help="operators listed per row")
    parser.add_argument("--out", default=None, help="markdown report (default: print only)")
    args = parser.parse_args(argv)
    import torch

    info = harness.machine_info(("keras", "torch"))
    lines = ["# B64 on the torch backend against plain torch: where a training step's time goes", "",
             f"Generated {info['date']} by `python benchmarks/profile_b64_torch.py --rows "
             f"{' '.join(args.rows)} --warmup {args.warmup} --steps {args.steps}`.",
             f"{harness.machine_line(info)} The cores may be shared; torch "
             f"{torch.get_num_threads()} threads. torch profiler, CPU activities, self time per operator averaged "
             f"over {args.steps} steps after {args.warmup} warm-up steps; each side in its own process, one after "
             "the other. Operators sorted by the absolute difference.", ""]
    for row in args.rows:
        profiles = {side: run_side(side, row, args.warmup, args.steps) for side in SIDES}
        lines += table(row, profiles["torch"], profiles["reference"], args.top) + [""]
    text = "\n".join(lines)
    if args.out:
        harness.write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
