"""Training: inverse losses train the encoder and decoder, frequency gating, curriculum, logging."""

import numpy as np
import pytest

import keras

from conftest import BACKEND, FEW_STEPS, tiny_upt, to_numpy, wave_pairs
from upt_keras import InverseLossCurriculum, curriculum_weight


def _changed(weights, before):
    return [not np.array_equal(b, to_numpy(w)) for w, b in zip(weights, before)]


def _snapshot(layer):
    return [to_numpy(w).copy() for w in layer.trainable_weights]


@pytest.mark.parametrize("term", ["inv_enc", "inv_dec"])
def test_inverse_terms_alone_train_encoder_and_decoder(term):
    """Forward term off, one inverse term on: one step moves the encoder AND the decoder."""
    model = tiny_upt(
        (32,), use_inverse_losses=True, forward_loss_weight=0.0,
        lambda_inv_enc=1.0 if term == "inv_enc" else 0.0, lambda_inv_dec=1.0 if term == "inv_dec" else 0.0,
    )
    x, y = wave_pairs(4)
    model.compile(optimizer=keras.optimizers.SGD(0.1), **FEW_STEPS)
    parts = {name: getattr(model, name) for name in ("encoder", "approximator", "decoder")}
    before = {name: _snapshot(layer) for name, layer in parts.items()}
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    moved = {name: _changed(layer.trainable_weights, before[name]) for name, layer in parts.items()}
    assert all(moved["encoder"]), "every encoder weight must receive a gradient"
    assert all(moved["decoder"]), "every decoder weight must receive a gradient"
    if term == "inv_enc":  # decode(encode(u_t)) never touches the approximator
        assert not any(moved["approximator"])
    else:  # encode(decode(z_{t+1})) reaches it through z_{t+1}
        assert any(moved["approximator"])


def test_without_forward_and_weights_zero_nothing_moves():
    model = tiny_upt((32,), use_inverse_losses=True, forward_loss_weight=0.0, lambda_inv_enc=0.0, lambda_inv_dec=0.0)
    x, y = wave_pairs(4)
    model.compile(optimizer=keras.optimizers.SGD(0.1), **FEW_STEPS)
    before = _snapshot(model)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert not any(_changed(model.trainable_weights, before))


def _count_calls(model):
    counts = {"encode": 0, "decode": 0}
    for name in counts:
        original = getattr(model, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        setattr(model, name, counted)
    return counts


@pytest.mark.skipif(BACKEND == "jax", reason="jax.lax.cond traces both branches, so Python call counts "
                    "cannot tell which branch ran; the JAX off-step cost is measured in benchmarks/")
@pytest.mark.parametrize("use_inverse,frequency,weights,expected", [
    (False, 1, (0.01, 0.01), (4, 4)),   # forward only: one encode + one decode (at the Q points) per step
    (True, 2, (0.01, 0.01), (6, 8)),    # inverse on steps 0 and 2: +1 encode +2 decodes (at Q, full grid) on each
    (True, 1, (0.01, 0.01), (8, 12)),   # inverse every step
    (True, 1, (0.0, 0.0), (4, 4)),      # weights 0 (curriculum warm-up): inverse terms not computed
    (True, 1, (0.01, 0.0), (4, 8)),     # inverse decoding's weight 0: its decode and re-encoding are not computed
])
def test_inverse_terms_do_not_run_on_off_steps(use_inverse, frequency, weights, expected):
    model = tiny_upt((32,), use_inverse_losses=use_inverse, inverse_loss_frequency=frequency,
                     lambda_inv_enc=weights[0], lambda_inv_dec=weights[1], num_queries=8)
    x, y = wave_pairs(8)
    model.compile(optimizer="adam", run_eagerly=True)
    counts = _count_calls(model)
    seen = {}

    class Baseline(keras.callbacks.Callback):  # Keras may trace the model once before training starts
        def on_train_begin(self, logs=None):
            seen.update(counts)

    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[Baseline()])  # 4 steps
    assert {k: counts[k] - seen[k] for k in counts} == {"encode": expected[0], "decode": expected[1]}
    assert int(to_numpy(model.objective.train_step_counter)) == 4


def test_frequency_gating_in_compiled_steps():
    """Inverse terms enter the loss on exactly every k-th step, also inside compiled steps."""
    model = tiny_upt((32,), use_inverse_losses=True, inverse_loss_frequency=3, num_queries=8)
    x, y = wave_pairs(12)
    model.compile(optimizer="adam")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)  # 6 steps: on at 0 and 3
    model2 = tiny_upt((32,), use_inverse_losses=True, inverse_loss_frequency=3, num_queries=8)
    # the inverse trackers average over on-steps only: compare with the per-step values
    steps = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append((float(logs["loss"]), float(logs["forward_loss"]), float(logs["inv_enc_loss"])))

    model2.compile(optimizer="adam")
    model2.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[Record()])
    assert int(to_numpy(model.objective.train_step_counter)) == 6
    assert history.history["inv_enc_loss"][0] > 0
    # running means of inv_enc only change on steps 0 and 3
    enc = [s[2] for s in steps]
    assert enc[1] == enc[0] and enc[2] == enc[0] and enc[3] != enc[0] and enc[4] == enc[3] and enc[5] == enc[3]


def test_logs_every_component_and_validation_uses_all_points():
    model = tiny_upt((32,), use_inverse_losses=True, num_queries=8, query_strategy="stratified",
                     field_mean=[0.1], field_std=[2.0])
    x, y = wave_pairs(8)
    model.compile(optimizer="adam")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x, y))
    for key in ("loss", "forward_loss", "inv_enc_loss", "inv_dec_loss", "lambda_inv_enc", "lambda_inv_dec",
                "val_loss", "val_forward_loss", "val_inv_enc_loss", "val_inv_dec_loss"):
        assert key in history.history, key
    assert history.history["lambda_inv_enc"][0] == pytest.approx(0.01)
    # validation forward loss = normalised MSE over all N points (not Q)
    pred = model.predict(x, verbose=0)
    expected = np.mean(((pred - y) / 2.0) ** 2)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["forward_loss"] == pytest.approx(expected, rel=1e-4)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)


def test_query_indices_change_every_compiled_step():
    model = tiny_upt((32,), num_queries=8, seed=5)
    state = to_numpy(model.objective.query_sampler.seed_generator.state).copy()
    x, y = wave_pairs(8)
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert not np.array_equal(state, to_numpy(model.objective.query_sampler.seed_generator.state))


@pytest.fixture(scope="module")
def curriculum_model():
    """One compiled model for every schedule below: Keras keeps its compiled training step across `fit` calls."""
    model = tiny_upt((32,), use_inverse_losses=True)
    model.compile(optimizer="adam")
    return model


@pytest.mark.parametrize("warmup,ramp,base,cap", [(1, 2, 0.02, 0.05), (2, None, 0.2, 0.05), (0, 0, 0.03, 0.05)])
def test_curriculum_schedule_is_what_training_sees(curriculum_model, warmup, ramp, base, cap):
    model = curriculum_model
    model.objective.lambda_inv_enc, model.objective.lambda_inv_dec = base, base / 2  # the base weights the curriculum schedules
    x, y = wave_pairs(4)
    epochs = 5
    history = model.fit(x, y, batch_size=4, epochs=epochs, verbose=0,
                        callbacks=[InverseLossCurriculum(warmup_epochs=warmup, ramp_epochs=ramp, max_weight=cap)])
    expected_enc = [curriculum_weight(e, base, warmup, ramp, cap) for e in range(epochs)]
    expected_dec = [curriculum_weight(e, base / 2, warmup, ramp, cap) for e in range(epochs)]
    np.testing.assert_allclose(history.history["lambda_inv_enc"], expected_enc, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(history.history["lambda_inv_dec"], expected_dec, rtol=1e-6, atol=1e-9)
    # inverse terms were computed exactly in the epochs whose weight is positive
    computed = [v > 0 for v in history.history["inv_enc_loss"]]
    assert computed == [w > 0 for w in expected_enc]


def test_curriculum_weight_table():
    w = [curriculum_weight(e, 0.01, 5) for e in range(12)]
    np.testing.assert_allclose(w, [0, 0, 0, 0, 0, 0, 0.002, 0.004, 0.006, 0.008, 0.01, 0.01], atol=1e-12)
    assert curriculum_weight(20, 0.3, 5, max_weight=0.05) == 0.05
    assert curriculum_weight(3, 0.01, 3, ramp_epochs=0) == 0.01
    with pytest.raises(ValueError, match="warmup_epochs must be >= 0"):
        InverseLossCurriculum(warmup_epochs=-1)


def test_jit_compiled_training_runs():
    model = tiny_upt((16, 8), use_inverse_losses=True, inverse_loss_frequency=2, num_queries=32,
                     query_strategy="stratified")
    x = np.random.default_rng(0).normal(size=(8, 16, 8, 1)).astype("float32")
    # torch: jit_compile=True means torch.compile, which Keras does not support for every model
    model.compile(optimizer="adam", jit_compile=BACKEND != "torch")
    history = model.fit(x, x, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_inverse_losses_make_the_model_reconstruct_its_input():
    """Trained with inverse losses, decode(encode(u)) reproduces u far better than without them."""
    x, y = wave_pairs(64, seed=0)
    errors = {}
    for use_inverse in (False, True):
        model = tiny_upt((32,), use_inverse_losses=use_inverse, lambda_inv_enc=1.0, lambda_inv_dec=0.1)
        model.compile(optimizer=keras.optimizers.Adam(2e-3))
        model.fit(x, y, batch_size=16, epochs=40, verbose=0)
        errors[use_inverse] = model.objective.inverse_losses(model, x)["inv_enc_loss"]
    assert errors[True] * 1.5 < errors[False], errors


def _k_step_targets(x, steps):
    """Targets u_{t+1..t+K} of the shift map of `wave_pairs`: (B, K, N, C)."""
    return np.stack([np.roll(x, k, axis=1) for k in range(1, steps + 1)], axis=1)


def test_rollout_loss_is_the_mean_over_latent_steps():
    """K-step targets: the forward term averages MSE(decode(step^k(z_t)), u_{t+k}) over k = 1..K."""
    model = tiny_upt((32,), rollout_loss_steps=3, field_mean=[0.1], field_std=[0.7])
    x, _ = wave_pairs(4)
    y = _k_step_targets(x, 3)
    loss = float(to_numpy(model.compute_loss(x, y, model(x, training=True), training=True)))
    z, per_step = model.encode(x), []
    for k in range(3):
        z = model.step(z)
        per_step.append(np.mean(((to_numpy(model.decode(z)) - y[:, k]) / 0.7) ** 2))
    assert loss == pytest.approx(np.mean(per_step), rel=1e-5)
    assert abs(per_step[0] - np.mean(per_step)) > 1e-3 * per_step[0]  # the later steps do count
    assert float(to_numpy(model.objective.trackers["forward"].result())) == pytest.approx(per_step[0], rel=1e-5)
    assert float(to_numpy(model.objective.trackers["rollout"].result())) == pytest.approx(np.mean(per_step[1:]), rel=1e-5)
    assert type(model).from_config(model.get_config()).objective.rollout_loss_steps == 3


def test_rollout_loss_trains_with_inverse_losses_and_logs_both():
    model = tiny_upt((32,), rollout_loss_steps=2, use_inverse_losses=True, num_queries=12,
                     query_strategy="stratified", seed=0)
    x, _ = wave_pairs(8)
    y = _k_step_targets(x, 2)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(x, y, batch_size=4, epochs=3, validation_data=(x, y), verbose=0).history
    for key in ("forward_loss", "rollout_loss", "inv_enc_loss", "inv_dec_loss", "val_forward_loss",
                "val_rollout_loss"):
        assert np.all(np.isfinite(history[key])) and history[key][-1] > 0, key
    assert history["rollout_loss"][-1] < history["rollout_loss"][0]
    # One-step targets still evaluate (the rollout term is then not reported). TensorFlow would retrace the compiled
    # evaluation step with targets of unknown rank: a new compile starts a fresh one.
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    assert np.isfinite(model.evaluate(x, y[:, 0], verbose=0, return_dict=True)["forward_loss"])
    with pytest.raises(ValueError, match=r"rollout_loss_steps=2.*\(B, 2, \*\(32,\), 1\)"):
        model.compute_loss(x, _k_step_targets(x, 3), model(x, training=True), training=True)
