"""Training pipeline pieces: data preparation, model building, callbacks, the time budget, physical-unit evaluation."""

import math

import numpy as np
import pytest

import keras

from upt_keras import evaluation, training
from upt_keras.config import ConfigError, load_config
from upt_keras.data import compute_normalization, generate_burgers_dataset, open_trajectories, write_trajectories
from upt_keras.evaluation.metrics import all_metrics, nrmse

BACKEND = keras.backend.backend()

TINY_MODEL = [
    "model.encoder_dim=16", "model.encoder_heads=2", "model.num_latent_tokens=4", "model.latent_dim=16",
    "model.approximator_width=16", "model.approximator_depth=1", "model.approximator_heads=2",
    "model.decoder_width=16", "model.decoder_heads=2", "model.decoder_depth=1", "model.decoder_mlp_dim=16",
    "model.mlp_ratio=2", "model.frequencies=[1,2]",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def burgers_file(tmp_path_factory):
    """12 trajectories of 11 frames on 32 points (dt = 0.01)."""
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    return str(generate_burgers_dataset(str(path), num_samples=12, resolution=32, t_end=0.1, progress=False))


@pytest.fixture(scope="module")
def offset_file(tmp_path_factory):
    """Smooth fields far from zero mean (about 3 +- 0.5): any mix-up of normalised and physical units shows."""
    rng = np.random.default_rng(0)
    x = (np.arange(32) / 32)[None, None, :, None]        # (S, T, X, K) broadcasting
    t = (np.arange(8) * 0.01)[None, :, None, None]
    k = np.arange(1, 4)[None, None, None, :]
    amp = 0.2 * rng.normal(size=(10, 1, 1, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(10, 1, 1, 3))
    u = 3.0 + np.sum(amp * np.sin(2 * np.pi * k * (x - 0.5 * t) + phase), axis=-1)  # (10, 8, 32)
    path = tmp_path_factory.mktemp("offset") / "offset.h5"
    return str(write_trajectories(str(path), u.astype("float32"), times=np.arange(8) * 0.01))


def tiny_cfg(path, *extra):
    return load_config(None, [
        "data.source=hdf5", f"data.path={path}", "data.test_fraction=0.25", "data.val_fraction=0.25",
        "data.rollout_steps=4", "training.batch_size=8", "training.epochs=2", "training.use_inverse_losses=true",
        "training.inverse_loss_warmup_epochs=1",
        *TINY_MODEL, *extra,
    ])


# ------------------------------------------------------------------------------------------------------------ data


def test_prepare_data_splits_stats_and_dt(burgers_file):
    cfg = tiny_cfg(burgers_file, "data.time_stride=2", "data.rollout_steps=3")
    data = training.prepare_data(cfg, progress=False)
    assert data.grid_shape == (32,) and data.num_channels == 1
    assert math.isclose(data.dt, 0.02, rel_tol=1e-9)  # frame spacing x time_stride
    assert data.split["test"] == [0, 1, 2] and data.split["val"] == [3, 4, 5]
    assert data.split["train"] == list(range(6, 12))
    with open_trajectories(burgers_file) as store:
        train_stats = compute_normalization(store, data.split["train"])
        all_stats = compute_normalization(store)
        test_traj = store.read([0, 1, 2])
    assert data.stats == train_stats != all_stats  # the statistics never see the test split
    x, y = data.train[0]
    assert x.shape == y.shape == (8, 32, 1)
    assert data.test.num_pairs == 3 * (11 - 2)
    # Rollout targets: frames t0 + 2, t0 + 4, t0 + 6 of the test trajectories.
    x0, targets, pairs = evaluation.rollout_arrays(data.rollout, "initial")
    assert targets.shape == (3, 3, 32, 1) and list(pairs[:, 1]) == [0, 0, 0]
    np.testing.assert_array_equal(targets, test_traj[:, [2, 4, 6]])
    np.testing.assert_array_equal(x0, test_traj[:, 0])
    assert evaluation.rollout_arrays(data.rollout, "all")[0].shape[0] == 3 * (11 - 6)


def test_prepare_data_max_train_samples_and_errors(burgers_file):
    data = training.prepare_data(tiny_cfg(burgers_file, "data.max_train_samples=2"), progress=False)
    assert data.split["train"] == [6, 7]
    with pytest.raises(ConfigError, match="rollout_steps=20"):
        training.prepare_data(tiny_cfg(burgers_file, "data.rollout_steps=20"), progress=False)
    with pytest.raises(ConfigError, match="patch_size=5"):
        training.prepare_data(tiny_cfg(burgers_file, "model.patch_size=5"), progress=False)
    with pytest.raises(ConfigError, match="test split"):
        training.prepare_data(tiny_cfg(burgers_file, "data.test_fraction=0.0"), progress=False)


# ------------------------------------------------------------------------------------------------------------ model


def _lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step))) if callable(schedule) else float(schedule)


def test_lr_schedules_and_optimizer():
    cfg = load_config(None, ["training.learning_rate=0.01", "training.weight_decay=0.001",
                             "training.warmup_steps=10"])
    opt = training.make_optimizer(cfg, total_steps=110)
    assert isinstance(opt, keras.optimizers.AdamW) and math.isclose(opt.weight_decay, 0.001)
    assert opt.global_clipnorm == training.GLOBAL_CLIPNORM
    cosine = training.make_lr_schedule(cfg, total_steps=110)
    assert _lr(cosine, 0) == pytest.approx(0.0, abs=1e-9)
    assert _lr(cosine, 5) == pytest.approx(0.005, rel=1e-4)
    assert _lr(cosine, 10) == pytest.approx(0.01, rel=1e-4)
    assert _lr(cosine, 60) == pytest.approx(0.005, rel=1e-3)  # half-way through the cosine
    assert _lr(cosine, 110) == pytest.approx(0.0, abs=1e-7)
    const = training.make_lr_schedule(load_config(None, ["training.lr_schedule=constant", "training.learning_rate=0.01",
                                                         "training.warmup_steps=4"]), total_steps=100)
    assert _lr(const, 2) == pytest.approx(0.005, rel=1e-4)
    assert _lr(const, 4) == pytest.approx(0.01, rel=1e-4) and _lr(const, 99) == pytest.approx(0.01, rel=1e-4)
    assert training.make_lr_schedule(load_config(None, ["training.lr_schedule=constant"]), 100) == 1e-3
    plain_cosine = training.make_lr_schedule(load_config(None, []), total_steps=100)
    assert _lr(plain_cosine, 0) == pytest.approx(1e-3, rel=1e-5) and _lr(plain_cosine, 100) == pytest.approx(0.0)


def test_build_model_uses_data_and_restores_precision_policy(burgers_file):
    data = training.prepare_data(tiny_cfg(burgers_file), splits=("train", "test"), progress=False)
    before = keras.mixed_precision.global_policy().name
    model = training.build_model(tiny_cfg(burgers_file, "training.amp=mixed_bfloat16"), data)
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before  # nothing leaks into later models
    assert model.field_mean == pytest.approx(data.field_mean) and model.field_std == pytest.approx(data.field_std)
    assert model.dt == pytest.approx(data.dt) and model.grid_shape == (32,)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    fp16 = training.build_model(tiny_cfg(burgers_file, "training.amp=true"), data)
    assert isinstance(fp16.optimizer, keras.optimizers.LossScaleOptimizer)  # loss scaling under float16
    assert keras.mixed_precision.global_policy().name == before
    # Same seed, same initial weights.
    a = training.build_model(tiny_cfg(burgers_file), data)
    b = training.build_model(tiny_cfg(burgers_file), data)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(wa), keras.ops.convert_to_numpy(wb))


def test_rollout_loss_steps_give_k_step_targets_and_a_k_step_model(burgers_file):
    cfg = tiny_cfg(burgers_file, "training.rollout_loss_steps=3")
    data = training.prepare_data(cfg, splits=("train", "val", "test"), progress=False)
    x, y = data.train[0]
    assert y.shape == x.shape[:1] + (3,) + x.shape[1:]
    # validation and test stay one-step: validation watches the one-step forward loss
    assert data.val[0][1].shape == data.val[0][0].shape and data.test[0][1].shape == data.test[0][0].shape
    traj, t0 = data.train.pairs[data.train._order[0]]
    np.testing.assert_array_equal(y[0, 2], data.train.trajectories[traj, t0 + 3])
    model = training.build_model(cfg, data)
    assert model.objective.rollout_loss_steps == 3
    history = model.fit(data.train, validation_data=data.val, epochs=1, verbose=0).history
    assert np.isfinite(history["rollout_loss"][0]) and np.isfinite(history["val_rollout_loss"][0])
    with pytest.raises(ConfigError, match=r"rollout_loss_steps=11 .* 12 frames, .* has 11"):
        training.prepare_data(tiny_cfg(burgers_file, "training.rollout_loss_steps=11"), progress=False)


@pytest.mark.skipif(BACKEND != "torch", reason="JAX and TensorFlow run data_parallel in-process (test_distribute.py)")
def test_build_model_rejects_data_parallel_on_torch(burgers_file):
    data = training.prepare_data(tiny_cfg(burgers_file), splits=("train", "test"), progress=False)
    with pytest.raises(ConfigError, match="torchrun"):  # no in-process multi-device engine on torch
        training.build_model(tiny_cfg(burgers_file, "training.distribution=data_parallel"), data)


# ------------------------------------------------------------------------------------------------------------ callbacks


def test_make_callbacks_watch_the_forward_loss(tmp_path, burgers_file):
    cfg = tiny_cfg(burgers_file, "training.early_stopping_patience=3", "training.time_budget_seconds=60")
    data = training.prepare_data(cfg, splits=("train", "val"), progress=False)
    cbs = {type(c).__name__: c for c in training.make_callbacks(cfg, tmp_path, data=data)}
    assert {"RunCheckpoint", "InverseLossCurriculum", "TimeBudget", "Validation", "EarlyStoppingOnValidation",
            "StepLog", "CSVLogger"} <= set(cbs)
    assert "TensorBoard" not in cbs and "ModelCheckpoint" not in cbs
    # never the total loss with its ramping terms
    assert cbs["EarlyStoppingOnValidation"].monitor == "val_forward_loss"
    assert cbs["Validation"].best_path == str(tmp_path / "model.keras") and cbs["Validation"].terms == "forward"
    assert cbs["RunCheckpoint"].backup_dir == str(tmp_path / "backup") and cbs["RunCheckpoint"].every_steps == 50
    assert cbs["CSVLogger"].filename == str(tmp_path / "history.csv") and not cbs["CSVLogger"].append
    assert cbs["InverseLossCurriculum"].warmup_epochs == 1
    no_val = {type(c).__name__: c for c in training.make_callbacks(
        tiny_cfg(burgers_file, "training.use_inverse_losses=false", "training.early_stopping_patience=2"),
        tmp_path, has_validation=False, resume=True)}
    assert "InverseLossCurriculum" not in no_val and "TimeBudget" not in no_val and "Validation" not in no_val
    assert no_val["ModelCheckpoint"].monitor == "forward_loss" and no_val["ModelCheckpoint"].save_best_only
    assert no_val["EarlyStoppingOnValidation"].monitor == "forward_loss" and no_val["CSVLogger"].append


def test_time_budget_stops_training_mid_epoch():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    budget = training.TimeBudget(1e-6)
    x = np.zeros((64, 4), "float32")
    history = model.fit(x, x[:, :1], batch_size=8, epochs=5, verbose=0, callbacks=[budget])
    assert len(history.history["loss"]) == 1 and budget.stopped_epoch == 0
    with pytest.raises(ValueError):
        training.TimeBudget(0)


# ------------------------------------------------------------------------------------------------------------ evaluation


class IdentityModel:
    """Predicts u_{t+k} = u_t, like the identity baseline."""

    def predict(self, x, batch_size=None, verbose=0):
        return np.array(x, copy=True)

    def rollout(self, x0, num_steps, mode="latent"):
        return np.repeat(np.asarray(x0)[:, None], num_steps, axis=1)


def test_identity_model_scores_exactly_the_identity_baseline(offset_file, tmp_path):
    cfg = tiny_cfg(offset_file, "data.test_fraction=0.3", "data.rollout_steps=3")
    data = training.prepare_data(cfg, progress=False)
    metrics = evaluation.evaluate(IdentityModel(), data, run_dir=tmp_path, plots=False)
    assert metrics["one_step"]["model"] == metrics["one_step"]["identity"]
    for mode in ("latent", "physical"):
        assert metrics["rollout"][mode]["nrmse_per_step"] == metrics["rollout"]["identity"]["nrmse_per_step"]
    # ... and that number is the identity error of the raw file values (physical units, not normalised ones).
    with open_trajectories(offset_file) as store:
        u = store.read([0, 1, 2])
    expected = all_metrics(u[:, :-1].reshape(-1, 32, 1), u[:, 1:].reshape(-1, 32, 1))
    assert metrics["one_step"]["identity"]["nrmse"] == pytest.approx(expected["nrmse"], rel=1e-6)
    assert metrics["one_step"]["identity"]["rmse"] == pytest.approx(expected["rmse"], rel=1e-6)
    assert metrics["rollout"]["identity"]["nrmse_per_step"][2] == pytest.approx(nrmse(u[:, 0], u[:, 3]), rel=1e-6)
    assert (tmp_path / "metrics.json").exists()


def test_upt_predictions_are_compared_in_physical_units(offset_file):
    cfg = tiny_cfg(offset_file, "data.test_fraction=0.3", "data.rollout_steps=3")
    data = training.prepare_data(cfg, progress=False)
    assert data.field_mean[0] == pytest.approx(3.0, abs=0.05) and data.field_std[0] < 0.5
    model = training.build_model(cfg, data)
    result = evaluation.one_step_metrics(model, data.test)
    x, y = evaluation.collect_pairs(data.test)
    pred = np.asarray(model.predict(x, verbose=0))
    assert result["model"]["nrmse"] == pytest.approx(nrmse(pred, y), rel=1e-5)
    # An untrained model is off by about its output scale times std (< 0.5 here) around the mean 3: nRMSE well
    # below 1. Predictions left in normalised units (around 0) would score about 1.
    assert abs(pred.mean() - 3.0) < 1.0
    assert result["model"]["nrmse"] < 0.4


def test_rollouts_run_without_gradient_tracking(offset_file):
    """Eager torch calls record autograd graphs: a default-size rollout held ~11 GB until this was switched off."""
    seen = []

    class Recorder(IdentityModel):
        def rollout(self, x0, num_steps, mode="latent"):
            if BACKEND == "torch":
                import torch

                seen.append(torch.is_grad_enabled())
            return super().rollout(x0, num_steps, mode)

    data = training.prepare_data(tiny_cfg(offset_file, "data.test_fraction=0.3", "data.rollout_steps=3"),
                                 splits=("rollout",), progress=False)
    evaluation.rollout_metrics(Recorder(), data.rollout)
    assert seen == ([False, False] if BACKEND == "torch" else [])


# ------------------------------------------------------------------------------------------------------------ accuracy levers


def test_accuracy_keys_reach_the_model(burgers_file):
    data = training.prepare_data(tiny_cfg(burgers_file), splits=("train", "test"), progress=False)
    cfg = tiny_cfg(burgers_file, "model.pooling=average", "model.decoder_locality=true",
                   "model.approximator_zero_init=true", "training.lambda_latent_consistency=0.25", "model.residual=true")
    model = training.build_model(cfg, data)
    assert model.decoder.locality and model.approximator.zero_init and model.residual
    assert model.objective.lambda_latent_consistency == 0.25
    plain = training.build_model(tiny_cfg(burgers_file), data)
    assert not plain.decoder.locality and not plain.approximator.zero_init and not plain.residual
    assert plain.objective.lambda_latent_consistency == 0.0
    with pytest.raises(ConfigError, match="lambda_latent_consistency"):
        tiny_cfg(burgers_file, "training.lambda_latent_consistency=-1")


def test_a_time_budget_gives_the_cosine_to_the_clock(burgers_file, tmp_path, monkeypatch):
    """With a budget the learning rate follows the budget's clock (`BudgetSchedule` on a constant-rate optimizer);
    without one the cosine is a schedule over the configured epochs."""
    from upt_keras.training import pipeline

    made = []

    class Spy(training.BudgetSchedule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(pipeline, "BudgetSchedule", Spy)
    from upt_keras import evaluation

    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: {})  # not what is tested here (and slow)
    cfg = tiny_cfg(burgers_file, "training.epochs=1", "training.time_budget_seconds=5000", "output.plots=false")
    model, _, _ = training.train(cfg, run_dir=str(tmp_path / "run"), verbose=0)
    (schedule,) = made
    steps = len(schedule.rates)
    assert steps > 2 and schedule.max_steps == steps  # one epoch; its steps end the decay before the clock does
    assert not isinstance(model.optimizer.learning_rate, keras.optimizers.schedules.LearningRateSchedule)
    rates = [r[2] for r in schedule.rates]
    assert rates[0] == pytest.approx(cfg.training.learning_rate) and rates == sorted(rates, reverse=True)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(rates[-1])
    made.clear()
    cfg = tiny_cfg(burgers_file, "training.epochs=1", "output.plots=false")  # no budget: the configured epochs
    epochs = []  # and the caller's own callbacks run too
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))
    model, _, _ = training.train(cfg, run_dir=str(tmp_path / "run2"), verbose=0, callbacks=[recorder])
    assert not made and epochs == [0]
    assert isinstance(model.optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule)


def test_latent_consistency_steps_give_k_step_targets(burgers_file):
    cfg = tiny_cfg(burgers_file, "training.lambda_latent_consistency=1", "training.latent_consistency_steps=3")
    data = training.prepare_data(cfg, splits=("train", "val", "test"), progress=False)
    x, y = data.train[0]
    assert y.shape == (x.shape[0], 3) + x.shape[1:]
    model = training.build_model(cfg, data)
    assert model.objective.target_steps == 3 and model.objective.rollout_loss_steps == 1
    with pytest.raises(ConfigError, match="latent_consistency_steps=20"):
        training.prepare_data(tiny_cfg(burgers_file, "training.latent_consistency_steps=20"), progress=False)
