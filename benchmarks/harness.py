"""What the benchmark scripts share: child processes, one core and one thread, memory, GPUs, markdown tables.

Child processes report one JSON object on a line of their standard output that starts with `RESULT ` (`emit` writes
it, `run_script` and `run_function` read it back). Importing this module runs nothing; it only adds the repository
root to the end of `sys.path`, so that the scripts find `upt_keras` when the package is not installed.

    import harness

    result = harness.run_function(measure, 1000, env=harness.child_env("torch", one_thread=True), core=0)
    lines = harness.markdown_table(["backend", "seconds"], [["torch", f"{result['seconds']:.2f}"]])
    harness.write_text(harness.results_path("results_example.md"), "\n".join([harness.machine_line(), ""] + lines))
"""

import datetime
import glob
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
RESULT_TAG = "RESULT "
PACKAGES = ("keras", "torch", "tensorflow", "jax", "jaxlib", "numpy")

# One compute thread for every library a benchmark may load (set before the child starts its thread pools).
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}

if ROOT not in sys.path:
    sys.path.append(ROOT)


def results_path(name):
    """`benchmarks/results/<name>`: where the scripts write their reports by default."""
    return os.path.join(RESULTS, name)


# --------------------------------------------------------------------------- child processes
class ChildError(RuntimeError):
    """A child process that failed, timed out or printed no result; the message ends with its last error line."""

    def __init__(self, message, stderr=""):
        super().__init__(message)
        self.stderr = stderr  # all the child wrote to its standard error


def child_env(backend=None, one_thread=False, cpu_only=False, **extra):
    """This process's environment for a child: `KERAS_BACKEND`, quiet TensorFlow, optionally one thread / no GPU."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    if one_thread:
        env.update(ONE_THREAD_ENV)
    if cpu_only:
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def emit(result, tag=RESULT_TAG):
    """In a child: print `result` as the tagged JSON line its parent reads."""
    print(tag + json.dumps(result), flush=True)


def parse_result(stdout, tag=RESULT_TAG):
    """The JSON of the last `tag` line of a child's output, or None."""
    lines = [line for line in stdout.splitlines() if line.startswith(tag)]
    return json.loads(lines[-1][len(tag):]) if lines else None


def error_text(stderr, returncode, lines=1):
    """`exit N: <last lines of stderr>`, for a child that failed."""
    tail = stderr.strip().splitlines()[-lines:] or ["no output"]
    return f"exit {returncode}: {' | '.join(tail)}"


def start_script(script, args, env=None, **popen):
    """Starts `python script args...` (text mode); the caller reads, waits for and reports it."""
    return subprocess.Popen([sys.executable, os.path.abspath(script)] + [str(a) for a in args], env=env, text=True,
                            **popen)


def finish(proc, timeout=None, tag=RESULT_TAG):
    """Waits for a child started with stdout and stderr piped; returns its result or raises ChildError."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ChildError(f"timed out after {timeout:.0f} s") from None
    result = parse_result(out, tag)
    if proc.returncode or result is None:
        raise ChildError(error_text(err or out, proc.returncode), err)
    return result


def run_script(script, args, env=None, timeout=None, tag=RESULT_TAG):
    """Runs `python script args...` to its end and returns the JSON it emitted (ChildError when it failed)."""
    proc = start_script(script, args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return finish(proc, timeout, tag)


def start_function(func, *args, env=None, core=None):
    """Starts `func(*args)` in a fresh Python process (pinned to `core` first, if given); `finish` returns its result.

    `func` must be a module-level function of an importable file (its folder goes first on the child's path) and
    `args` and the return value JSON values. The child imports that module, so it must do nothing on import.
    """
    module = sys.modules[func.__module__]
    call = dict(file=os.path.abspath(module.__file__), name=func.__name__, args=list(args), core=core)
    return start_script(__file__, ["--call", json.dumps(call)], env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_function(func, *args, env=None, timeout=None, core=None):
    """`func(*args)` in a fresh Python process: its JSON result (ChildError when it failed)."""
    return finish(start_function(func, *args, env=env, core=core), timeout)


def _call(spec):
    """The child side of `run_function`."""
    call = json.loads(spec)
    pin_to_core(call["core"])
    folder, name = os.path.split(call["file"])
    sys.path.insert(0, folder)
    module = importlib.import_module(os.path.splitext(name)[0])
    emit(getattr(module, call["name"])(*call["args"]))


# --------------------------------------------------------------------------- one core, one thread
def pin_to_core(core):
    """Runs this process on CPU `core` only; a no-op where the OS cannot pin (returns whether it did)."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, {int(core)})
    return True


def cores():
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def limit_threads(backend):
    """In a child, before building a model: one compute thread for `backend` (JAX reads `ONE_THREAD_ENV`)."""
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


# --------------------------------------------------------------------------- memory
def rss_mib():
    """Resident memory of this process now, MiB (NaN where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def peak_rss_mib():
    """Peak resident memory of this process so far, MiB (libraries included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


class PeakSampler:
    """Samples the resident memory in a thread; `peak` is the largest value seen between start and stop."""

    def __init__(self, interval=0.002):
        self.interval, self.peak, self._stop = interval, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


# --------------------------------------------------------------------------- GPUs
def gpu_present():
    """True when the machine shows an NVIDIA GPU (without importing a framework)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
            return out.returncode == 0 and "GPU" in out.stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def check_gpu_visible(backend):
    """Exits with a message when `backend` (torch, tensorflow or jax) sees no GPU."""
    if backend == "torch":
        import torch

        ok = torch.cuda.is_available()
    elif backend == "tensorflow":
        import tensorflow as tf

        ok = bool(tf.config.list_physical_devices("GPU"))
    else:
        import jax

        ok = any(d.platform == "gpu" for d in jax.devices())
    if not ok:
        raise SystemExit(f"--device gpu: no GPU visible to {backend}")


def gpu_peak_mib(backend):
    """Peak device memory allocated by the backend, MiB."""
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    import jax

    return jax.devices()[0].memory_stats()["peak_bytes_in_use"] / 2**20


# --------------------------------------------------------------------------- reports
def package_version(name):
    for dist in (name, f"{name}-cpu", f"{name}_cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def machine_info(packages=PACKAGES):
    """CPU model, cores, RAM, Python, date and package versions of this machine."""
    cpu = platform.processor() or platform.machine() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0.0
    return dict(cpu=cpu, cores=os.cpu_count(), ram_gib=ram, python=platform.python_version(),
                date=datetime.date.today().isoformat(), versions={n: package_version(n) for n in packages})


def machine_line(info=None):
    """`Machine: <CPU>, <n> cores, <RAM>; Python ..., keras ..., ...; <date>.` (packages that are installed)."""
    info = info or machine_info()
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v != "not installed")
    return (f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']:.0f} GiB RAM; "
            f"Python {info['python']}, {versions}; {info['date']}.")


def command_line(script, argv=None, backend=None, local=("--run-root", "--data-dir", "--out", "--report")):
    """The command a results file records: `[KERAS_BACKEND=<backend> ]python benchmarks/<script> <args>`, the
    arguments being `argv` (default: this process's), without the `local` options (paths of this machine) and their
    values."""
    argv = sys.argv[1:] if argv is None else list(argv)
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in local:
            skip = True
        elif arg.split("=", 1)[0] not in local:
            kept.append(arg)
    prefix = f"KERAS_BACKEND={backend} " if backend else ""
    return " ".join([f"{prefix}python benchmarks/{script}"] + kept)


def markdown_table(header, rows, align=None):
    """Lines of a markdown table; `align` is one of "l", "r" per column (default: plain `---`)."""
    marks = {"l": "---", "r": "---:", None: "---"}
    align = align or [None] * len(header)
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return lines


def write_text(path, text):
    """Writes `text` to `path` (creating its folder), through a temporary file so a reader never sees half of it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_json(path, data, indent=1):
    write_text(path, json.dumps(data, indent=indent))


if __name__ == "__main__" and sys.argv[1:2] == ["--call"]:
    _call(sys.argv[2])
