"""Accuracy against a peer: upt-keras and a stock neuraloperator FNO, side by side at equal wall-clock budget.

For every data set and budget, two worker processes start together, each pinned to its own CPU core with one thread:
one trains upt-keras through the library's own `training.train` (the config as a user would run it, with only `data.*`
and the time budget changed), the other a stock neuraloperator `FNO` on the same split. The budget is training time
for both: the FNO's training loop, and the UPT's training with its validations
(`training.time_budget_covers=training`); reading the data and the test evaluation are outside it on both sides. Both are then evaluated on the
same test trajectories with the same metric (PDEBench nRMSE in physical units): one-step nRMSE on every test pair, and
20-step rollouts from frame 0 of every test trajectory (UPT: latent and physical; FNO: autoregressive), with the wall
time of each rollout.

Data sets (made with the project's solver, `upt_keras.data.generate_burgers_dataset`):
- `b1d`: the built-in default set (GRF initial conditions, nu = 0.01, peaks 0.5-1.5); the defaults were developed on it.
- `sines`: PDEBench-style initial conditions (two sinusoids, 10% folded, 10% windowed, amplitude up to 1), nu = 0.01/pi
  (PDEBench's nu = 0.01 convention), 640 trajectories (512 for training).
- `smooth`: GRF initial conditions of another spectrum (alpha 2, tau 5), nu = 0.02, peaks 0.2-0.8.
- the sets of `benchmarks/make_sets.py` (`ks1d`, `fisher1d`, `burgers2d_64`, `burgers2d_velocity_64`, `ns2d_64`:
  Kuramoto-Sivashinsky, Fisher-KPP, 2D scalar and velocity Burgers, 2D Navier-Stokes), written by
  `upt_keras.data.generate_dataset` with the settings of its table. On the 2D sets the peer is an FNO2d
  (`fno_peer.FNO2D_SIZES`, batch 16) with the same loss, protocol and metric (nRMSE per sample and channel).
The defaults were never tuned on `sines`, `smooth` or the sets of `make_sets.py`.

Beside it: `accuracy_variants.yaml` (the ablation variants, `--variants`), `fno_peer.py` (the FNO worker) and
`accuracy_report.py` (the markdown tables and figures, `--report`).

Usage (needs the benchmark extra: `pip install -e ".[bench]"`):
    KERAS_BACKEND=torch python benchmarks/bench_accuracy.py --datasets b1d sines --budgets 60 300
    KERAS_BACKEND=torch python benchmarks/bench_accuracy.py --variants default no_consistency --budgets 60
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import yaml

import harness
from accuracy_report import read_payloads, write_report
from fno_peer import channel_values, run_fno
from make_sets import SETS as PDE_SETS

DEFAULT_CONFIG = os.path.join(harness.ROOT, "configs", "train_burgers1d.yaml")

DATASETS = {
    "b1d": None,  # the built-in default set
    "sines": dict(dim=1, num_samples=640, resolution=256, solver_resolution=1024, nu=0.01 / np.pi, t_end=0.4,
                  dt_save=0.01, ic="sinusoid", amplitude=1.0, seed=11),
    "smooth": dict(dim=1, num_samples=640, resolution=256, solver_resolution=1024, nu=0.02, t_end=0.4,
                   dt_save=0.01, ic="grf", amplitude=(0.2, 0.8), ic_options={"alpha": 2.0, "tau": 5.0}, seed=12),
}


def load_variants(path=os.path.join(harness.HERE, "accuracy_variants.yaml")):
    """The ablation variants (`--variants`): name -> config overrides on top of --config ("default": none)."""
    with open(path) as f:
        return yaml.safe_load(f)


VARIANTS = load_variants()


def dataset_overrides(name, data_dir):
    """Config overrides that point `data.*` at data set `name` (generated into `data_dir` on first use)."""
    if name in PDE_SETS:
        from upt_keras.data import generate_dataset

        pde, settings = PDE_SETS[name]
        path = os.path.join(data_dir, f"{name}.h5")
        if not os.path.exists(path):
            generate_dataset(path, pde, progress=False, **settings)
        return ["data.source=hdf5", f"data.path={path}", "data.max_train_samples=null"]
    if DATASETS[name] is None:
        return ["data.source=default", "data.max_train_samples=null"]
    from upt_keras.data import generate_burgers_dataset

    path = os.path.join(data_dir, f"bench_{name}.h5")
    if not os.path.exists(path):
        os.makedirs(data_dir, exist_ok=True)
        generate_burgers_dataset(path, progress=False, **DATASETS[name])
    return ["data.source=hdf5", f"data.path={path}", "data.max_train_samples=null"]


def run_upt(args, overrides):
    import keras

    from bench_rollout import time_rollouts  # physical / latent all frames / latent last frame, medians
    from upt_keras import training
    from upt_keras.config import load_config
    from upt_keras.evaluation import rollout_arrays

    # the budget covers training and its validations, as the FNO's covers its training loop: data and the test
    # evaluation are outside both
    cfg = load_config(args.config, list(overrides) + [f"training.time_budget_seconds={args.budget}",
                                                      "training.time_budget_covers=training",
                                                      "output.plots=false", "data.rollout_steps=20"])
    run_dir = os.path.join(args.run_root, "upt")
    if os.path.exists(run_dir):
        import shutil

        shutil.rmtree(run_dir)  # always a fresh run
    start = time.monotonic()
    model, _, metrics = training.train(cfg, run_dir=run_dir, verbose=0, progress=False)
    wall = time.monotonic() - start
    data = training.prepare_data(cfg, splits=("rollout",), progress=False)
    x0, _, _ = rollout_arrays(data.rollout)
    roll = metrics["rollout"]
    per_channel = {"one_step": channel_values(metrics["one_step"]["model"], "nrmse_c"),
                   "latent": channel_values(roll["latent"], "nrmse_mean_c"),
                   "physical": channel_values(roll["physical"], "nrmse_mean_c")}
    return {
        "per_channel": per_channel,
        "one_step": metrics["one_step"]["model"]["nrmse"],
        "identity_one_step": metrics["one_step"]["identity"]["nrmse"],
        "latent": {k: roll["latent"][k] for k in ("nrmse_mean", "nrmse_last", "nrmse_per_step")},
        "physical": {k: roll["physical"][k] for k in ("nrmse_mean", "nrmse_last", "nrmse_per_step")},
        "identity": {k: roll["identity"][k] for k in ("nrmse_mean", "nrmse_last", "nrmse_per_step")},
        "timing": time_rollouts(model, x0, 20, repeats=3),
        "train_seconds": metrics["training"]["train_seconds"],
        "train_steps": metrics["training"]["steps_completed"],
        # the steps of the model evaluated: the best validated checkpoint, fewer when a later one was not better
        "checkpoint_steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "num_params": metrics["training"]["num_params"],
        "wall_seconds": round(wall, 1),
    }


def worker(args):
    harness.pin_to_core(args.core)
    with open(args.overrides_file) as f:
        overrides = json.load(f)
    result = run_upt(args, overrides) if args.worker == "upt" else run_fno(args, overrides)
    harness.write_json(args.out, result)
    return 0


def launch(kind, core, budget, overrides, run_root, config, backend):
    os.makedirs(run_root, exist_ok=True)
    ov_file = os.path.join(run_root, f"{kind}_overrides.json")
    with open(ov_file, "w") as f:
        json.dump(overrides, f)
    out = os.path.join(run_root, f"{kind}.json")
    if os.path.exists(out):
        os.remove(out)
    env = harness.child_env(backend if kind == "upt" else "torch", one_thread=True, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = ["--worker", kind, "--core", core, "--budget", budget, "--overrides-file", ov_file, "--out", out,
           "--run-root", run_root, "--config", config]
    log = open(os.path.join(run_root, f"{kind}.log"), "w")
    return harness.start_script(__file__, cmd, env, stdout=log, stderr=subprocess.STDOUT), out, kind, run_root


def _collect(procs, label):
    results = {}
    for proc, out, kind, run_root in procs:
        rc = proc.wait()
        if rc != 0 or not os.path.exists(out):
            raise RuntimeError(f"{kind} worker for {label} failed (exit {rc}); see "
                               f"{os.path.join(run_root, kind + '.log')}")
        with open(out) as f:
            results[kind] = json.load(f)
    return results


def run_pair(args, dataset, budget, variant):
    """UPT (first core) and FNO (last core), started together."""
    data_over = dataset_overrides(dataset, args.data_dir)
    run_root = os.path.join(args.run_root, f"{dataset}_{variant}_{int(budget)}s")
    cores = harness.cores()
    procs = [launch("upt", cores[0], budget, data_over + VARIANTS[variant], run_root, args.config, args.backend),
             launch("fno", cores[-1], budget, data_over, run_root, args.config, args.backend)]
    return _collect(procs, f"{dataset} / {variant} / {budget:g} s")


def run_variants(args, dataset, budget, variants):
    """UPT variants only, one per core, as many at once as there are cores."""
    data_over = dataset_overrides(dataset, args.data_dir)
    cores, results = harness.cores(), {}
    for i in range(0, len(variants), len(cores)):
        batch = variants[i:i + len(cores)]
        procs = []
        for core, variant in zip(cores, batch):
            run_root = os.path.join(args.run_root, f"{dataset}_{variant}_{int(budget)}s")
            procs.append(launch("upt", core, budget, data_over + VARIANTS[variant], run_root, args.config,
                                args.backend))
        for proc, variant in zip(procs, batch):
            results[variant] = _collect([proc], f"{dataset} / {variant} / {budget:g} s")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS) + sorted(PDE_SETS), default=["b1d", "sines"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[60.0, 300.0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["default"])
    parser.add_argument("--no-fno", action="store_true", help="train the UPT variants only (ablations)")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "torch"))
    parser.add_argument("--data-dir", default=os.path.join("runs", "bench_data"))
    parser.add_argument("--run-root", default=os.path.join("runs", "bench_accuracy"))
    parser.add_argument("--out", default=None, help="results JSON (default: print only)")
    parser.add_argument("--report", default=None, help="write Markdown tables (and figures) from --out to this file")
    parser.add_argument("--report-from", nargs="+", default=None, metavar="JSON",
                        help="with --report: write the tables of these results files (one or more runs) and exit")
    # worker mode (internal)
    parser.add_argument("--worker", choices=["upt", "fno"])
    parser.add_argument("--core", type=int)
    parser.add_argument("--budget", type=float)
    parser.add_argument("--overrides-file")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.report_from:
        if not args.report:
            parser.error("--report-from needs --report")
        write_report(read_payloads(args.report_from), args.report)
        return 0

    all_results = []

    def report(row, seconds):
        u = row["upt"]
        msg = (f"{row['dataset']:7s} {row['variant']:19s} {row['budget']:5.0f}s | UPT steps {u['train_steps']:5d} "
               f"one-step {u['one_step']:.4f} (id {u['identity_one_step']:.4f}) latent {u['latent']['nrmse_mean']:.4f}"
               f" physical {u['physical']['nrmse_mean']:.4f}")
        if "fno" in row:
            f = row["fno"]
            msg += (f" | FNO steps {f['train_steps']:5d} one-step {f['one_step']:.4f} rollout "
                    f"{f['rollout']['nrmse_mean']:.4f}")
        print(msg + f" [{seconds:.0f} s]", flush=True)

    for dataset in args.datasets:
        for budget in args.budgets:
            start = time.monotonic()
            if args.no_fno:
                for variant, res in run_variants(args, dataset, budget, args.variants).items():
                    all_results.append({"dataset": dataset, "budget": budget, "variant": variant, **res})
                    report(all_results[-1], time.monotonic() - start)
                continue
            for variant in args.variants:
                start = time.monotonic()
                res = run_pair(args, dataset, budget, variant)
                all_results.append({"dataset": dataset, "budget": budget, "variant": variant, **res})
                report(all_results[-1], time.monotonic() - start)
    if args.out:
        import keras

        meta = {"date": str(datetime.date.today()), "machine": f"{platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} cores", "keras": keras.__version__, "backend": args.backend,
                "command": harness.command_line("bench_accuracy.py", backend=args.backend),
                "upt_budget_covers": "training"}
        harness.write_json(args.out, {"meta": meta, "results": all_results})
        if args.report:
            write_report([{"meta": meta, "results": all_results}], args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
