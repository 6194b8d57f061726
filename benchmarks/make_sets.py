"""Write the accuracy benchmark's data sets beyond 1D Burgers with the project's solvers (`generate_dataset`).

Every set's equation, size and solver settings are in `SETS` below; nothing else decides them. Each file is written
atomically into `--out-dir` (default `runs/bench_sets`, ignored by git) as `<name>.h5`; an existing file is kept unless
`--overwrite`. The script prints one Markdown row per set: shape, generation time and file size.

Usage:
    python benchmarks/make_sets.py                          # all sets
    python benchmarks/make_sets.py --sets ks1d ns2d_64 --overwrite
    python benchmarks/make_sets.py --check 4     # time-step error: 4 trajectories per set again at a quarter step
"""

import argparse
import os
import tempfile
import time

import numpy as np

import harness  # noqa: F401 (finds upt_keras when the package is not installed)
from upt_keras.data import PDE_DEFAULTS, generate_dataset, open_trajectories, stable_time_step

# name: (pde, settings for generate_dataset). 100 trajectories each; the PDEBench split takes the first 10 as test.
SETS = {
    # Kuramoto-Sivashinsky on [0, 64) (chaotic), 256 points, 41 frames every 0.5 after a burn-in of 100 time units.
    "ks1d": ("ks", dict(num_samples=100, seed=21, resolution=256, length=64.0, t_end=20.0, dt_save=0.5, t_burn=100.0,
                        dt=0.05)),
    # Fisher-KPP u_t = 0.005 u_xx + 2 u (1 - u) on [0, 1), 256 points, 21 frames every 0.05, initial values in
    # [0, a] with a drawn from [0.3, 1] per trajectory.
    "fisher1d": ("fisher", dict(num_samples=100, seed=22, resolution=256, nu=0.005, rate=2.0, t_end=1.0, dt_save=0.05,
                                dt=0.01, amplitude=(0.3, 1.0))),
    # 2D scalar Burgers, nu = 0.005, 64x64 (solved on 128x128), 21 frames every 0.02, GRF peaks 1.
    "burgers2d_64": ("burgers", dict(num_samples=100, seed=23, dim=2, resolution=64, solver_resolution=128, nu=0.005,
                                     t_end=0.4, dt_save=0.02, amplitude=1.0)),
    # 2D velocity Burgers (u, v), nu = 0.005, 64x64 (solved on 128x128), 21 frames every 0.02, GRF peak speed 1.
    "burgers2d_velocity_64": ("burgers", dict(num_samples=100, seed=24, dim=2, equation="vector", resolution=64,
                                              solver_resolution=128, nu=0.005, t_end=0.4, dt_save=0.02,
                                              amplitude=1.0)),
    # 2D Navier-Stokes vorticity, the FNO paper's setting (nu = 1e-3, its forcing and initial prior), 64x64,
    # 21 frames every 1 time unit from t = 0.
    "ns2d_64": ("navier-stokes", dict(num_samples=100, seed=25, resolution=64, nu=1e-3, forcing=0.1, t_end=20.0,
                                      dt_save=1.0, dt=0.025)),
}


def internal_step(pde, settings):
    """The largest internal step the set is solved with (Burgers: the generator's choice from the peak bound)."""
    if "dt" in settings:
        return settings["dt"]
    cfg = {**PDE_DEFAULTS[pde], **settings}
    resolution = cfg.get("solver_resolution") or cfg["resolution"]
    return stable_time_step(np.max(cfg["amplitude"]), cfg["nu"], resolution, cfg["length"], dim=cfg["dim"])


def check_step(name, num_samples):
    """Relative L2 difference (over all frames, and the largest per frame) between the first trajectories of a set
    solved at its internal step and at a quarter of it: the set's time-stepping error. A chaotic set (KS) is checked
    without its burn-in: over 100 time units of chaos any two step sizes end on unrelated trajectories."""
    pde, settings = SETS[name]
    settings = dict(settings, num_samples=num_samples)
    if "t_burn" in settings:
        settings["t_burn"] = 0.0
    dt = internal_step(pde, settings)
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for step in (dt, dt / 4):
            path = generate_dataset(os.path.join(tmp, f"{step}.h5"), pde, progress=False, **dict(settings, dt=step))
            with open_trajectories(path) as store:
                runs.append(store.read(list(range(num_samples))).astype(np.float64))
    coarse, fine = runs
    frame = np.sqrt(((coarse - fine) ** 2).sum(axis=(0,) + tuple(range(2, fine.ndim))) /
                    (fine**2).sum(axis=(0,) + tuple(range(2, fine.ndim))))
    total = np.linalg.norm(coarse - fine) / np.linalg.norm(fine)
    print(f"| {name} | {dt:.4g} | {total:.1e} | {frame.max():.1e} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=list(SETS))
    parser.add_argument("--out-dir", default=os.path.join("runs", "bench_sets"))
    parser.add_argument("--overwrite", action="store_true", help="regenerate files that exist")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="instead of writing the sets, solve N trajectories of each at its step and a quarter of "
                        "it and print the relative difference")
    args = parser.parse_args()
    if args.check:
        print("| set | internal step | rel. L2 difference, all frames | largest per frame |")
        print("|---|---|---|---|")
        for name in args.sets:
            check_step(name, args.check)
        return
    print("| set | equation | trajectories x frames x grid x channels | seconds | MB |")
    print("|---|---|---|---|---|")
    for name in args.sets:
        pde, settings = SETS[name]
        path = os.path.join(args.out_dir, f"{name}.h5")
        seconds = float("nan")
        if args.overwrite or not os.path.exists(path):
            start = time.perf_counter()
            generate_dataset(path, pde, progress=not args.quiet, **settings)
            seconds = time.perf_counter() - start
        with open_trajectories(path) as store:
            shape = (store.num_samples, store.num_frames) + tuple(store.grid_shape) + (store.num_channels,)
        size = os.path.getsize(path) / 2**20
        print(f"| {name} | {pde} | {' x '.join(map(str, shape))} | {seconds:.1f} | {size:.1f} |", flush=True)


if __name__ == "__main__":
    main()
