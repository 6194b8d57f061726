"""Run directories of `upt-keras train`: one process at a time (a lock), a finished run kept unless `--overwrite`, and
nothing left behind by a command that failed before training started.

This module imports no deep-learning framework (its file names match `upt_keras.training` and
`upt_keras.evaluation`, where the files are written).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil

#: The lock file of a run directory in use (it holds the process id of its holder).
LOCK_FILE = ".upt-keras.lock"
#: What a training run writes, and what `evaluate` and `rollout` write beside it (removed by `--overwrite`).
RUN_FILES = ("config.yaml", "normalization.json", "model.keras", "history.csv", "metrics.json")
RUN_FOLDERS = ("backup", "logs", "evaluation")
_FIGURE = re.compile(r"^(loss_curves|rollout_nrmse|rollout_spacetime_\w+|rollout_frames_\w+)\.png$")
_ROLLOUT_FOLDER = re.compile(r"^rollout_(latent|physical|both)_\d+steps$")
#: What a run writes before its first epoch ends: a folder holding nothing else never started training.
_STARTUP_FILES = {"config.yaml", "normalization.json", LOCK_FILE}


class RunDirError(Exception):
    """A run directory that cannot be used as asked (exit status 2)."""


# ------------------------------------------------------------------------------------------------------------- lock


def _try_lock(fh) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _same_file(fh, path) -> bool:
    try:
        return os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
    except OSError:
        return False


@contextlib.contextmanager
def locked(run_dir):
    """Holds the lock of `run_dir` (which must exist) for the block, and removes the lock file after it.

    The lock is the operating system's (`flock`): it ends with the process that holds it, however that ends, so a
    lock file left behind by a killed process blocks nobody.

    Raises:
        RunDirError: another process holds it (the message names that process's id).
    """
    path = os.path.join(os.fspath(run_dir), LOCK_FILE)
    while True:
        fh = open(path, "a+", encoding="utf-8")
        if not _try_lock(fh):
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise RunDirError(f"{run_dir} is in use by another training (process {holder}); wait until it ends, "
                              "or choose another --run-dir")
        if _same_file(fh, path):  # not removed by a holder that ended meanwhile
            break
        fh.close()
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        fh.close()


# -------------------------------------------------------------------------------------------------------- contents


def finished_files(run_dir) -> list[str]:
    """The files in `run_dir` of a run that is not resumable and no longer starting: the model or the metrics.

    (A run interrupted during training is resumable: it has a `backup/` folder, and `upt_keras.training` resumes it.)
    """
    run_dir = os.fspath(run_dir)
    if os.path.isdir(os.path.join(run_dir, "backup")):
        return []
    return [name for name in ("model.keras", "metrics.json") if os.path.exists(os.path.join(run_dir, name))]


def clear(run_dir) -> None:
    """Remove what upt-keras wrote into `run_dir` (`RUN_FILES`, `RUN_FOLDERS`, the figures and rollout folders);
    other files stay."""
    run_dir = os.fspath(run_dir)
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if name in RUN_FOLDERS or _ROLLOUT_FOLDER.match(name):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
        elif name in RUN_FILES or _FIGURE.match(name):
            if os.path.isfile(path) or os.path.islink(path):
                os.remove(path)


def holds_training_results(folder) -> bool:
    """Whether `folder` holds the results of a training run (a `metrics.json` with a `training` entry)."""
    try:
        with open(os.path.join(os.fspath(folder), "metrics.json"), encoding="utf-8") as fh:
            metrics = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and "training" in metrics


def missing_ancestor(folder) -> str | None:
    """The outermost folder of `folder`'s path that does not exist yet (`folder` itself, or one above it), or None."""
    folder = os.path.abspath(os.fspath(folder))
    missing = None
    while not os.path.exists(folder):
        missing = folder
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def make_folder(folder, what: str) -> str | None:
    """Create `folder` (and its parents); returns the outermost folder created (see `remove_unused`), or None.

    Raises:
        RunDirError: it cannot be created (the message names it and why).
    """
    created = missing_ancestor(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create the {what} {folder}: {err.strerror or err}") from None
    return created


def remove_unused(folder, created) -> None:
    """Undo `make_folder` after a command that failed before it wrote results: remove `folder` if it holds only the
    files a run writes while it starts, and the empty folders above it up to `created`."""
    if created is None:
        return
    folder = os.path.abspath(os.fspath(folder))
    try:
        names = set(os.listdir(folder))
    except OSError:
        return
    if not names <= _STARTUP_FILES:
        return
    for name in names:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, name))
    created = os.path.abspath(created)
    while True:
        try:
            os.rmdir(folder)
        except OSError:
            return
        if folder == created:
            return
        folder = os.path.dirname(folder)
