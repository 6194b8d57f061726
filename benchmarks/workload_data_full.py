"""Full-size PDEBench files: what `bench_data.py --full-size DIR` measures.

Synthetic files of the sizes PDEBench ships, one per layout the project reads, each contiguous (as PDEBench writes
them) and chunked (one sample per chunk):

- `tensor`: 1D Burgers, one `tensor` (10000, 201, 1024) float32 (8.2 GB), trained at `reduced_resolution=4`,
  `reduced_resolution_t=5` (256 points, 41 frames) with `configs/train_burgers1d.yaml`;
- `groups`: 2D, 1000 per-sample groups `NNNN/data` (21, 128, 128, 2) (2.8 GB), trained at `reduced_resolution=2`
  (64x64) with `configs/train_burgers2d.yaml`;
- `cfd`: 2D CFD, arrays `Vx`, `Vy`, `density`, `pressure` (1000, 21, 128, 128) each (5.5 GB), the same config.

Each run is a fresh process, timed from its start: importing Keras, `prepare_data` (every split, the training split
read into memory or, with `data.in_memory=false`, read from the file per batch), building the model, and the first
training step. Then the training step's consumption (batch size / median step time over 5 steps, without fetching)
against what the pipeline serves (batches fetched in shuffled order for 10 s, without training), and the process's
peak RSS. "cold": the file's pages are dropped from the page cache first (`posix_fadvise(DONTNEED)`; `fincore` reports
what was still resident); "warm": run again at once.
"""

import os
import subprocess
import time

import numpy as np

import harness
from upt_keras.data import layouts

GB = 1e9
MIB = 2**20

FILES = {
    "tensor": dict(layout="tensor", shape=(10000, 201, 1024), chunked=False),
    "tensor_chunked": dict(layout="tensor", shape=(10000, 201, 1024), chunked=True),
    "groups": dict(layout="groups", shape=(1000, 21, 128, 128, 2), chunked=False),
    "groups_chunked": dict(layout="groups", shape=(1000, 21, 128, 128, 2), chunked=True),
    "cfd": dict(layout="cfd", shape=(1000, 21, 128, 128), chunked=False),
    "cfd_chunked": dict(layout="cfd", shape=(1000, 21, 128, 128), chunked=True),
}
CFD_KEYS = tuple(k for k in layouts.CFD_KEYS if k != "Vz")  # the 2D CFD arrays, in the reader's channel order
RUN = {
    "tensor": ("configs/train_burgers1d.yaml", ["data.reduced_resolution=4", "data.reduced_resolution_t=5"]),
    "groups": ("configs/train_burgers2d.yaml", ["data.reduced_resolution=2"]),
    "cfd": ("configs/train_burgers2d.yaml", ["data.reduced_resolution=2"]),
}


def file_bytes(name):
    spec = FILES[name]
    return int(np.prod(spec["shape"])) * 4 * (len(CFD_KEYS) if spec["layout"] == "cfd" else 1)


def _block(rng, shape, offset):
    """Smooth-ish finite float32 values: a fixed random pattern shifted per block (fast to make, not constant)."""
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1) + np.float32(offset)).astype(np.float32)


def make_file(name, folder):
    """Writes `folder/<name>.h5` (kept when it exists with the right size); returns its path."""
    import h5py

    spec = FILES[name]
    path = os.path.join(folder, f"{name}.h5")
    if os.path.exists(path) and os.path.getsize(path) >= file_bytes(name):
        return path
    os.makedirs(folder, exist_ok=True)
    part = path + ".part"
    rng = np.random.default_rng(0)
    shape, layout = spec["shape"], spec["layout"]
    start = time.perf_counter()
    try:
        with h5py.File(part, "w") as f:
            if layout == "groups":
                t, x, y, c = shape[1:]
                pattern = _block(rng, (t, x, y, c), 0.0)
                for i in range(shape[0]):
                    chunks = (1, x, y, c) if spec["chunked"] else None
                    f.create_dataset(f"{i:04d}/data", data=pattern + np.float32(i * 1e-3), chunks=chunks)
                    f[f"{i:04d}/grid/x"] = (np.arange(x) + 0.5) / x
                    f[f"{i:04d}/grid/y"] = (np.arange(y) + 0.5) / y
                    f[f"{i:04d}/grid/t"] = np.arange(t) * 0.05
            else:
                keys = ("tensor",) if layout == "tensor" else CFD_KEYS
                chunks = (1,) + shape[1:] if spec["chunked"] else None
                per = min(shape[0], max(1, (256 * MIB) // (int(np.prod(shape[1:])) * 4)))
                pattern = _block(rng, (per,) + shape[1:], 0.0)
                for key in keys:
                    ds = f.create_dataset(key, shape=shape, dtype="f4", chunks=chunks)
                    for lo in range(0, shape[0], per):
                        hi = min(lo + per, shape[0])
                        ds[lo:hi] = pattern[: hi - lo] + np.float32(lo * 1e-4)
                for axis, n in zip("xy", shape[2:]):
                    f[f"{axis}-coordinate"] = (np.arange(n) + 0.5) / n
                f["t-coordinate"] = np.arange(shape[1] + 1) * 0.01
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)
    seconds = time.perf_counter() - start
    print(f"wrote {path}: {os.path.getsize(path) / GB:.2f} GB in {seconds:.0f} s", flush=True)
    return path


def drop_cache(path):
    """Drops the file's pages from the page cache; returns the bytes still resident afterwards (fincore)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return resident_bytes(path)


def resident_bytes(path):
    """Bytes of `path` in the page cache (util-linux `fincore`), or None where it is missing."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                             capture_output=True, text=True, check=True).stdout.split()
        return int(out[0])
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return None


def measure(config, overrides, steps=5, pipeline_seconds=10.0):
    """In a fresh process: the timeline to the first training step, memory, and pipeline rate against step rate."""
    start = time.perf_counter()
    import keras  # noqa: F401  (the framework's import is part of a user's wait)

    from upt_keras.config import load_config
    from upt_keras.training.data import prepare_data
    from upt_keras.training.setup import build_model

    imported = time.perf_counter() - start
    rss_before = harness.rss_mib()
    cfg = load_config(config, overrides)
    with harness.PeakSampler() as sampler:
        data = prepare_data(cfg, progress=False)
    prepared = time.perf_counter() - start
    model = build_model(cfg, data)
    x, y = data.train[0]
    model.train_on_batch(x, y)
    first_step = time.perf_counter() - start
    times = []
    for i in range(1, steps + 1):
        x, y = data.train[i % len(data.train)]
        tick = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - tick)
    step = float(np.median(times))
    batch = int(cfg.training.batch_size)
    order = np.random.default_rng(0).permutation(len(data.train))
    served, tick = 0, time.perf_counter()
    while time.perf_counter() - tick < pipeline_seconds and served < order.size:
        data.train[int(order[served])]
        served += 1
    pipeline = served * batch / (time.perf_counter() - tick)
    return dict(import_s=imported, prepare_s=prepared - imported, first_step_s=first_step,
                rss_before_mib=rss_before, prepare_peak_mib=sampler.peak, peak_mib=harness.peak_rss_mib(),
                kept_mib=data.info["memory_bytes"] / MIB, train_samples=data.info["split_sizes"]["train"],
                step_s=step, consumed_per_s=batch / step, served_per_s=pipeline, batch_size=batch)


def run(folder, names, in_memory_false=True):
    """Every file in `names`, cold then warm (and warm with `data.in_memory=false`); returns the rows."""
    rows = []
    for name in names:
        path = make_file(name, folder)
        config, overrides = RUN[FILES[name]["layout"]]
        overrides = overrides + ["data.source=hdf5", f"data.path={path}", "data.max_train_samples=null"]
        cases = [("cold", True), ("warm", True)] + ([("warm", False)] if in_memory_false else [])
        for cache, in_memory in cases:
            resident = drop_cache(path) if cache == "cold" else resident_bytes(path)
            env = harness.child_env("torch")
            result = harness.run_function(measure, config, overrides + [f"data.in_memory={str(in_memory).lower()}"],
                                          env=env, timeout=1800)
            result.update(file=name, cache=cache, in_memory=in_memory, file_gb=os.path.getsize(path) / GB,
                          resident_gb=None if resident is None else resident / GB, layout=FILES[name]["layout"],
                          chunked=FILES[name]["chunked"], shape=list(FILES[name]["shape"]))
            print(f"{name:15s} {cache} in_memory={in_memory}: prepare {result['prepare_s']:.1f} s, first step at "
                  f"{result['first_step_s']:.1f} s, peak {result['peak_mib']:.0f} MiB, served "
                  f"{result['served_per_s']:.0f}/s vs consumed {result['consumed_per_s']:.0f}/s", flush=True)
            rows.append(result)
    return rows


def report(rows, command):
    """Markdown lines for `rows`."""
    header = ["file", "layout, shape", "chunks", "cache (resident before)", "in memory", "import s", "prepare s",
              "first step at s", "RSS before data MiB", "RSS growth preparing MiB", "kept MiB", "peak RSS MiB",
              "served / consumed samples/s", "ratio"]
    table = []
    for r in rows:
        shape = "x".join(str(n) for n in r["shape"])
        resident = "" if r["resident_gb"] is None else f" ({r['resident_gb']:.1f} GB)"
        table.append([
            r["file"], f"{r['layout']} {shape}, {r['file_gb']:.1f} GB", "1 sample" if r["chunked"] else "contiguous",
            r["cache"] + resident, "yes" if r["in_memory"] else "no", f"{r['import_s']:.1f}", f"{r['prepare_s']:.1f}",
            f"{r['first_step_s']:.1f}", f"{r['rss_before_mib']:.0f}",
            f"{r['prepare_peak_mib'] - r['rss_before_mib']:.0f}", f"{r['kept_mib']:.0f}", f"{r['peak_mib']:.0f}",
            f"{r['served_per_s']:.0f} / {r['consumed_per_s']:.0f}", f"{r['served_per_s'] / r['consumed_per_s']:.0f}x",
        ])
    lines = [
        "# Full-size files",
        "",
        f"- {harness.machine_line(harness.machine_info(('keras', 'torch', 'numpy', 'h5py')))}",
        f"- Command: `{command}` (torch backend, the machine's threads)",
        f"- 1-minute load average when finished: {os.getloadavg()[0]:.2f}",
        "",
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
    ]
    return lines + harness.markdown_table(header, table, align="lllllrrrrrrrrr")
