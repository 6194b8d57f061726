"""Keras callbacks: the inverse-loss curriculum, a training time budget and the learning rate that follows it, step
timing and the validation nRMSE."""

import math
import statistics
import time

import numpy as np

import keras


def curriculum_weight(epoch, base, warmup_epochs, ramp_epochs=None, max_weight=0.05):
    """Weight of an inverse loss at `epoch` (0-based).

    `0` before `warmup_epochs`; then a linear ramp `base * (epoch - W) / R` for
    `W <= epoch < W + R`; then `base`; never above `max_weight`.
    `R = ramp_epochs` defaults to `W`; `R = 0` jumps to `base` at epoch W.
    """
    warmup = int(warmup_epochs)
    ramp = warmup if ramp_epochs is None else int(ramp_epochs)
    if epoch < warmup:
        weight = 0.0
    elif ramp > 0 and epoch < warmup + ramp:
        weight = base * (epoch - warmup) / ramp
    else:
        weight = base
    return float(min(weight, max_weight))


class InverseLossCurriculum(keras.callbacks.Callback):
    """Sets the model's effective inverse-loss weights at the start of every epoch.

    Schedule for warmup W=5, ramp R=5 (default R = W), base 0.01, cap 0.05:

    | epoch  | 0-4 | 5   | 6     | 7     | 8     | 9     | >= 10 |
    |--------|-----|-----|-------|-------|-------|-------|-------|
    | weight | 0   | 0   | 0.002 | 0.004 | 0.006 | 0.008 | 0.01  |

    The weights live in non-trainable variables of the model's objective
    (`model.objective.inv_enc_weight`, `inv_dec_weight`, tracked by the model) and are written through
    `self.model`, so the schedule takes effect inside compiled steps and on JAX.
    While a weight is 0, the model skips computing that step's inverse terms.

    Args:
        lambda_inv_enc: base weight of the inverse-encoding loss (default: the objective's `lambda_inv_enc`).
        lambda_inv_dec: base weight of the inverse-decoding loss (default: the objective's `lambda_inv_dec`).
        warmup_epochs: int, epochs with weight 0.
        ramp_epochs: int or None (= warmup_epochs), length of the linear ramp.
        max_weight: float, cap on both weights.

    Example:
    >>> model.fit(data, epochs=20, callbacks=[InverseLossCurriculum(warmup_epochs=5)])
    """

    def __init__(self, lambda_inv_enc=None, lambda_inv_dec=None, warmup_epochs=5, ramp_epochs=None, max_weight=0.05):
        super().__init__()
        for name, value in (("warmup_epochs", warmup_epochs), ("ramp_epochs", ramp_epochs), ("max_weight", max_weight)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.lambda_inv_enc, self.lambda_inv_dec = lambda_inv_enc, lambda_inv_dec
        self.warmup_epochs, self.ramp_epochs, self.max_weight = warmup_epochs, ramp_epochs, max_weight

    def weights_at(self, epoch):
        """(inverse-encoding weight, inverse-decoding weight) at `epoch`."""
        objective = self.model.objective
        enc = objective.lambda_inv_enc if self.lambda_inv_enc is None else self.lambda_inv_enc
        dec = objective.lambda_inv_dec if self.lambda_inv_dec is None else self.lambda_inv_dec
        args = (self.warmup_epochs, self.ramp_epochs, self.max_weight)
        return curriculum_weight(epoch, enc, *args), curriculum_weight(epoch, dec, *args)

    def on_epoch_begin(self, epoch, logs=None):
        enc, dec = self.weights_at(epoch)
        self.model.objective.inv_enc_weight.assign(enc)
        self.model.objective.inv_dec_weight.assign(dec)


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `seconds` of training time (from the start of `fit`) have passed, or, with `deadline`,
    once `time.monotonic()` plus the time still needed after training (`reserve()`: the pending validation, the test
    evaluation) reaches `deadline`: the budget of a whole run, in wall time.

    The check runs after every batch: the epoch in progress ends early, is validated and logged as usual (so the
    best checkpoint and the history stay consistent), and no further epoch starts.

    Args:
        seconds: training seconds from the start of `fit` (None: only `deadline`).
        deadline: `time.monotonic()` value by which the run must have ended, or None.
        reserve: callable giving the seconds to keep before `deadline` (default 0).
        state: a `RunState` whose `stop_reason` is set when the budget stops training.

    Attributes:
        stopped_epoch: the epoch during which the budget ran out, or None.
        stopped_at_batch: batches of that epoch done when it ran out (within this `fit`), or None.
        elapsed: training seconds at the end of `fit`.
    """

    def __init__(self, seconds, deadline=None, reserve=None, state=None):
        super().__init__()
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.seconds, self.deadline, self.reserve, self.state = seconds, deadline, reserve, state
        self.stopped_epoch = None
        self.stopped_at_batch = None
        self.elapsed = 0.0
        self._start = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()
        self.stopped_epoch = self.stopped_at_batch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def end_time(self):
        """The `time.monotonic()` value at which training stops at the current estimate of what it must keep back
        (`deadline - reserve()`, or `seconds` after the start of `fit`, whichever comes first)."""
        ends = []
        if self.seconds is not None and self._start is not None:
            ends.append(self._start + self.seconds)
        if self.deadline is not None:
            ends.append(self.deadline - (float(self.reserve()) if self.reserve is not None else 0.0))
        return min(ends) if ends else math.inf

    def _out_of_time(self):
        return time.monotonic() >= self.end_time()

    def _check(self, batch=None):
        if self._out_of_time():
            if self.stopped_epoch is None:
                self.stopped_epoch = self._epoch
                self.stopped_at_batch = None if batch is None else batch + 1
                if self.state is not None and self.state.stop_reason is None:
                    self.state.stop_reason = "the time budget"
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._check(batch)

    def on_epoch_end(self, epoch, logs=None):
        self._check()

    def on_train_end(self, logs=None):
        self.elapsed = time.monotonic() - self._start if self._start is not None else 0.0


class BudgetSchedule(keras.callbacks.Callback):
    """The learning rate of a run with a time budget, set before every training step from the share of the budget
    used: a linear warmup over the first `warmup_steps` steps times a cosine from `peak` to 0,
    `peak * min(1, step / warmup_steps) * (1 + cos(pi * f)) / 2`.

    `f` is the larger of the clock's share, `(now - origin) / (budget.end_time() - origin)`, and the steps' share,
    `step / max_steps` (a run that finishes its epochs before its budget still decays to 0). A schedule fitted in
    steps to a step time measured before training ends early or late when the run's pace differs from it; this one
    reaches 0 when the budget stops training whatever the pace, the validations included.

    The rate is written to the optimizer's learning-rate variable through `self.model` (which, on JAX, brings the
    training state back to the model first), so the optimizer must have a constant learning rate, not a schedule.

    Args:
        peak: the learning rate after the warmup.
        warmup_steps: steps of the linear warmup (0: none).
        budget: the `TimeBudget` that stops training (its `end_time()`).
        max_steps: the steps of the configured epochs.
        state: the `RunState` whose `step` counts the optimizer steps (`StepCounter` keeps it).
        origin: `time.monotonic()` value at which training started (a resumed run's earlier training counted);
            default: the start of `fit`.

    Attributes:
        rates: `(step, share, rate)` of the steps this callback set, every one for the last 1000 steps.
    """

    def __init__(self, peak, warmup_steps, budget, max_steps, state, origin=None):
        super().__init__()
        self.peak, self.warmup_steps, self.budget = float(peak), int(warmup_steps), budget
        self.max_steps, self.state, self.origin = max(int(max_steps), 1), state, origin
        self.rates = []

    def on_train_begin(self, logs=None):
        if self.origin is None:
            self.origin = time.monotonic()

    def share(self, step):
        """The share `f` of the budget used at global step `step`, in [0, 1]."""
        now, end = time.monotonic(), self.budget.end_time()
        clock = (now - self.origin) / (end - self.origin) if end > self.origin else 1.0
        return min(max(clock, step / self.max_steps, 0.0), 1.0)

    def rate(self, step, share):
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        return self.peak * warm * 0.5 * (1.0 + math.cos(math.pi * share))

    def on_train_batch_begin(self, batch, logs=None):
        step = self.state.step
        share = self.share(step)
        rate = self.rate(step, share)
        self.model.optimizer.learning_rate = rate
        self.rates.append((step, share, rate))
        if len(self.rates) > 1000:
            del self.rates[:-1000]


class StepTimer(keras.callbacks.Callback):
    """Records the wall time of every training step (batch begin to batch end, after the step's results are
    available) and of the whole `fit`.

    Attributes:
        times: seconds per step, in order.
        fit_seconds: wall time of the last `fit`.
    """

    def __init__(self):
        super().__init__()
        self.times, self.fit_seconds = [], 0.0
        self._t0 = self._fit0 = None

    def on_train_begin(self, logs=None):
        self._fit0 = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:  # wait for the step (asynchronous devices)
            float(keras.ops.convert_to_numpy(logs["loss"]))
        self.times.append(time.perf_counter() - self._t0)

    def on_train_end(self, logs=None):
        self.fit_seconds = time.perf_counter() - self._fit0

    def step_time(self):
        """Median seconds per step, leaving out the first step (tracing / compilation) when there are others."""
        times = self.times[1:] if len(self.times) > 1 else self.times
        return float(statistics.median(times)) if times else float("nan")


class ValidationNRMSE(keras.callbacks.Callback):
    """Adds `val_nrmse` (one-step nRMSE in physical units on `dataset`) to the logs at the end of every epoch.

    Place it before any callback that reads `val_nrmse` (early stopping, the tuner's own callbacks).
    """

    def __init__(self, dataset, batch_size=None):
        super().__init__()
        self.dataset, self.batch_size = dataset, batch_size

    def on_epoch_end(self, epoch, logs=None):
        # imported when used: `import upt_keras` loads this module
        from upt_keras.evaluation.metrics import nrmse
        from upt_keras.evaluation.protocol import collect_pairs, predict

        x, y = collect_pairs(self.dataset)
        batch = self.batch_size or getattr(self.dataset, "batch_size", 32)
        pred = predict(self.model, x, batch)
        if logs is not None:
            logs["val_nrmse"] = float(nrmse(pred, y)) if np.all(np.isfinite(pred)) else float("nan")
