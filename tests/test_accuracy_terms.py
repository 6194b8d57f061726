"""The accuracy levers: decoder locality bias, zero-initialised approximator, latent consistency, budget-fitted schedule."""

import numpy as np
import pytest

import keras
from keras import ops

from conftest import FEW_STEPS, tiny_upt, to_numpy, wave_pairs
from upt_keras.layers import AnyPointDecoder, GridEncoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _snapshot(layer):
    return [to_numpy(w).copy() for w in layer.trainable_weights]


def _moved(layer, before):
    return [not np.array_equal(b, to_numpy(w)) for w, b in zip(layer.trainable_weights, before)]


# ----------------------------------------------------------------- decoder locality
def test_average_pooling_tokens_sit_at_their_patch_centres():
    enc = GridEncoder((16,), 1, patch_size=4, dim=8, num_heads=2, num_latent_tokens=2, latent_dim=8,
                      pooling="average")
    # patches start at 0, 4, 8, 12 (of 16); centres 1.5/16 ...; token 0 averages patches 0 and 1
    np.testing.assert_allclose(enc.token_positions[:, 0], [(1.5 + 5.5) / 32, (9.5 + 13.5) / 32], atol=1e-7)
    perceiver = GridEncoder((16,), 1, patch_size=4, dim=8, num_heads=2, num_latent_tokens=2, latent_dim=8)
    assert perceiver.token_positions is None


def test_locality_bias_prefers_near_tokens_and_keeps_queries_independent():
    dec = AnyPointDecoder(1, 1, width=16, depth=2, num_heads=4, mlp_dim=16, locality=True)
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2, 8, 12)).astype("float32")
    positions = (np.arange(8, dtype="float32")[:, None] + 0.5) / 8
    coords = rng.random((50, 1)).astype("float32")
    with_bias = to_numpy(dec(latent, coords, positions))  # builds the layer
    bias = to_numpy(dec.locality_bias(ops.convert_to_tensor(coords[None]), positions))
    assert bias.shape == (1, 4, 50, 8)
    nearest = np.argmin(np.abs(coords[:, 0:1] - positions[:, 0][None]), axis=1)
    # head 0 (the most local) gives its largest logit to the nearest token, for every query
    np.testing.assert_array_equal(np.argmax(bias[0, 0], axis=-1), nearest)
    assert np.all(bias <= 0)
    # the bias changes the output, and a query decodes alone as it does among many
    assert not np.allclose(with_bias, to_numpy(dec(latent, coords)), atol=1e-4)
    alone = to_numpy(dec(latent, coords[7:8], positions))
    np.testing.assert_allclose(alone[:, 0], with_bias[:, 7], rtol=1e-5, atol=1e-5)
    # coordinates shared by the batch (query embedding and bias computed once) decode as per-sample coordinates do
    per_sample = to_numpy(dec(latent, np.broadcast_to(coords, (2,) + coords.shape).copy(), positions))
    np.testing.assert_allclose(per_sample, with_bias, rtol=1e-5, atol=1e-6)


def test_locality_bias_is_floored_far_away():
    """Far tokens get the floor, not ever-larger negative logits (which push the softmax into subnormal floats)."""
    from upt_keras.layers.locality import LOCALITY_BIAS_FLOOR, locality_bias

    positions = (np.arange(64, dtype="float32")[:, None] + 0.5) / 64
    queries = np.linspace(0, 1, 256, endpoint=False, dtype="float32")[:, None]
    log_scale = np.log(np.array([1.0, 0.25, 1 / 16, 1 / 64], "float32"))
    bias = to_numpy(locality_bias(queries, positions, log_scale, 64.0 ** -2))  # (4, 256, 64)
    exact = -((queries - positions[:, 0][None]) ** 2) * 64.0 ** 2 * np.exp(log_scale)[:, None, None]
    assert exact.min() < 10 * LOCALITY_BIAS_FLOOR  # unfloored, the most local head reaches about -4000
    np.testing.assert_allclose(bias, np.maximum(exact, LOCALITY_BIAS_FLOOR), rtol=1e-5, atol=1e-5)
    assert bias.min() == LOCALITY_BIAS_FLOOR


def test_locality_scales_are_trained_and_saved(tmp_path):
    model = tiny_upt((32,), pooling="average", decoder_locality=True)
    assert model.decoder.locality and model._token_positions is not None
    x, y = wave_pairs(4)
    model.compile(optimizer=keras.optimizers.SGD(0.5), **FEW_STEPS)
    before = to_numpy(model.decoder.locality_log_scale).copy()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert not np.array_equal(before, to_numpy(model.decoder.locality_log_scale))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.decoder.locality
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- zero-initialised approximator
def test_zero_init_approximator_starts_as_identity_then_learns():
    model = tiny_upt((32,), approximator_zero_init=True)
    x, y = wave_pairs(4)
    z = model.encode(x)
    np.testing.assert_array_equal(to_numpy(model.step(z)), to_numpy(z))
    # so the untrained one-step prediction is the reconstruction decode(encode(u_t))
    np.testing.assert_allclose(to_numpy(model(x)), to_numpy(model.decode(z)), rtol=1e-6, atol=1e-6)
    model.compile(optimizer=keras.optimizers.SGD(0.5), **FEW_STEPS)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    z = model.encode(x)
    assert not np.allclose(to_numpy(model.step(z)), to_numpy(z))
    plain = tiny_upt((32,))
    zp = plain.encode(x)
    assert not np.allclose(to_numpy(plain.step(zp)), to_numpy(zp))


# ----------------------------------------------------------------- latent consistency
def test_consistency_term_matches_hand_computation():
    model = tiny_upt((32,), lambda_latent_consistency=0.5)
    x, y = wave_pairs(4)
    model.compile(optimizer="adam")
    z = model.encode(x)
    z_next = model.step(z)
    target = to_numpy(model.encode(y))
    expected = np.mean((to_numpy(z_next) - target) ** 2) / np.mean(target ** 2)
    forward = np.mean((to_numpy(model.decode(z_next)) - y) ** 2)  # field_std 1: normalised = physical
    got = model.compute_loss(x, y, {"z": z, "z_next": z_next}, training=True)
    np.testing.assert_allclose(to_numpy(model.objective.consistency(model, z, z_next, y)), expected, rtol=1e-5)
    # a step that lands on the encoding of the true next frame scores 0
    assert float(to_numpy(model.objective.consistency(model, z, model.encode(y), y))) < 1e-10
    np.testing.assert_allclose(to_numpy(got), forward + 0.5 * expected, rtol=1e-4)
    assert "consistency_loss" in [m.name for m in model.metrics]


def test_consistency_alone_trains_approximator_and_encoder_not_decoder():
    """Forward term off, consistency on: the approximator and the encoder move (through z_t), the decoder does not."""
    model = tiny_upt((32,), forward_loss_weight=0.0, lambda_latent_consistency=1.0)
    x, y = wave_pairs(4)
    model.compile(optimizer=keras.optimizers.SGD(0.1), **FEW_STEPS)
    parts = {name: getattr(model, name) for name in ("encoder", "approximator", "decoder")}
    before = {name: _snapshot(layer) for name, layer in parts.items()}
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    moved = {name: _moved(layer, before[name]) for name, layer in parts.items()}
    assert all(moved["approximator"])
    assert any(moved["encoder"])
    assert not any(moved["decoder"])
    assert history.history["consistency_loss"][0] > 0


def test_consistency_off_adds_nothing():
    model = tiny_upt((32,))
    x, y = wave_pairs(4)
    model.compile(optimizer="adam")
    z = model.encode(x)
    z_next = model.step(z)
    got = model.compute_loss(x, y, {"z": z, "z_next": z_next}, training=True)
    np.testing.assert_allclose(to_numpy(got), np.mean((to_numpy(model.decode(z_next)) - y) ** 2), rtol=1e-5)
    assert "consistency_loss" not in [m.name for m in model.metrics]


def test_consistency_brings_latent_rollouts_onto_the_encoder():
    """Trained with the consistency term, step(encode(u_t)) lands nearer encode(u_t+1) than without it."""
    x, y = wave_pairs(32)
    gaps = {}
    for weight in (0.0, 1.0):
        model = tiny_upt((32,), lambda_latent_consistency=weight, approximator_zero_init=True, init_seed=1)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        model.fit(x, y, batch_size=8, epochs=15, verbose=0)
        z = model.encode(x)
        gaps[weight] = float(to_numpy(model.objective.consistency(model, z, model.step(z), y)))
    assert gaps[1.0] < 0.5 * gaps[0.0], gaps


def test_step_norm_consistency_matches_hand_computation_and_scores_the_identity_one():
    """latent_consistency_norm="step": the error relative to the latent displacement encode(u_t+q) - z_t."""
    model = tiny_upt((32,), lambda_latent_consistency=1.0, latent_consistency_norm="step",
                     latent_consistency_steps=2)
    x, y1 = wave_pairs(4)
    y2 = np.roll(y1, 1, axis=1)
    z = model.encode(x)
    z1 = model.step(z)
    z2 = model.step(z1)
    zn = to_numpy(z)

    def rel(a, frame):
        t = to_numpy(model.encode(frame))
        return np.mean((to_numpy(a) - t) ** 2) / np.mean((t - zn) ** 2)

    got = to_numpy(model.objective.consistency(model, z, z1, y1, [y2]))
    np.testing.assert_allclose(got, 0.5 * (rel(z1, y1) + rel(z2, y2)), rtol=1e-5)
    # an approximator that does not move (zero-initialised) scores exactly 1; under "latent" it scores far less
    still = tiny_upt((32,), lambda_latent_consistency=1.0, latent_consistency_norm="step", approximator_zero_init=True)
    zs = still.encode(x)
    np.testing.assert_allclose(to_numpy(still.objective.consistency(still, zs, still.step(zs), y1)), 1.0, rtol=1e-5)
    still.objective.latent_consistency_norm = "latent"
    assert float(to_numpy(still.objective.consistency(still, zs, still.step(zs), y1))) < 0.5


def test_step_norm_consistency_trains_the_approximator_alone_toward_the_next_latent():
    """With the consistency term alone (forward weight 0): under "step" it moves step(z_t) toward encode(u_t+1) by
    training the approximator only (encoder and decoder untouched), well below the identity's score of 1; under
    "latent" its gradient also reaches the encoder and, measured the same way, it moves the step far less."""
    x, y = wave_pairs(32)
    gaps = {}
    for norm in ("latent", "step"):
        model = tiny_upt((32,), forward_loss_weight=0.0, lambda_latent_consistency=1.0, latent_consistency_norm=norm,
                         approximator_zero_init=True, init_seed=1)
        before = {part: _snapshot(getattr(model, part)) for part in ("encoder", "approximator", "decoder")}
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        model.fit(x, y, batch_size=8, epochs=20, verbose=0)
        moved = {part: any(_moved(getattr(model, part), before[part])) for part in before}
        assert moved["approximator"] and not moved["decoder"], (norm, moved)
        assert moved["encoder"] == (norm == "latent"), (norm, moved)
        z = model.encode(x)
        model.objective.latent_consistency_norm = "step"  # measure both the same way
        gaps[norm] = float(to_numpy(model.objective.consistency(model, z, model.step(z), y)))
    assert gaps["step"] < 0.85 and gaps["step"] < 0.85 * gaps["latent"], gaps


def test_bad_consistency_norm():
    with pytest.raises(ValueError, match="latent_consistency_norm"):
        tiny_upt((32,), latent_consistency_norm="batch")


def test_bad_consistency_weight():
    with pytest.raises(ValueError, match="lambda_latent_consistency"):
        tiny_upt((32,), lambda_latent_consistency=-1.0)


def test_multi_step_consistency_matches_hand_computation():
    """M = 2: the mean of the q = 1 and q = 2 terms, with targets (B, 2, *grid, C); the forward loss stays one-step."""
    model = tiny_upt((32,), lambda_latent_consistency=1.0, latent_consistency_steps=2)
    assert model.objective.target_steps == 2
    x, y1 = wave_pairs(4)
    y2 = np.roll(y1, 1, axis=1)
    y = np.stack([y1, y2], axis=1)
    model.compile(optimizer="adam")
    z = model.encode(x)
    z1 = model.step(z)
    z2 = model.step(z1)

    def rel(a, frame):
        t = to_numpy(model.encode(frame))
        return np.mean((to_numpy(a) - t) ** 2) / np.mean(t ** 2)

    expected = 0.5 * (rel(z1, y1) + rel(z2, y2))
    forward = np.mean((to_numpy(model.decode(z1)) - y1) ** 2)
    got = model.compute_loss(x, y, {"z": z, "z_next": z1}, training=True)
    np.testing.assert_allclose(to_numpy(got), forward + expected, rtol=1e-4)
    with pytest.raises(ValueError, match="latent_consistency_steps=2"):
        model.compute_loss(x, y1[:, None].repeat(3, axis=1), {"z": z, "z_next": z1}, training=True)


def test_multi_step_consistency_fits_through_the_pipeline():
    model = tiny_upt((32,), lambda_latent_consistency=1.0, latent_consistency_steps=3, rollout_loss_steps=2)
    x, y1 = wave_pairs(8)
    y = np.stack([np.roll(y1, k, axis=1) for k in range(3)], axis=1)
    model.compile(optimizer="adam")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x, y))
    for key in ("consistency_loss", "rollout_loss", "val_forward_loss"):
        assert np.isfinite(history.history[key][0]), key


# ----------------------------------------------------------------- latent noise
def test_latent_noise_perturbs_the_training_step_only():
    x, y = wave_pairs(4)
    noisy = tiny_upt((32,), latent_noise=0.1, seed=3)

    def training_pass(model):
        return model.objective.training_pass(model, x, y, model(x, training=True))

    z = to_numpy(noisy.encode(x))
    p = training_pass(noisy)
    np.testing.assert_allclose(to_numpy(p.z), z, rtol=1e-6, atol=1e-6)  # the clean latent is kept
    clean_next = to_numpy(noisy.step(p.z))
    gap = np.sqrt(np.mean((to_numpy(p.z_next) - clean_next) ** 2)) / np.sqrt(np.mean(z ** 2))
    assert 1e-3 < gap < 1.0
    again = training_pass(noisy)
    assert not np.allclose(to_numpy(again.z_next), to_numpy(p.z_next))  # fresh noise every step
    np.testing.assert_allclose(to_numpy(noisy(x)), to_numpy(noisy(x)))  # inference: no noise
    plain = tiny_upt((32,))
    p = training_pass(plain)
    np.testing.assert_allclose(to_numpy(p.z_next), to_numpy(plain.step(p.z)), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="latent_noise"):
        tiny_upt((32,), latent_noise=-0.1)


def test_latent_noise_trains_under_fit():
    model = tiny_upt((32,), latent_noise=0.05, lambda_latent_consistency=1.0, seed=0)
    x, y = wave_pairs(8)
    model.compile(optimizer="adam")
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["forward_loss"][1] < history.history["forward_loss"][0]


def test_consistency_frequency_adds_the_term_on_every_nth_step_only():
    """latent_consistency_frequency=2: the loss is forward + consistency on steps 0, 2, ... and forward alone on
    steps 1, 3, ...; the tracker averages the steps the term was on."""
    model = tiny_upt((32,), lambda_latent_consistency=1.0, latent_consistency_frequency=2)
    model.compile(optimizer="adam")
    x, y = wave_pairs(4)
    z = model.encode(x)
    z1 = model.step(z)
    forward = np.mean((to_numpy(model.decode(z1)) - y) ** 2)
    consistency = float(to_numpy(model.objective.consistency(model, z, z1, y)))
    assert consistency > 1e-4
    pred = {"z": z, "z_next": z1}
    losses = [float(to_numpy(model.compute_loss(x, y, pred, training=True))) for _ in range(3)]
    np.testing.assert_allclose(losses, [forward + consistency, forward, forward + consistency], rtol=1e-4)
    np.testing.assert_allclose(to_numpy(model.objective.trackers["consistency"].result()), consistency, rtol=1e-4)
    with pytest.raises(ValueError, match="latent_consistency_frequency"):
        tiny_upt((32,), latent_consistency_frequency=0)


def test_consistency_frequency_trains_through_fit():
    """The compiled step (a cond on the step counter on TF and JAX) runs, and the term alone, on every 2nd step,
    still moves step(z_t) toward encode(u_t+1) (the identity scores 1)."""
    x, y = wave_pairs(32)
    model = tiny_upt((32,), forward_loss_weight=0.0, lambda_latent_consistency=1.0, latent_consistency_norm="step",
                     latent_consistency_frequency=2, approximator_zero_init=True, init_seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, batch_size=8, epochs=40, verbose=0)
    z = model.encode(x)
    gap = float(to_numpy(model.objective.consistency(model, z, model.step(z), y)))
    assert gap < 0.9, gap  # the identity scores 1
    assert np.all(np.isfinite(history.history["consistency_loss"]))


def test_validation_reports_the_consistency_term():
    """val_consistency_loss is the term on the validation data (it used to read 0: never computed there)."""
    x, y = wave_pairs(8)
    model = tiny_upt((32,), lambda_latent_consistency=1.0, latent_consistency_norm="step")
    model.compile(optimizer="adam")
    result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    z = model.encode(x)
    expected = float(to_numpy(model.objective.consistency(model, z, model.step(z), y)))
    assert expected > 1e-4
    np.testing.assert_allclose(result["consistency_loss"], expected, rtol=1e-4)


def test_relative_forward_loss_matches_hand_computation():
    """forward_loss="relative": mean over samples and fields of ||pred - true|| / ||true|| (physical units), so a
    sample of small amplitude weighs as much as a large one; evaluation still reports the MSE."""
    model = tiny_upt((32,), forward_loss="relative", field_mean=[0.3], field_std=[2.0])
    model.compile(optimizer="adam")
    x, y = wave_pairs(4)
    y = y * np.array([1.0, 0.01, 1.0, 0.1], "float32")[:, None, None]  # two samples of small amplitude
    z = model.encode(x)
    z1 = model.step(z)
    pred = to_numpy(model.decode(z1))
    expected = np.mean(np.sqrt(np.sum((pred - y) ** 2, axis=1) / np.sum(y ** 2, axis=1)))
    got = to_numpy(model.compute_loss(x, y, {"z": z, "z_next": z1}, training=True))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    mse = np.mean(((pred - y) / 2.0) ** 2)
    assert abs(float(got) - mse) > 0.1 * mse
    result = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["forward_loss"], mse, rtol=1e-4)
    with pytest.raises(ValueError, match="forward_loss"):
        tiny_upt((32,), forward_loss="l1")


# ----------------------------------------------------------------- approximator locality
def test_approximator_locality_bias_prefers_near_tokens_and_starts_at_the_decoders_scales():
    from upt_keras.layers import Approximator

    approx = Approximator(8, width=16, depth=1, num_heads=4, locality=True)
    positions = (np.arange(8, dtype="float32")[:, None] + 0.5) / 8
    z = np.random.default_rng(0).normal(size=(2, 8, 8)).astype("float32")
    with_bias = to_numpy(approx(z, dt=0.1, positions=positions))  # builds the layer
    bias = to_numpy(approx.locality_bias(positions))  # (1, heads, T, T)
    assert bias.shape == (1, 4, 8, 8)
    # -s_h * (token distance in spacings)^2, s_h = 1, 1/4, 1/16, 1/64
    np.testing.assert_allclose(bias[0, :, 0, 1], [-1.0, -0.25, -1 / 16, -1 / 64], rtol=1e-5)
    np.testing.assert_allclose(bias[0, 0, 2, 5], -9.0, rtol=1e-5)
    assert np.all(np.diag(bias[0, 0]) == 0)
    without = to_numpy(approx(z, dt=0.1))
    assert not np.allclose(with_bias, without)  # the bias changes the attention
    config = approx.get_config()
    assert config["locality"] is True
    clone = Approximator.from_config(config)
    clone(z, dt=0.1, positions=positions)
    clone.set_weights(approx.get_weights())
    np.testing.assert_allclose(to_numpy(clone(z, dt=0.1, positions=positions)), with_bias, rtol=1e-5, atol=1e-6)


def test_model_steps_with_the_token_positions_and_the_bias_is_trained():
    """UPT.step hands the encoder's token positions to the approximator; the scales get gradients through fit."""
    model = tiny_upt((32,), pooling="average", approximator_locality=True)
    assert model.approximator.locality and model.encoder.token_positions is not None
    x, y = wave_pairs(8)
    z = model.encode(x)
    expected = to_numpy(model.approximator(z, dt=model.dt, positions=model.encoder.token_positions))
    np.testing.assert_allclose(to_numpy(model.step(z)), expected, rtol=1e-5, atol=1e-6)
    before = to_numpy(model.approximator.locality_log_scale).copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert not np.allclose(to_numpy(model.approximator.locality_log_scale), before)


# ----------------------------------------------------------------- residual decoding
def test_residual_model_starts_as_the_identity_everywhere():
    """Zero-initialised approximator + residual: one step, both rollouts and off-grid points return the input."""
    model = tiny_upt((32,), residual=True, approximator_zero_init=True)
    x, _ = wave_pairs(3)
    np.testing.assert_allclose(to_numpy(model(x)), x, atol=1e-5)
    for mode in ("latent", "physical"):
        np.testing.assert_allclose(model.rollout(x, 3, mode=mode), np.repeat(x[:, None], 3, axis=1), atol=1e-5)
    coords = np.array([[0.5 / 32], [31.5 / 32]], "float32")  # midpoints; the last wraps round to point 0
    expected = np.stack([(x[:, 0] + x[:, 1]) / 2, (x[:, 31] + x[:, 0]) / 2], axis=1)
    np.testing.assert_allclose(to_numpy(model(x, coords=coords)), expected, atol=1e-5)
    # without it, the untrained model predicts the (poor) reconstruction decode(encode(u_t))
    plain = tiny_upt((32,), approximator_zero_init=True)
    assert np.abs(to_numpy(plain(x)) - x).max() > 0.1


def test_residual_prediction_and_loss_match_hand_computation():
    model = tiny_upt((32,), residual=True)
    x, y = wave_pairs(4)
    model.compile(optimizer="adam")
    z = model.encode(x)
    z_next = model.step(z)
    pred = to_numpy(model.decode(z_next)) + x - to_numpy(model.decode(z))
    np.testing.assert_allclose(to_numpy(model(x)), pred, rtol=1e-5, atol=1e-5)
    got = model.compute_loss(x, y, {"z": z, "z_next": z_next}, training=True)
    np.testing.assert_allclose(to_numpy(got), np.mean((pred - y) ** 2), rtol=1e-4)  # field_std 1
    # with reconstruction (inverse encoding) its error is the correction's own: mean((u_t - decode(z_t))^2)
    recon = tiny_upt((32,), residual=True, use_inverse_losses=True, lambda_inv_enc=1.0, lambda_inv_dec=0.0)
    recon.compile(optimizer="adam")
    z, z_next = recon.encode(x), recon.step(recon.encode(x))
    decoded = to_numpy(recon.decode(z))
    pred = to_numpy(recon.decode(z_next)) + x - decoded
    got = recon.compute_loss(x, y, {"z": z, "z_next": z_next}, training=True)
    np.testing.assert_allclose(to_numpy(got), np.mean((pred - y) ** 2) + np.mean((x - decoded) ** 2), rtol=1e-4)
    # the latent rollout adds the start state's correction to every decoded frame
    z2 = model.step(z_next)
    expected = to_numpy(model.decode(z2)) + x - to_numpy(model.decode(z))
    np.testing.assert_allclose(model.rollout(x, 2)[:, 1], expected, rtol=1e-4, atol=1e-5)


def test_residual_model_trains_every_part_and_round_trips(tmp_path):
    model = tiny_upt((32,), residual=True, approximator_zero_init=True, num_queries=12)
    x, y = wave_pairs(8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **FEW_STEPS)
    parts = {name: getattr(model, name) for name in ("encoder", "approximator", "decoder")}
    before = {name: _snapshot(layer) for name, layer in parts.items()}
    start = float(model.evaluate(x, y, verbose=0)[0])
    model.fit(x, y, batch_size=8, epochs=12, verbose=0)  # full batches: steady descent from the identity
    for name, layer in parts.items():
        assert any(_moved(layer, before[name])), name
    assert float(model.evaluate(x, y, verbose=0)[0]) < start
    path = str(tmp_path / "residual.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.residual
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-5, atol=1e-5)


def _mls_reference(values, positions, queries, k, periodic):
    """Quadratic moving least squares in numpy, one query at a time (2D)."""
    out = np.zeros((values.shape[0], len(queries), values.shape[-1]))
    for b in range(values.shape[0]):
        for i, q in enumerate(queries):
            off = positions[b] - q
            off = off - np.round(off) if periodic else off
            d2 = (off ** 2).sum(-1)
            near = np.argsort(d2)[:k]
            h2 = d2[near].max()
            r = off[near] / np.sqrt(h2)
            w = 1.0 / (d2[near] / h2 + 1e-6) ** 2
            basis = np.stack([np.ones(k), r[:, 0], r[:, 1], r[:, 0] ** 2, r[:, 0] * r[:, 1], r[:, 1] ** 2], -1)
            coef = np.linalg.lstsq(basis * np.sqrt(w)[:, None], values[b][near] * np.sqrt(w)[:, None], rcond=None)[0]
            out[b, i] = coef[0]
    return out


def test_interpolation_from_points_is_quadratic_moving_least_squares():
    from upt_keras.layers import interpolate_from_points

    rng = np.random.default_rng(0)
    positions = rng.random((2, 60, 2)).astype("float32")
    values = rng.normal(size=(2, 60, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(interpolate_from_points(values, positions, positions)), values, atol=1e-4)
    queries = rng.random((9, 2)).astype("float32")
    for k, periodic in ((10, False), (12, True)):  # (the layer adds a 1e-8 ridge that the reference has not)
        got = to_numpy(interpolate_from_points(values, positions, queries, neighbours=k, periodic=periodic))
        np.testing.assert_allclose(got, _mls_reference(values, positions, queries, k, periodic), atol=1e-2)
    # quadratics are read back exactly (1D and 2D), which inverse-distance weighting does not do
    quad = lambda p: 1 + 2 * p[..., :1] - p[..., 1:] + 3 * p[..., :1] ** 2 - p[..., :1] * p[..., 1:]
    inner = (0.2 + 0.6 * rng.random((20, 2))).astype("float32")
    np.testing.assert_allclose(to_numpy(interpolate_from_points(quad(positions), positions, inner))[0],
                               quad(inner), atol=2e-3)
    line = rng.random((1, 30, 1)).astype("float32")
    np.testing.assert_allclose(to_numpy(interpolate_from_points(line ** 2, line, inner[:, :1], neighbours=5))[0],
                               inner[:, :1] ** 2, atol=2e-3)
    # periodic: a query at 0.01 reads points at 0.99 as its neighbours
    ring = np.array([[[0.9], [0.95], [0.99], [0.5], [0.3]]], "float32")
    got = to_numpy(interpolate_from_points(np.array([[[1.0], [1.0], [1.0], [5.0], [5.0]]], "float32"), ring,
                                           np.array([[0.01]], "float32"), neighbours=3, periodic=True))
    np.testing.assert_allclose(got, [[[1.0]]], atol=1e-3)


def _point_cloud(rng, batch=2, points=40):
    positions = rng.random((batch, points, 1)).astype("float32")
    fields = np.sin(2 * np.pi * positions) + 0.1 * rng.normal(size=positions.shape).astype("float32")
    return fields.astype("float32"), positions


def test_residual_point_cloud_model_adds_the_change_to_the_interpolated_start():
    """From scattered points: at them the untrained (zero-initialised) model is the identity; elsewhere it predicts
    `interp(u_t) + decode(z_next) - decode(z_t)`, `u_t` read from the `residual_neighbours` nearest points; the
    latent rollout adds the same start correction to every decoded frame."""
    from upt_keras import UPT
    from upt_keras.layers import interpolate_from_points

    rng = np.random.default_rng(1)
    fields, positions = _point_cloud(rng)
    model = UPT.from_preset("tiny", encoder="points", residual=True, approximator_zero_init=True)
    at_points = {"fields": fields, "positions": positions, "coords": positions}
    np.testing.assert_allclose(to_numpy(model(at_points)), fields, atol=1e-3)
    z = model.encode(fields, positions)
    model.approximator.set_weights([w + 0.05 for w in model.approximator.get_weights()])  # a non-trivial step
    z_next, z_2 = model.step(z), model.step(model.step(z))
    for k in (6, 12):
        model.residual_neighbours = k
        start = to_numpy(interpolate_from_points(fields, positions, model.grid_coords, neighbours=k, periodic=True))
        correction = start.reshape(2, 32, 1) - to_numpy(model.decode(z))
        expected = to_numpy(model.decode(z_next)) + correction
        np.testing.assert_allclose(to_numpy(model({"fields": fields, "positions": positions})), expected, atol=1e-4)
        rollout = model.rollout({"fields": fields, "positions": positions}, 2)
        np.testing.assert_allclose(rollout[:, 0], expected, atol=1e-4)
        np.testing.assert_allclose(rollout[:, 1], to_numpy(model.decode(z_2)) + correction, atol=1e-4)
    assert model.rollout({"fields": fields, "positions": positions}, 3, mode="physical").shape == (2, 3, 32, 1)
    # without it the untrained model predicts the poor reconstruction at the points
    plain = UPT.from_preset("tiny", encoder="points", approximator_zero_init=True)
    assert np.abs(to_numpy(plain(at_points)) - fields).max() > 0.1


def test_residual_point_cloud_model_trains_every_part_and_round_trips(tmp_path):
    from upt_keras import UPT, UPTObjective

    rng = np.random.default_rng(2)
    fields, positions = _point_cloud(rng, batch=8)
    x = {"fields": fields, "positions": positions, "coords": positions}
    y = np.roll(fields, 1, axis=1) * 0.9
    objective = UPTObjective(use_inverse_losses=True, lambda_inv_enc=1.0, lambda_inv_dec=0.0, num_queries=16, seed=0)
    model = UPT.from_preset("tiny", encoder="points", residual=True, residual_neighbours=6,
                            approximator_zero_init=True, objective=objective)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **FEW_STEPS)
    parts = {name: getattr(model, name) for name in ("encoder", "approximator", "decoder")}
    before = {name: _snapshot(layer) for name, layer in parts.items()}
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    for name, layer in parts.items():
        assert any(_moved(layer, before[name])), name
    path = str(tmp_path / "points_residual.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.residual and loaded.residual_neighbours == 6
    inputs = {"fields": fields, "positions": positions}
    np.testing.assert_allclose(to_numpy(loaded(inputs)), to_numpy(model(inputs)), rtol=1e-5, atol=1e-5)


def test_residual_neighbours_is_a_config_key_and_checked(tmp_path):
    from upt_keras import UPT
    from upt_keras.config import load_config
    from upt_keras.training.setup import model_kwargs

    path = tmp_path / "c.yaml"
    path.write_text("model:\n  preset: tiny\n  encoder: points\n  residual: true\n  residual_neighbours: 7\n")
    model = UPT.from_sizes(grid_shape=(32,), num_fields=1, **model_kwargs(load_config(str(path))))
    assert model.residual and model.residual_neighbours == 7
    assert UPT.from_preset("tiny").residual_neighbours == 12
    with pytest.raises(ValueError, match="residual_neighbours must be >= 1"):
        UPT.from_preset("tiny", residual_neighbours=0)
