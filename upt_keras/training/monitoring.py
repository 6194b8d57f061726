"""What a run shows and records while it trains: validation on a schedule (`Validation`), a history row every n steps
(`StepLog`, `history_steps.csv`), the progress of each epoch (`TrainingProgress`) and the state they share
(`RunState`: the global step, the position in the epoch, why training stopped).

Validation is a callback rather than Keras's `validation_data`, so the pipeline chooses what it computes: by default
(`training.validation_terms: forward`) only what is watched, the one-step forward loss on the full grid
(`val_forward_loss`, MSE in normalised units) and the one-step nRMSE in physical units beside the identity's
(`val_nrmse`, `val_identity_nrmse`); with `all` also the objective's other terms (`model.evaluate`).
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

import keras

__all__ = ["RunState", "StepCounter", "Validation", "EarlyStoppingOnValidation", "StepLog", "TrainingProgress",
           "VALIDATION_KEYS", "STEP_HISTORY_FILE"]

#: What `Validation` adds to the logs (NaN in an epoch without validation, so every history row has the columns).
VALIDATION_KEYS = ("val_forward_loss", "val_nrmse", "val_identity_nrmse")
STEP_HISTORY_FILE = "history_steps.csv"


@dataclass
class RunState:
    """State shared by a run's callbacks.

    Attributes:
        step: optimizer steps done (global, over resumed runs too).
        epoch: the epoch in progress (0-based).
        batch: batches of the epoch in progress done (counting those done before a resume).
        epoch_steps: batches per full epoch.
        batch_offset, offset_epoch: a resumed run's first epoch starts at batch `batch_offset` of epoch
            `offset_epoch`.
        stop_reason: why training stopped before its last epoch ("the time budget", "SIGINT", ...), or None.
        interrupted: the signal name once SIGINT / SIGTERM arrived, else None.
        start: `time.monotonic()` at the start of the run (the time budget's origin).
        seconds_used_before: wall seconds of the interrupted runs this one resumes.
        total_epochs: the epochs of the whole run (a resumed run may `fit` more than once), or None.
    """

    step: int = 0
    epoch: int = 0
    batch: int = 0
    epoch_steps: int = 0
    batch_offset: int = 0
    offset_epoch: int = -1
    stop_reason: str | None = None
    interrupted: str | None = None
    start: float = field(default_factory=time.monotonic)
    seconds_used_before: float = 0.0
    total_epochs: int | None = None

    def epochs(self, params) -> int:
        """The run's number of epochs (`total_epochs`, else that of the `fit` in progress)."""
        return int(self.total_epochs or params.get("epochs") or 0)

    def elapsed(self) -> float:
        """Wall seconds of the run so far, those of the runs it resumes included."""
        return self.seconds_used_before + time.monotonic() - self.start


class StepCounter(keras.callbacks.Callback):
    """Keeps `RunState.step`, `.epoch` and `.batch` current; put it first in the callback list."""

    def __init__(self, state: RunState, epoch_steps: int):
        super().__init__()
        self.state = state
        self.state.epoch_steps = int(epoch_steps)

    def on_train_begin(self, logs=None):
        self.state.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch = epoch
        self.state.batch = self.state.batch_offset if epoch == self.state.offset_epoch else 0

    def on_train_batch_end(self, batch, logs=None):
        self.state.step += 1
        self.state.batch += 1


def _as_float(value) -> float:
    try:
        return float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return math.nan


class Validation(keras.callbacks.Callback):
    """Validates on `dataset` after every `every_epochs`-th epoch (and after the last one, or the one a stop cut
    short), and every `every_steps` training steps when set; keeps the best model on `val_forward_loss`.

    Adds `val_forward_loss`, `val_nrmse`, `val_identity_nrmse` to the epoch logs (NaN when the epoch was not
    validated) and, with `terms="all"`, the objective's other validation terms as `val_<name>`.

    Args:
        dataset: batches (x, y) of one-step pairs (K-step targets: the first frame is compared).
        field_std: per-channel scale of the forward loss (the training split's).
        every_epochs, every_steps: the schedule.
        terms: `"forward"` or `"all"`.
        best_path: where the best model is saved (`model.save`), or None.
        best: the best `val_forward_loss` so far (a resumed run's).
        state: the run's `RunState`.
        progress: show the validation's progress (a bar on a terminal, one line in a log).

    Attributes:
        best: the best `val_forward_loss` seen.
        last_seconds: wall seconds of the last validation (None before the first).
        seconds: wall seconds of all validations.
        pending: `{step: results}` not yet written by a `StepLog`.
    """

    def __init__(self, dataset, field_std, every_epochs=1, every_steps=None, terms="forward", best_path=None,
                 best=None, state: RunState | None = None, progress=True):
        super().__init__()
        if terms not in ("forward", "all"):
            raise ValueError(f"terms must be 'forward' or 'all', got {terms!r}")
        self.dataset, self.terms = dataset, terms
        self.std = np.asarray(field_std if field_std is not None else [1.0], np.float32)
        self.every_epochs, self.every_steps = int(every_epochs), every_steps
        self.best_path, self.best = best_path, best
        self.state = state if state is not None else RunState()
        self.progress = progress
        self.last_seconds, self.seconds, self.count = None, 0.0, 0
        self.pending: dict = {}
        self._identity = None
        self._last = None  # (step, results)

    @property
    def num_pairs(self) -> int:
        return int(getattr(self.dataset, "num_pairs", 0))

    def run(self, label="validation") -> dict | None:
        """Validate now; returns the results (None when an interruption stopped it)."""
        from upt_keras.backend import inference_mode
        from upt_keras.data.pipeline import batch_size_of, identity_frames, pad_batch
        from upt_keras.evaluation import metrics as M
        from upt_keras.progress import Progress

        n_batches = len(self.dataset)
        batch_size = int(getattr(self.dataset, "batch_size", 32))
        bar = Progress(n_batches, label, "batches", enabled=self.progress)
        sq_sum = nrmse_sum = id_sum = 0.0
        points = count = 0
        for i in range(n_batches):
            if self.state.interrupted:
                bar.close(f"(stopped by {self.state.interrupted})")
                return None
            x, y = self.dataset[i]
            start, y = identity_frames(self.dataset, i, x), np.asarray(y, np.float32)
            if y.ndim == start.ndim + 1:  # K-step targets: the next frame is compared
                y = y[:, 0]
            n = batch_size_of(x)
            xb = pad_batch(x, batch_size)
            with inference_mode():
                pred = np.asarray(keras.ops.convert_to_numpy(self.model.predict_on_batch(xb)), np.float32)[:n]
            if pred.shape != y.shape:
                raise ValueError(f"validation: model predictions have shape {pred.shape}, the targets {y.shape}")
            sq_sum += float(np.sum(np.square((pred - y) / self.std)))
            points += y.size
            pairs_channels = n * y.shape[-1]
            nrmse_sum += M.nrmse(pred, y) * pairs_channels
            if self._identity is None:
                id_sum += M.nrmse(start, y) * pairs_channels
            count += pairs_channels
            bar.update(i + 1)
        if self._identity is None:
            self._identity = id_sum / max(count, 1)
        results = {"val_forward_loss": sq_sum / max(points, 1), "val_nrmse": nrmse_sum / max(count, 1),
                   "val_identity_nrmse": self._identity}
        if self.terms == "all":
            more = self.model.evaluate(self.dataset, verbose=0, return_dict=True)
            results.update({f"val_{k}": _as_float(v) for k, v in more.items()
                            if f"val_{k}" not in results and k != "loss"})
        self.last_seconds = bar.seconds
        self.seconds += bar.seconds
        self.count += 1
        bar.close(f"({self.num_pairs} pairs): val_forward_loss {results['val_forward_loss']:.4g}, val_nRMSE "
                  f"{results['val_nrmse']:.4g} (identity {results['val_identity_nrmse']:.4g})")
        self._keep_best(results)
        return results

    def estimate_seconds(self, seconds_per_pair: float) -> float:
        """Seconds one validation takes: the last one's, or `seconds_per_pair` times the pairs before any."""
        if self.last_seconds is not None:
            return self.last_seconds
        return seconds_per_pair * self.num_pairs * (3.0 if self.terms == "all" else 1.0)

    def _keep_best(self, results):
        value = results["val_forward_loss"]
        if not math.isfinite(value) or (self.best is not None and value >= self.best):
            return
        self.best = value
        if self.best_path is not None:
            self.model.save(self.best_path, overwrite=True)

    def _validate_at_step(self, label):
        results = self.run(label)
        if results is not None:
            self._last = (self.state.step, results)
            self.pending[self.state.step] = results
        return results

    def on_train_batch_end(self, batch, logs=None):
        if self.every_steps and self.state.step % int(self.every_steps) == 0 and not self.state.interrupted:
            if not self.model.stop_training:  # a stopped epoch is validated at its end
                self._validate_at_step(f"validation at step {self.state.step}")

    def on_epoch_end(self, epoch, logs=None):
        last_epoch = epoch + 1 >= self.state.epochs(self.params)
        due = (epoch + 1) % self.every_epochs == 0 or last_epoch or self.model.stop_training
        results = None
        if due and not self.state.interrupted:
            if self._last is not None and self._last[0] == self.state.step:
                results = self._last[1]  # validated at this very step already
            else:
                results = self._validate_at_step(f"validation after epoch {epoch + 1}")
        if logs is not None:
            for key in VALIDATION_KEYS:
                logs[key] = math.nan if results is None else results[key]
            if results is not None:
                logs.update({k: v for k, v in results.items() if k not in logs})


class EarlyStoppingOnValidation(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` that skips epochs whose watched value is NaN (not validated, with
    `training.validation_every_epochs` > 1): patience counts validations, not epochs."""

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and math.isnan(_as_float(value)):
            return
        super().on_epoch_end(epoch, logs)


class StepLog(keras.callbacks.Callback):
    """Writes a row to `path` (CSV) every `every` training steps and at every validation: the global step, the
    epoch (fractional: 2.5 is half-way through the third), wall seconds, the mean of each training log over the
    steps since the previous row, and the validation results of that step (empty otherwise).

    Args:
        path: the CSV file.
        every: steps between rows.
        validation: the run's `Validation` (its results are written at their step), or None.
        state: the run's `RunState`.
        append: add to an existing file (a resumed run; rows after the resumed step are dropped first).
    """

    def __init__(self, path, every=10, validation=None, state: RunState | None = None, append=False):
        super().__init__()
        self.path, self.every, self.validation = os.fspath(path), max(int(every), 1), validation
        self.state = state if state is not None else RunState()
        self.append = append
        self._columns = None
        self._prev = {}
        self._prev_batch = 0

    def on_train_begin(self, logs=None):
        if self.append and os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            if rows:
                self._columns = list(rows[0])
                kept = [r for r in rows if _as_float(r.get("step")) <= self.state.step]
                self._write(kept, mode="w")
                return
        if os.path.exists(self.path) and not self.append:
            os.remove(self.path)

    def on_epoch_begin(self, epoch, logs=None):
        self._prev, self._prev_batch = {}, 0

    def _write(self, rows, mode="a"):
        new = mode == "w" or not os.path.exists(self.path)
        with open(self.path, mode, newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._columns, restval="", extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def _row(self, logs, val):
        s = self.state
        row = {"step": s.step, "epoch": round(s.epoch + s.batch / max(s.epoch_steps, 1), 4),
               "seconds": round(s.elapsed(), 2)}
        done = s.batch - (s.batch_offset if s.epoch == s.offset_epoch else 0)  # batches of this fit in the epoch
        for key, value in (logs or {}).items():
            current = _as_float(value)
            prev = self._prev.get(key)
            if prev is not None and done > self._prev_batch and math.isfinite(prev):
                # Keras logs running means over the epoch: the mean over the last steps is their difference
                row[key] = (current * done - prev * self._prev_batch) / (done - self._prev_batch)
            else:
                row[key] = current
            self._prev[key] = current
        self._prev_batch = done
        if val:
            row.update(val)
        if self._columns is None:
            self._columns = list(row) + [k for k in VALIDATION_KEYS if k not in row]
        else:
            extra = [k for k in row if k not in self._columns]
            if extra:  # e.g. validation terms first seen now: rewrite with the wider header
                rows = []
                if os.path.exists(self.path):
                    with open(self.path, newline="", encoding="utf-8") as fh:
                        rows = list(csv.DictReader(fh))
                self._columns += extra
                self._write(rows, mode="w")
        return row

    def on_train_batch_end(self, batch, logs=None):
        val = self.validation.pending.pop(self.state.step, None) if self.validation is not None else None
        if val is not None or self.state.step % self.every == 0:
            self._write([self._row(logs, val)])

    def on_epoch_end(self, epoch, logs=None):
        if self.validation is None:
            return
        val = self.validation.pending.pop(self.state.step, None)
        if val is not None:
            row = {"step": self.state.step, "epoch": round(epoch + self.state.batch / max(self.state.epoch_steps, 1),
                                                             4),
                   "seconds": round(self.state.elapsed(), 2), **val}
            if self._columns is None:
                self._columns = list(row)
            self._write([row])


class TrainingProgress(keras.callbacks.Callback):
    """The progress of each epoch: a `keras.utils.Progbar` on a terminal (`verbose=1`) or one line per epoch
    (`verbose=2`). An epoch a stop cut short ends at the step it reached and says why, e.g.
    `epoch 3/20: 57 of 120 steps (stopped by the time budget) in 20.1 s ...`; it is never shown as N/N."""

    def __init__(self, state: RunState, verbose=1):
        super().__init__()
        self.state, self.verbose = state, int(verbose)
        self._bar = None
        self._t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self.verbose == 1:
            from keras.utils import Progbar

            total = self.state.epoch_steps
            resumed = f" (resumed at step {self.state.batch})" if self.state.batch else ""
            print(f"epoch {epoch + 1}/{self.state.epochs(self.params)}{resumed}", flush=True)
            self._bar = Progbar(total)
            if self.state.batch:
                self._bar.update(self.state.batch)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            values = [(k, _as_float(v)) for k, v in (logs or {}).items() if k.endswith("loss")]
            self._bar.update(self.state.batch, values=values)

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose == 0:
            return
        s = self.state
        secs = time.perf_counter() - (self._t0 or time.perf_counter())
        steps = f"{s.batch} steps" if s.batch >= s.epoch_steps else (
            f"{s.batch} of {s.epoch_steps} steps (stopped by {s.stop_reason or 'a callback'})")
        losses = ", ".join(f"{k} {_as_float(v):.4g}" for k, v in (logs or {}).items()
                           if k.endswith("loss") and not k.startswith("val_"))
        line = f"epoch {epoch + 1}/{self.state.epochs(self.params)}: {steps} in {secs:.1f} s: {losses}"
        if self._bar is not None:
            if s.batch < s.epoch_steps:
                print(flush=True)  # the bar stays where training stopped
            else:
                self._bar.update(s.batch, finalize=True)
            self._bar = None
            if s.batch < s.epoch_steps:
                print(line, flush=True)
        else:
            print(line, flush=True)
