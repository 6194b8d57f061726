"""mixed_float16: float32 variables, float16 compute, float32 losses, dynamic loss scaling."""

import numpy as np
import pytest

import keras

from conftest import FEW_STEPS, tiny_upt, to_numpy, wave_pairs


@pytest.fixture
def mixed_policy():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _build(policy_is_mixed, **kwargs):
    return tiny_upt((32,), use_inverse_losses=True, lambda_inv_enc=0.1, lambda_inv_dec=0.1, **kwargs)


def test_variables_float32_compute_float16(mixed_policy):
    model = _build(True)
    x, _ = wave_pairs(2)
    assert {w.dtype for w in model.trainable_weights} == {"float32"}
    assert model.encoder.compute_dtype == "float16"
    assert model.decoder.blocks[0].attn.compute_dtype == "float16"
    assert keras.backend.standardize_dtype(model.encode(x).dtype) == "float16"
    assert keras.backend.standardize_dtype(model(x).dtype) == "float32"  # outputs in float32


def test_mixed_fit_is_finite_and_update_matches_float32(tmp_path, mixed_policy):
    x, y = wave_pairs(8)
    keras.mixed_precision.set_global_policy("float32")
    ref = _build(False)
    ref.save_weights(str(tmp_path / "w.weights.h5"))
    keras.mixed_precision.set_global_policy("mixed_float16")
    mixed = _build(True)
    mixed.load_weights(str(tmp_path / "w.weights.h5"))

    deltas = []
    # 2**15, the default first scale, overflows this model's float16 gradients: dynamic scaling
    # would skip that step and halve the scale (tested below); start lower to compare one step.
    scaled_sgd = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1e-2), initial_scale=2.0**10)
    for model, optimizer in ((ref, keras.optimizers.SGD(1e-2)), (mixed, scaled_sgd)):
        before = [to_numpy(w).copy() for w in model.trainable_weights]
        model.compile(optimizer=optimizer, **FEW_STEPS)
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        deltas.append(np.concatenate([(to_numpy(w) - b).ravel() for w, b in zip(model.trainable_weights, before)]))
    f32, f16 = deltas
    assert np.abs(f16).max() > 0, "the mixed step was skipped"
    cosine = f32 @ f16 / (np.linalg.norm(f32) * np.linalg.norm(f16))
    assert cosine > 0.99, cosine
    # without loss scaling the update would be 2**15 smaller; with it, the sizes agree
    assert 0.8 < np.linalg.norm(f16) / np.linalg.norm(f32) < 1.25


def test_compile_wraps_optimizer_in_loss_scaling(mixed_policy):
    model = _build(True)
    model.compile(optimizer=keras.optimizers.SGD(1e-2))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_overflow_step_is_skipped_and_scale_halves(mixed_policy):
    model = _build(True)
    x, y = wave_pairs(4)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1e-2), initial_scale=2.0**10)
    model.compile(optimizer=optimizer, **FEW_STEPS)
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    huge = (x * 1e4).astype("float32")  # float16 overflows inside the network -> non-finite gradients
    model.fit(huge, huge, batch_size=4, epochs=1, verbose=0)
    assert float(to_numpy(model.optimizer.dynamic_scale)) == 2.0**9
    assert all(np.array_equal(b, to_numpy(w)) for w, b in zip(model.trainable_weights, before))
    # a normal step afterwards trains again
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert any(not np.array_equal(b, to_numpy(w)) for w, b in zip(model.trainable_weights, before))


def test_bfloat16_policy_runs():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _build(True)
        x, y = wave_pairs(4)
        model.compile(optimizer="adam", **FEW_STEPS)
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert model.encoder.compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
