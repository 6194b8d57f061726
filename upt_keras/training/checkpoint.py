"""Resumable training state: `RunCheckpoint` saves it every n steps, after every epoch and when SIGINT or SIGTERM
arrives; `read_backup` and `restore_backup` bring it back.

`run_dir/backup/` holds

| file                     | content                                                                          |
|--------------------------|----------------------------------------------------------------------------------|
| `latest.weights.h5`      | the model's and the optimizer's variables (the optimizer's step count included)  |
| `training_metadata.json` | `epoch`, `batch` (batches of it done), `step`, shuffle state, seconds used, best |
| `order.npy`              | the pair order of the epoch in progress                                          |

A resumed run continues with the batches of the interrupted epoch that were not trained on, in the same order, then
with the following epochs; an interruption loses at most `training.checkpoint_every_steps` steps (a signal: none).
The folder is removed when training ends without an interruption.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np

import keras

__all__ = ["WEIGHTS_FILE", "STATE_FILE", "ORDER_FILE", "RunCheckpoint", "TrainingInterrupted", "read_backup",
           "restore_backup", "RemainingBatches"]

WEIGHTS_FILE = "latest.weights.h5"
STATE_FILE = "training_metadata.json"
ORDER_FILE = "order.npy"


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT / SIGTERM after saving a resumable checkpoint (the message says where)."""


def read_backup(backup_dir) -> dict | None:
    """The saved state in `backup_dir` (`epoch`, `batch`, `step`, ...), or None when there is none or it is
    unreadable."""
    path = os.path.join(os.fspath(backup_dir), STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
        state["epoch"] = int(state["epoch"])
        state["batch"] = int(state.get("batch") or 0)
        return state
    except (OSError, ValueError, KeyError, TypeError):
        return None


def restore_backup(model, dataset, backup_dir) -> dict | None:
    """Load the weights and optimizer state saved in `backup_dir` into `model` (built and compiled) and the pair
    order and shuffle state into `dataset` (a `PairDataset`); returns the saved state, or None without one."""
    backup_dir = os.fspath(backup_dir)
    state = read_backup(backup_dir)
    if state is None:
        return None
    weights = os.path.join(backup_dir, WEIGHTS_FILE)
    if os.path.exists(weights):
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
    order = os.path.join(backup_dir, ORDER_FILE)
    if dataset is not None and os.path.exists(order):
        saved = np.load(order)
        if saved.shape == dataset._order.shape:
            dataset._order = saved
        rng_state = state.get("rng_state")
        if rng_state is not None:
            dataset._rng.bit_generator.state = rng_state
    return state


class RemainingBatches(keras.utils.PyDataset):
    """Batches `start..` of `dataset` in a fixed pair order: the rest of an interrupted epoch."""

    def __init__(self, dataset, start: int, order):
        super().__init__()
        self.dataset, self.start = dataset, int(start)
        self.order = np.asarray(order)

    def __len__(self):
        return len(self.dataset) - self.start

    def __getitem__(self, index):
        saved = self.dataset._order
        self.dataset._order = self.order
        try:
            return self.dataset[self.start + index]
        finally:
            self.dataset._order = saved


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the resumable state (see the module docstring) every `every_steps` steps, after every epoch, and on
    SIGINT / SIGTERM; on a signal training stops after the step in progress.

    A second SIGINT while the first is handled stops at once (KeyboardInterrupt). The handlers are installed for the
    duration of `fit` (main thread only) and the previous ones restored afterwards.

    Args:
        backup_dir: the folder.
        state: the run's `RunState` (step, epoch, batch; `interrupted` is set here).
        dataset: the training `PairDataset` (its pair order and shuffle state are saved), or None.
        every_steps: steps between saves, or None (epochs and signals only).
        extra: callable returning more entries for the metadata (e.g. the best value so far).
    """

    def __init__(self, backup_dir, state, dataset=None, every_steps=None, extra=None):
        super().__init__()
        self.backup_dir, self.state, self.dataset = os.fspath(backup_dir), state, dataset
        self.every_steps, self.extra = every_steps, extra
        self.saved_at = None  # (epoch, batch, step) of the last save
        self._handlers = {}
        self._interrupt_saved = False

    # ---------------------------------------------------------------- signals
    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        if self.state.interrupted:  # a second one: stop now
            raise KeyboardInterrupt
        self.state.interrupted = name
        print(f"\nreceived {name}: saving a resumable checkpoint after the current step "
              "(Ctrl-C again to stop at once, without it)", flush=True)

    def on_train_begin(self, logs=None):
        self._interrupt_saved = False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_handlers(self):
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}

    # ---------------------------------------------------------------- saving
    def save(self, epoch, batch):
        """Write the state at batch `batch` of epoch `epoch` (a finished epoch is saved as the next one's batch 0)."""
        if self.state.epoch_steps and batch >= self.state.epoch_steps:
            epoch, batch = epoch + 1, 0
        os.makedirs(self.backup_dir, exist_ok=True)
        weights = os.path.join(self.backup_dir, WEIGHTS_FILE)
        tmp = os.path.join(self.backup_dir, "next.weights.h5")
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, weights)
        meta = {"epoch": int(epoch), "batch": int(batch), "step": int(self.state.step),
                "seconds_used": round(self.state.elapsed(), 3)}
        if self.dataset is not None:
            np.save(os.path.join(self.backup_dir, "next_order.npy"), self.dataset._order)
            os.replace(os.path.join(self.backup_dir, "next_order.npy"), os.path.join(self.backup_dir, ORDER_FILE))
            meta["rng_state"] = self.dataset._rng.bit_generator.state
        if self.extra is not None:
            meta.update(self.extra())
        path = os.path.join(self.backup_dir, STATE_FILE)
        with open(f"{path}.tmp", "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
        os.replace(f"{path}.tmp", path)
        self.saved_at = (int(epoch), int(batch), int(self.state.step))

    def on_train_batch_end(self, batch, logs=None):
        if self.state.interrupted:
            self.save(self.state.epoch, self.state.batch)
            self._interrupt_saved = True
            self.state.stop_reason = self.state.interrupted
            self.model.stop_training = True
        elif self.every_steps and self.state.step % int(self.every_steps) == 0:
            self.save(self.state.epoch, self.state.batch)

    def on_epoch_end(self, epoch, logs=None):
        if self._interrupt_saved:
            return  # the state of the interrupted step is kept
        if self.model.stop_training and self.state.batch < self.state.epoch_steps:
            # cut short (time budget, early stop): a finished run, nothing left to resume in this epoch
            self.save(epoch, self.state.batch)
        else:
            self.save(epoch + 1, 0)
        if self.state.interrupted:
            self._interrupt_saved = True

    def on_train_end(self, logs=None):
        self._restore_handlers()

    def remove(self):
        """Delete the backup folder (the run finished)."""
        import shutil

        if os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)
