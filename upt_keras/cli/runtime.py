"""The deep-learning framework of an `upt-keras` process: which backend, only that framework, and no log lines of its.

`choose_backend` picks the Keras backend before Keras is imported; `import_keras` imports Keras on it with every
other framework kept out of the process (Keras itself would import JAX, and TensorFlow when it saves a model, whenever
they are installed) and without the C++ log lines TensorFlow writes to standard error while it starts.

This module imports no deep-learning framework.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import tempfile

#: The backends upt-keras runs on; with KERAS_BACKEND unset the first one installed is used.
BACKENDS = ("torch", "tensorflow", "jax")

#: TensorFlow's start-up lines on standard error (absl's C++ log format, before its logging is initialised).
_TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] .*cuInit"  # no CUDA driver: the machine has no GPU
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)


class BackendError(Exception):
    """KERAS_BACKEND names no usable backend."""


def _keras_json_backend() -> str | None:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as fh:
            value = json.load(fh).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def choose_backend() -> tuple[str, str]:
    """`(backend, why)`: KERAS_BACKEND when set; else a backend other than Keras's default (tensorflow) that
    `keras.json` names; else the first of `BACKENDS` that is installed. Sets KERAS_BACKEND to it (child processes and
    Keras see the same). Imports nothing.

    Raises:
        BackendError: KERAS_BACKEND is not one of `BACKENDS` or is not installed, or no backend is installed.
    """
    name = os.environ.get("KERAS_BACKEND", "").strip()
    if name:
        why = "KERAS_BACKEND"
    else:
        name = _keras_json_backend() or ""
        why = "keras.json"
        if name in ("", "tensorflow"):  # Keras writes tensorflow there by itself
            name = next((b for b in BACKENDS if _installed(b)), "")
            why = "default"
    if not name:
        raise BackendError(f"no Keras backend is installed; install one of {', '.join(BACKENDS)} "
                           "(e.g. pip install torch)")
    if name not in BACKENDS:
        raise BackendError(f"KERAS_BACKEND={name!r} is not supported; set it to one of {', '.join(BACKENDS)}")
    if not _installed(name):
        raise BackendError(f"KERAS_BACKEND={name} but {name} is not installed (pip install {name}), or set "
                           f"KERAS_BACKEND to an installed one of {', '.join(BACKENDS)}")
    os.environ["KERAS_BACKEND"] = name
    return name, why


class _NotHere(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes the frameworks in `names` unimportable in this process, as if they were not installed."""

    def __init__(self, names, backend):
        self.names, self.backend = frozenset(names), backend

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)  # origin None: no file behind it

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (upt-keras keeps frameworks other than its "
                                  f"backend, {self.backend}, out of the process)", name=spec.name)

    def exec_module(self, module):  # never reached: create_module raises
        raise ModuleNotFoundError(module.__name__)


def keep_out_other_frameworks(backend: str, keep=()) -> tuple[str, ...]:
    """Make the frameworks of `BACKENDS` other than `backend` (and those in `keep`) unimportable here; returns them.

    Keras imports JAX when it is installed and TensorFlow when it saves a model; neither is needed on another
    backend, and each costs seconds and writes log lines. Frameworks already imported are left alone.
    """
    names = tuple(b for b in BACKENDS if b != backend and b not in keep and b not in sys.modules)
    if names and not any(isinstance(f, _NotHere) for f in sys.meta_path):
        sys.meta_path.insert(0, _NotHere(names, backend))
    return names


def is_noise(line: str) -> bool:
    """Whether `line` is one of TensorFlow's start-up log lines (dropped while it is imported)."""
    return bool(_TF_NOISE.match(line))


@contextlib.contextmanager
def stderr_filtered(drop=is_noise):
    """Within the block, lines written to file descriptor 2 (C++ libraries included) are held back; after it, those
    for which `drop` is false are written to standard error. If the block raises, every line is written."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no file descriptor 2 to take over
        yield
        return
    failed = True
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if failed or not drop(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def import_keras(keep=()):
    """Import Keras on the backend that `choose_backend` set, keeping other frameworks out (except those in `keep`)
    and TensorFlow's start-up lines off standard error. Returns `(keras, device)`, device "CPU" or "GPU".

    In a process that has imported Keras already (a program or a test that calls `upt_keras.cli.main`), Keras is taken
    as it is, and nothing is kept out of that process.
    """
    backend = os.environ["KERAS_BACKEND"]
    if "keras" in sys.modules:
        import keras

        return keras, _device(keras.backend.backend())
    keep_out_other_frameworks(backend, keep)
    quiet = backend == "tensorflow" and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # TensorFlow's later info and warning lines; errors still show
    with stderr_filtered() if quiet else contextlib.nullcontext():
        import keras

        device = _device(backend)  # TensorFlow looks for a CUDA driver here, and logs when there is none
    return keras, device


def _device(backend: str) -> str:
    if backend == "torch":
        import torch

        return "GPU" if torch.cuda.is_available() else "CPU"
    if backend == "tensorflow":
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    import jax

    return "CPU" if jax.default_backend() == "cpu" else jax.default_backend().upper()
