"""How a run spends and reports its time: capped and scheduled validation, a wall-time budget, interruptions that
save a resumable checkpoint, progress lines in logs, and the per-step history."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import keras

from upt_keras import training
from upt_keras.config import load_config
from upt_keras.data import generate_burgers_dataset
from upt_keras.progress import Progress
from upt_keras.training.checkpoint import TrainingInterrupted, read_backup
from upt_keras.training.monitoring import RunState, TrainingProgress

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_MODEL = [
    "model.encoder_dim=16", "model.encoder_heads=2", "model.num_latent_tokens=4", "model.latent_dim=16",
    "model.approximator_width=16", "model.approximator_depth=1", "model.approximator_heads=2",
    "model.decoder_width=16", "model.decoder_heads=2", "model.decoder_depth=1", "model.decoder_mlp_dim=16",
    "model.mlp_ratio=2", "model.frequencies=[1,2]",
]


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """16 trajectories of 11 frames on 32 points: 4 test, 4 validation, 8 training (80 pairs, 10 batches of 8)."""
    path = tmp_path_factory.mktemp("data") / "small.h5"
    return str(generate_burgers_dataset(str(path), num_samples=16, resolution=32, t_end=0.1, progress=False))


def cfg_for(path, *extra):
    return load_config(None, [
        "data.source=hdf5", f"data.path={path}", "data.test_fraction=0.25", "data.val_fraction=0.25",
        "data.rollout_steps=3", "training.batch_size=8", "training.epochs=2", "training.use_inverse_losses=false",
        "output.plots=false", *TINY_MODEL, *extra,
    ])


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------ validation (A)


def test_validation_and_test_splits_are_capped_and_one_step(small_file, capsys):
    cfg = cfg_for(small_file, "data.max_val_samples=1", "data.max_test_samples=2", "training.rollout_loss_steps=2")
    data = training.prepare_data(cfg, progress=False)
    assert data.split["val"] == [4] and data.split["test"] == [0, 1]
    assert data.info["split_sizes_before_caps"]["val"] == 4
    x, y = data.val[0]
    assert y.shape == x.shape  # the watched metric is one step, whatever the training targets are
    assert data.rollout.trajectories.shape[0] == 2
    line = training.pipeline._data_line(cfg, data)
    assert "validation 1 of 4 (data.max_val_samples) trajectories" in line and "MB in memory" in line
    every = training.prepare_data(cfg_for(small_file, "training.rollout_loss_steps=2", "training.validation_terms=all"),
                                  splits=("val",), progress=False)
    assert every.val[0][1].shape[1] == 2  # the objective's K-step terms need K-step targets


def test_validation_computes_the_forward_loss_on_a_schedule(small_file, tmp_path):
    cfg = cfg_for(small_file, "training.epochs=3", "training.validation_every_epochs=2",
                  "training.use_inverse_losses=true", "training.inverse_loss_warmup_epochs=0")
    model, _, metrics = training.train(cfg, run_dir=str(tmp_path), verbose=0)
    rows = _rows(tmp_path / "history.csv")
    val = [float(r["val_forward_loss"]) for r in rows]
    assert math.isnan(val[0]) and math.isfinite(val[1]) and math.isfinite(val[2])  # epoch 2 and the last one
    assert not any(k.startswith("val_inv") for k in rows[0])  # no inverse terms unless asked for
    assert metrics["training"]["validations"] == 2
    # the value is the one-step MSE in normalised units on the full grid, of the best (reloaded) model
    data = training.prepare_data(cfg, splits=("train", "val"), progress=False)
    x = np.concatenate([data.val[i][0] for i in range(len(data.val))])
    y = np.concatenate([data.val[i][1] for i in range(len(data.val))])
    pred = np.asarray(model.predict(x, verbose=0))
    expected = float(np.mean(np.square((pred - y) / np.asarray(data.field_std))))
    assert metrics["training"]["best_val_forward_loss"] == pytest.approx(expected, rel=1e-4)
    assert float(rows[0]["val_identity_nrmse"] or "nan") != 0.0


def test_validation_every_steps_writes_step_rows(small_file, tmp_path):
    cfg = cfg_for(small_file, "training.epochs=1", "training.validation_every_steps=4", "output.log_every_steps=3")
    training.train(cfg, run_dir=str(tmp_path), verbose=0)
    rows = _rows(tmp_path / "history_steps.csv")
    val_steps = [int(r["step"]) for r in rows if r["val_forward_loss"]]
    assert val_steps == [4, 8, 10]  # every 4 steps and after the epoch (10 steps)
    train_steps = [int(r["step"]) for r in rows if r["forward_loss"]]
    assert train_steps[:3] == [3, 4, 6]  # every 3 steps and with each validation


# ------------------------------------------------------------------------------------------------ budget (B)


def test_budget_reserves_time_and_a_cut_epoch_is_not_finished(capsys):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    state = RunState(epoch_steps=8)
    import time

    # 100 s left, but 1000 s are needed after training: it stops after the first step
    budget = training.TimeBudget(None, deadline=time.monotonic() + 100, reserve=lambda: 1000.0, state=state)
    counter = training.monitoring.StepCounter(state, 8)
    x = np.zeros((64, 4), "float32")
    model.fit(x, x[:, :1], batch_size=8, epochs=3, verbose=0,
              callbacks=[counter, budget, TrainingProgress(state, verbose=2)])
    assert budget.stopped_epoch == 0 and budget.stopped_at_batch == 1
    out = capsys.readouterr().out
    assert "epoch 1/3: 1 of 8 steps (stopped by the time budget)" in out and "8/8" not in out


def test_train_budget_is_wall_time_and_reports_the_cut(small_file, tmp_path, capsys):
    cfg = cfg_for(small_file, "training.epochs=50", "training.time_budget_seconds=4")
    _, _, metrics = training.train(cfg, run_dir=str(tmp_path), verbose=2)
    info = metrics["training"]
    out = capsys.readouterr().out
    assert "time budget: 4 s of wall time for the whole run" in out and "for the test evaluation" in out
    assert info["stopped_by_time_budget"]
    if info["last_epoch_steps"] < info["steps_per_epoch"]:  # cut mid-epoch: not counted as finished
        assert info["epochs_completed"] == len(_rows(tmp_path / "history.csv")) - 1
        assert "steps (stopped by the time budget)" in out
    assert info["wall_seconds"] >= info["train_seconds"] + info["evaluation_seconds"]


def test_a_training_budget_counts_training_and_validation_only(small_file, tmp_path, capsys, monkeypatch):
    # the test evaluation is estimated at 2000 s: a 1000 s budget of the whole run cannot keep it back and trains one
    # step; a 1000 s budget of training does not count it and trains the whole epoch (10 steps). Counted in steps,
    # not seconds: the first step's tracing (10-15 s on TensorFlow) would swamp a budget of a few seconds.
    from upt_keras.training import pipeline

    monkeypatch.setattr(pipeline, "_evaluation_estimate", lambda data, rate: 2000.0)
    info = {}
    for covers in ("run", "training"):
        cfg = cfg_for(small_file, "training.epochs=1", "training.time_budget_seconds=1000",
                      "training.fit_schedule_to_budget=false", f"training.time_budget_covers={covers}")
        _, _, metrics = training.train(cfg, run_dir=str(tmp_path / covers), verbose=2)
        info[covers] = metrics["training"]
    out = capsys.readouterr().out
    assert "time budget: 1000 s of training (training.time_budget_covers: training)" in out
    assert "(1000 s budget for training)" in out
    assert info["run"]["steps_completed"] == 1 and info["run"]["stopped_by_time_budget"]
    assert info["training"]["steps_completed"] == 10 and not info["training"]["stopped_by_time_budget"]


class FakeBudget:
    """A `TimeBudget` stand-in whose training ends at a fixed `time.monotonic()` value."""

    def __init__(self, end):
        self.end = end

    def end_time(self):
        return self.end


def test_the_budget_schedule_follows_the_clock_and_the_steps(monkeypatch):
    from upt_keras.training import callbacks

    clock = {"now": 100.0}
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock["now"])
    state = RunState()
    schedule = training.BudgetSchedule(1e-3, 10, FakeBudget(200.0), max_steps=1000, state=state, origin=100.0)
    assert schedule.share(0) == 0.0 and schedule.rate(0, 0.0) == 0.0  # the warmup starts at 0
    assert schedule.rate(5, 0.0) == pytest.approx(5e-4)
    clock["now"] = 150.0  # half the budget's time used: half the peak, whatever the step
    assert schedule.share(20) == pytest.approx(0.5) and schedule.rate(20, 0.5) == pytest.approx(5e-4)
    assert schedule.share(900) == pytest.approx(0.9)  # the steps' share when it is ahead of the clock
    clock["now"] = 175.0
    schedule.budget.end = 160.0  # the end moved earlier (a validation measured slower): past it the rate is 0
    assert schedule.share(20) == 1.0 and schedule.rate(20, 1.0) == 0.0


class EndsLate:
    """A `TimeBudget` stand-in whose end is past for the first `past` calls (a rate of 0), then far ahead."""

    def __init__(self, past):
        self.calls, self.past = 0, past

    def end_time(self):
        self.calls += 1
        return -math.inf if self.calls <= self.past else math.inf


def _weights(model):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights]


@pytest.mark.parametrize("past", [10, 9])
def test_the_budget_schedule_sets_the_rate_of_every_compiled_step(small_file, past):
    # Steps 0-8 train at a rate of 0, step 9 at the peak (past=9) or at 0 too (past=10). Only the last step may move
    # the weights, and it must: a rate written between steps but not seen by the compiled step (on JAX the training
    # state lives outside the model during an epoch) would keep step 9 at the rate of step 0.
    cfg = cfg_for(small_file, "training.epochs=1", "training.learning_rate=1e-2")
    data = training.prepare_data(cfg, splits=("train",), progress=False)
    model = training.build_model(cfg, data, clock_schedule=True)
    before = _weights(model)
    state = RunState()
    schedule = training.BudgetSchedule(1e-2, 0, EndsLate(past), max_steps=10**9, state=state, origin=0.0)
    model.fit(data.train, epochs=1, verbose=0,
              callbacks=[training.monitoring.StepCounter(state, len(data.train)), schedule])
    assert len(data.train) == 10 and [r[0] for r in schedule.rates] == list(range(10))
    assert [r[2] for r in schedule.rates] == [0.0] * past + [pytest.approx(1e-2)] * (10 - past)
    moved = [not np.array_equal(b, a) for b, a in zip(before, _weights(model))]
    assert any(moved) == (past == 9)


# ------------------------------------------------------------------------------------------------ interruptions (C)


class SignalAt(keras.callbacks.Callback):
    """Sends `sig` to this process at the start of batch `batch` of epoch `epoch`; counts batches."""

    def __init__(self, epoch, batch, sig=signal.SIGINT):
        super().__init__()
        self.at, self.sig, self.epoch, self.batches = (epoch, batch), sig, -1, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), self.sig)

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_resumable_checkpoint_mid_epoch(small_file, tmp_path, capsys, sig):
    cfg = cfg_for(small_file, "training.epochs=3", "training.checkpoint_every_steps=100")
    with pytest.raises(TrainingInterrupted, match="rerun the same command"):
        training.train(cfg, run_dir=str(tmp_path), verbose=2, callbacks=[SignalAt(1, 3, sig)])
    out = capsys.readouterr().out
    name = signal.Signals(sig).name
    assert f"interrupted by {name} at epoch 2, step 4 of 10 (global step 14)" in out
    saved = read_backup(tmp_path / "backup")
    assert (saved["epoch"], saved["batch"], saved["step"]) == (1, 4, 14)
    order = np.load(tmp_path / "backup" / "order.npy")
    assert sorted(order.tolist()) == list(range(80))
    assert signal.getsignal(signal.SIGINT) is not None  # handlers are restored after fit

    seen = []

    class Pairs(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(batch)

    counter = SignalAt(-1, -1)
    model, _, metrics = training.train(cfg, run_dir=str(tmp_path), verbose=2, callbacks=[counter, Pairs()])
    out = capsys.readouterr().out
    assert "resuming the interrupted run" in out and "epoch 2, step 4 of 10 (global step 14)" in out
    assert counter.batches == 6 + 10  # the rest of epoch 2, then epoch 3: no step is done twice or skipped
    assert metrics["training"]["steps_completed"] == 30  # 3 epochs of 10 steps, counted over both runs
    assert metrics["training"]["resumed_from_step"] == 14
    assert not (tmp_path / "backup").exists()  # finished: nothing left to resume


def test_checkpoint_every_steps(small_file, tmp_path):
    seen = {}

    class Peek(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 7:
                seen["state"] = read_backup(tmp_path / "backup")

    cfg = cfg_for(small_file, "training.epochs=1", "training.checkpoint_every_steps=3")
    training.train(cfg, run_dir=str(tmp_path), verbose=0, callbacks=[Peek()])
    assert seen["state"]["step"] == 6 and seen["state"]["batch"] == 6  # a kill at step 7 loses one step


def test_rerun_without_checkpoint_says_it_starts_from_scratch(small_file, tmp_path, capsys):
    cfg = cfg_for(small_file, "training.epochs=1")
    training.train(cfg, run_dir=str(tmp_path), verbose=2)
    capsys.readouterr()
    training.train(cfg, run_dir=str(tmp_path), verbose=2)
    assert "training starts from scratch" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ progress (D)


def test_progress_in_a_log_is_one_line_per_stage(small_file, tmp_path, capsys):
    cfg = cfg_for(small_file, "training.epochs=1")
    training.train(cfg, run_dir=str(tmp_path), verbose=2)
    out = capsys.readouterr().out
    assert "\r" not in out and "\b" not in out
    for stage in ("reading train split: 8 trajectories in", "MB/s", "validation after epoch 1: 5 batches in",
                  "epoch 1/1: 10 steps in", "test, one step (40 pairs): 5 batches in",
                  "test, latent rollouts of 3 steps: 4 rollouts in", "test, physical rollouts of 3 steps: 4 rollouts",
                  "wall time"):
        assert stage in out, stage
    assert out.count("validation after epoch 1:") == 1


def test_progress_lines_and_generate_data(tmp_path, capsys):
    bar = Progress(5, "work", "items", bar=False)
    for i in range(3):
        bar.update(i + 1, MB_per_s=2.0)
    assert bar.close() .startswith("work: 3 of 5 items in")
    assert capsys.readouterr().out.startswith("work: 3 of 5 items in") and "2 MB/s" in bar.close()
    generate_burgers_dataset(str(tmp_path / "g.h5"), num_samples=4, resolution=16, t_end=0.02, progress=True)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("generating 4 Burgers trajectories (1D, 16 points per axis): 4 "
                                                   "trajectories in")


# ------------------------------------------------------------------------------------------------ memory (F)


def test_in_memory_false_reads_the_same_batches_from_the_file(small_file, tmp_path, capsys):
    cfg = cfg_for(small_file, "training.rollout_loss_steps=2")
    eager = training.prepare_data(cfg, progress=False)
    lazy = training.prepare_data(cfg_for(small_file, "training.rollout_loss_steps=2", "data.in_memory=false"),
                                 progress=False)
    try:
        assert lazy.info["memory_bytes"] == 0 < eager.info["memory_bytes"] == lazy.info["file_bytes"]
        assert lazy.stats["std"] == pytest.approx(eager.stats["std"])
        assert lazy.stats["mean"] == pytest.approx(eager.stats["mean"], abs=1e-9)
        for name in ("train", "val", "test", "rollout"):
            a, b = getattr(eager, name), getattr(lazy, name)
            for i in (0, len(a) - 1):
                np.testing.assert_array_equal(a[i][0], b[i][0])
                np.testing.assert_array_equal(a[i][1], b[i][1])
        line = training.pipeline._data_line(None, lazy)
        assert "read from the file at every batch (data.in_memory: false" in line
        assert "MB in memory (data.in_memory)" in training.pipeline._data_line(None, eager)
    finally:
        lazy.close()
    _, _, metrics = training.train(cfg_for(small_file, "training.epochs=1", "data.in_memory=false"),
                                   run_dir=str(tmp_path), verbose=2)
    assert "read from the file at every batch" in capsys.readouterr().out
    assert np.isfinite(metrics["one_step"]["model"]["nrmse"])


def test_ctrl_c_on_the_command_line_exits_130_with_where_it_stopped(small_file, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    args = ["train", "--run-dir", str(tmp_path / "run"), "--verbose", "2"]
    sets = ["data.source=hdf5", f"data.path={small_file}", "data.test_fraction=0.25", "data.val_fraction=0.25",
            "data.rollout_steps=3", "training.batch_size=8", "training.epochs=2", "output.plots=false", *TINY_MODEL]
    for item in sets:
        args += ["--set", item]
    proc = subprocess.run([sys.executable, os.path.join(root, "tests", "killed_cli.py"), "0:2:INT", *args],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    # (the number of steps per epoch comes from the CPU default config, which `train` without --config uses)
    assert re.search(r"interrupted by SIGINT at epoch 1, step 3 of \d+ \(global step 3\)", proc.stdout), proc.stdout
    assert read_backup(tmp_path / "run" / "backup")["step"] == 3


def test_early_stopping_patience_counts_validations_not_epochs(small_file, tmp_path):
    cfg = cfg_for(small_file, "training.epochs=4", "training.validation_every_epochs=2",
                  "training.early_stopping_patience=1")
    training.train(cfg, run_dir=str(tmp_path), verbose=0)
    assert len(_rows(tmp_path / "history.csv")) == 4  # epoch 3 was not validated: it is no lack of improvement


def test_a_resumed_budgeted_run_goes_on_where_its_schedule_was(small_file, tmp_path, monkeypatch):
    from upt_keras.training import pipeline

    seen = []

    class Spy(training.BudgetSchedule):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            seen.append((self, time.monotonic()))

    monkeypatch.setattr(pipeline, "BudgetSchedule", Spy)
    cfg = cfg_for(small_file, "training.epochs=3", "training.time_budget_seconds=2000", "training.warmup_steps=5")
    with pytest.raises(TrainingInterrupted):
        training.train(cfg, run_dir=str(tmp_path), verbose=0, callbacks=[SignalAt(0, 2)])
    trained = read_backup(tmp_path / "backup")["train_seconds"]
    assert trained > 0 and [r[0] for r in seen[-1][0].rates] == [0, 1, 2]  # the step in progress ends
    training.train(cfg, run_dir=str(tmp_path), verbose=0)
    schedule, began = seen[-1]
    # the earlier training counts in the clock's share, and the steps (and the warmup) go on from step 3
    assert began - schedule.origin >= trained - 1e-3
    assert schedule.rates[-1][0] == 29 and schedule.rates[0][0] == 3
    assert all(r[1] >= r[0] / 30 for r in schedule.rates)
    assert schedule.rates[-1][2] < 0.01 * cfg.training.learning_rate  # the last of 30 steps: near 0


def test_a_budget_too_small_for_validation_and_evaluation_is_announced(small_file, tmp_path, capsys, monkeypatch):
    from upt_keras.training import pipeline

    monkeypatch.setattr(pipeline, "seconds_per_pair", lambda model, data: 1.0)  # 40 validation pairs: 40 s
    cfg = cfg_for(small_file, "training.epochs=1", "training.time_budget_seconds=30")
    _, _, metrics = training.train(cfg, run_dir=str(tmp_path), verbose=2)
    out = capsys.readouterr().out
    assert "warning: the validation and the test evaluation need ~" in out and "lower data.max_val_samples" in out
    assert metrics["training"]["steps_completed"] == 1


def test_validation_terms_all_adds_the_objectives_terms(small_file, tmp_path):
    cfg = cfg_for(small_file, "training.epochs=1", "training.validation_terms=all", "training.use_inverse_losses=true",
                  "training.inverse_loss_warmup_epochs=0")
    training.train(cfg, run_dir=str(tmp_path), verbose=0)
    row = _rows(tmp_path / "history.csv")[0]
    assert math.isfinite(float(row["val_inv_enc_loss"])) and math.isfinite(float(row["val_forward_loss"]))


def test_the_budget_reserves_validation_and_test_at_their_own_measured_rates(small_file, tmp_path, capsys,
                                                                            monkeypatch):
    # a point cloud validates at its points and is tested on the full grid: the two rates differ, and each estimate
    # must use its own (one test batch's rate for both had a points run keep ~35 s for an ~11 s validation)
    from upt_keras.training import pipeline

    seen = {}
    prepared = pipeline.prepare_data

    def remember(cfg, *args, **kwargs):
        seen["data"] = prepared(cfg, *args, **kwargs)
        return seen["data"]

    monkeypatch.setattr(pipeline, "prepare_data", remember)
    monkeypatch.setattr(pipeline, "seconds_per_pair", lambda model, source: 0.5 if source is seen["data"].val else 0.01)
    cfg = cfg_for(small_file, "training.epochs=1", "training.time_budget_seconds=1000")
    training.train(cfg, run_dir=str(tmp_path), verbose=2)
    line = capsys.readouterr().out.split("time budget:")[1].split("\n")[0]
    data = seen["data"]
    per_validation = float(line.split("s per validation")[0].split("~")[-1])
    test_evaluation = float(line.split("s for the test evaluation")[0].split("~")[-1])
    assert per_validation == pytest.approx(0.5 * data.val.num_pairs, abs=0.06)
    assert test_evaluation == pytest.approx(pipeline._evaluation_estimate(data, 0.01), abs=0.06)
