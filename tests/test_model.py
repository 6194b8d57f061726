"""UPT model: shapes, gradients, chunked decoding, rollout, saving."""


import numpy as np
import pytest

import keras

from conftest import BACKEND, FEW_STEPS, tiny_upt, to_numpy, wave_pairs


@pytest.mark.parametrize("grid_shape,num_fields", [((32,), 1), ((16, 8), 2)])
def test_shapes(grid_shape, num_fields):
    model = tiny_upt(grid_shape, num_fields)
    x = np.random.default_rng(0).normal(size=(3,) + grid_shape + (num_fields,)).astype("float32")
    z = model.encode(x)
    assert tuple(z.shape) == (3, 8, 16)
    assert tuple(model.step(z).shape) == (3, 8, 16)
    assert tuple(model(x).shape) == (3,) + grid_shape + (num_fields,)
    coords = np.random.default_rng(1).random((7, len(grid_shape))).astype("float32")
    assert tuple(model(x, coords=coords).shape) == (3, 7, num_fields)
    assert tuple(model({"fields": x, "coords": coords}).shape) == (3, 7, num_fields)
    assert model.predict(x, verbose=0).shape == (3,) + grid_shape + (num_fields,)


def test_decode_on_grid_equals_decode_at_grid_coords_and_finer_grids():
    model = tiny_upt((32,))
    x, _ = wave_pairs(2)
    z = model.step(model.encode(x))
    grid = to_numpy(model.decode(z))  # (2, 32, 1)
    at = to_numpy(model.decode(z, model.grid_coords))
    np.testing.assert_allclose(grid.reshape(2, 32, 1), at, rtol=1e-5, atol=1e-5)
    # a 4x finer grid contains the training grid at every 4th point
    fine = (np.arange(128) / 128).astype("float32")[:, None]
    fine_out = to_numpy(model.decode(z, fine))
    np.testing.assert_allclose(fine_out[:, ::4], at, rtol=1e-5, atol=1e-5)


def test_chunked_decoding_matches_and_handles_many_points():
    model = tiny_upt((32,), decode_chunk_size=1000)
    x, _ = wave_pairs(1)
    z = model.encode(x)
    coords = np.random.default_rng(0).random((4500, 1)).astype("float32")
    chunked = to_numpy(model.decode(z, coords))
    whole = to_numpy(model.decode(z, coords, chunk_size=10**6))
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)
    if BACKEND == "torch":  # 10^6 points in chunks (eager backends; cheap enough on torch)
        million = model.decode(z, np.random.default_rng(1).random((10**6, 1)).astype("float32"), chunk_size=65536)
        assert tuple(million.shape) == (1, 10**6, 1)


def _grad_of_decode_wrt_latent(model, z, coords, gradients):
    """d mean(decode(z, coords)^2) / dz on the active backend (None where no gradient reaches z)."""
    if BACKEND == "torch":
        import torch

        zt = torch.as_tensor(z).clone().requires_grad_(True)
        out = model.decode(zt, coords, gradients=gradients)
        if not out.requires_grad:
            assert out.grad_fn is None  # no graph was recorded
            return None
        (grad,) = torch.autograd.grad(out.square().mean(), zt)
        return grad.numpy()
    if BACKEND == "tensorflow":
        import tensorflow as tf

        zt = tf.convert_to_tensor(z)
        with tf.GradientTape() as tape:
            tape.watch(zt)
            loss = tf.reduce_mean(tf.square(model.decode(zt, coords, gradients=gradients)))
        grad = tape.gradient(loss, zt)
        return None if grad is None else grad.numpy()
    import jax

    grad = jax.grad(lambda zz: jax.numpy.mean(jax.numpy.square(model.decode(zz, coords, gradients=gradients))))(
        jax.numpy.asarray(z))
    return np.asarray(grad)


def test_decode_is_inference_unless_gradients_are_asked_for():
    """`decode` records no graph and passes no gradient by default; `gradients=True` differentiates (chunked too)."""
    model = tiny_upt((32,), decode_chunk_size=16)
    x, _ = wave_pairs(2)
    z = to_numpy(model.encode(x))
    coords = np.random.default_rng(0).random((40, 1)).astype("float32")  # three chunks
    off = _grad_of_decode_wrt_latent(model, z, coords, gradients=False)
    on = _grad_of_decode_wrt_latent(model, z, coords, gradients=True)
    assert off is None or not np.any(off)
    assert on is not None and on.shape == z.shape and np.all(np.isfinite(on)) and np.any(on)
    np.testing.assert_allclose(to_numpy(model.decode(z, coords)), to_numpy(model.decode(z, coords, gradients=True)),
                               rtol=1e-6, atol=1e-6)


def test_rollout_records_no_graph(monkeypatch):
    model = tiny_upt((32,))
    x, _ = wave_pairs(2)
    seen = []
    step = model.step

    def watching(z, dt=None):
        if BACKEND == "torch":
            import torch

            seen.append(torch.is_grad_enabled())
        return step(z, dt)

    monkeypatch.setattr(model, "step", watching)
    for mode in ("latent", "physical"):
        assert model.rollout(x, 3, mode=mode).shape == (2, 3, 32, 1)
    assert not any(seen)
    if BACKEND == "torch":
        assert len(seen) == 6
        import torch

        assert torch.is_grad_enabled()  # restored afterwards


def test_normalisation_is_internal():
    plain = tiny_upt((32,), init_seed=3)
    scaled = tiny_upt((32,), init_seed=3, field_mean=[2.0], field_std=[5.0])
    x, _ = wave_pairs(2)
    a = to_numpy(plain(x))
    b = to_numpy(scaled(x * 5.0 + 2.0))
    np.testing.assert_allclose(b, a * 5.0 + 2.0, rtol=1e-4, atol=1e-4)


def test_gradients_reach_every_trainable_weight():
    model = tiny_upt((32,), use_inverse_losses=True, lambda_inv_enc=0.1, lambda_inv_dec=0.1)
    x, y = wave_pairs(4)
    model.compile(optimizer=keras.optimizers.SGD(0.5), **FEW_STEPS)
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # step 0 is an inverse step
    after = [to_numpy(w) for w in model.trainable_weights]
    unchanged = [w.path for w, b, a in zip(model.trainable_weights, before, after) if np.array_equal(b, a)]
    assert not unchanged, f"weights without gradient: {unchanged}"


def test_gradients_of_the_forward_loss_alone_reach_every_weight():
    model = tiny_upt((32,))
    x, y = wave_pairs(4)
    model.compile(optimizer=keras.optimizers.SGD(0.5), **FEW_STEPS)
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    unchanged = [w.path for w, b in zip(model.trainable_weights, before) if np.array_equal(b, to_numpy(w))]
    assert not unchanged, f"weights without gradient: {unchanged}"


def test_rollout_modes():
    model = tiny_upt((32,))
    x, _ = wave_pairs(2)
    latent = model.rollout(x, 3)
    physical = model.rollout(x, 3, mode="physical")
    assert latent.shape == physical.shape == (2, 3, 32, 1)
    # step 1 is the same one-step prediction in both modes
    one = to_numpy(model(x))
    np.testing.assert_allclose(latent[:, 0], one, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(physical[:, 0], one, rtol=1e-4, atol=1e-4)
    # later steps differ (physical re-encodes) and only asked-for frames are returned
    assert np.abs(latent[:, 2] - physical[:, 2]).max() > 0
    last = model.rollout(x, 3, decode_steps=[3])
    np.testing.assert_allclose(last[:, 0], latent[:, 2], rtol=1e-4, atol=1e-4)
    pts = model.rollout(x, 2, coords=np.array([[0.1], [0.55]], "float32"))
    assert pts.shape == (2, 2, 2, 1)
    with pytest.raises(ValueError, match="mode"):
        model.rollout(x, 2, mode="fast")
    with pytest.raises(ValueError, match="decode_steps"):
        model.rollout(x, 2, decode_steps=[3])


def test_bad_construction_errors():
    with pytest.raises(ValueError, match="UPTObjective: lambda_inv_enc: Input should be greater than or equal to 0, got int -1"):
        tiny_upt((32,), lambda_inv_enc=-1)
    with pytest.raises(ValueError, match="UPTObjective: inverse_loss_frequency: Input should be greater than or equal to 1, got int 0"):
        tiny_upt((32,), inverse_loss_frequency=0)
    with pytest.raises(ValueError, match=r"num_queries must be in \[1, 32\].*got 33"):
        tiny_upt((32,), num_queries=33)
    with pytest.raises(ValueError, match=r"num_queries must be in \[1, 32\].*got 0"):
        tiny_upt((32,), num_queries=0)
    with pytest.raises(ValueError, match="strategy"):
        tiny_upt((32,), num_queries=8, query_strategy="sobol")
    with pytest.raises(ValueError, match="field_std"):
        tiny_upt((32,), field_std=[0.0])
    model = tiny_upt((32,))
    with pytest.raises(ValueError, match=r"got fields of shape \(2, 16, 1\)"):
        model(np.zeros((2, 16, 1), "float32"))


def _without_build_config(config):
    if isinstance(config, dict):
        return {k: _without_build_config(v) for k, v in config.items() if k != "build_config"}
    return config


def test_keras_file_round_trip(tmp_path):
    model = tiny_upt((16, 8), 2, use_inverse_losses=True, num_queries=64, query_strategy="stratified",
                     field_mean=[0.5, -1.0], field_std=[2.0, 3.0], dt=0.05, seed=0)
    model.compile(optimizer="adam")
    x = np.random.default_rng(0).normal(size=(2, 16, 8, 2)).astype("float32")
    model.fit(x, x, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6)
    assert _without_build_config(loaded.get_config()) == _without_build_config(model.get_config())
    assert int(to_numpy(loaded.objective.train_step_counter)) == 1
    # The query sampler's random state comes back too: the reloaded model draws the query set the original would
    # draw next, not its first one again.
    fresh = tiny_upt((16, 8), 2, num_queries=64, query_strategy="stratified", seed=0)  # what the model drew first
    first, nxt = to_numpy(fresh.objective.query_sampler.sample()), to_numpy(loaded.objective.query_sampler.sample())
    np.testing.assert_array_equal(nxt, to_numpy(model.objective.query_sampler.sample()))
    assert not np.array_equal(nxt, first)
    loaded.fit(x, x, epochs=1, verbose=0)  # the compiled state came back and trains on


def test_fields_at_reads_the_start_of_a_residual_prediction_every_way():
    from upt_keras.layers import grid_coordinates
    from upt_keras.models.fields import fields_at

    rng = np.random.default_rng(0)
    grid_shape = (8, 4)
    u = rng.normal(size=(2,) + grid_shape + (3,)).astype("float32")
    flat = u.reshape(2, 32, 3)
    coords = grid_coordinates(grid_shape)
    np.testing.assert_array_equal(to_numpy(fields_at(u, grid_shape)), u)  # the whole grid, as it is
    np.testing.assert_array_equal(to_numpy(fields_at(flat, grid_shape)), u)  # (B, N, C) on the grid
    idx = np.array([5, 0, 31], "int32")
    np.testing.assert_array_equal(to_numpy(fields_at(u, grid_shape, coords[idx], idx=idx)), flat[:, idx])
    # interpolated at grid points: the values there; half-way between two points of a row: their mean
    np.testing.assert_allclose(to_numpy(fields_at(u, grid_shape, coords[idx])), flat[:, idx], atol=1e-5)
    mid = ((coords[1] + coords[2]) / 2)[None]
    np.testing.assert_allclose(to_numpy(fields_at(u, grid_shape, mid))[:, 0], (flat[:, 1] + flat[:, 2]) / 2,
                               atol=1e-5)
    # from scattered points: exact at those points, and a (B, *grid, C) field when read on the whole grid
    positions = np.broadcast_to(coords, (2, 32, 2)).astype("float32")
    at_points = to_numpy(fields_at(flat, grid_shape, positions[:, :6], positions=positions, periodic=True))
    np.testing.assert_allclose(at_points, flat[:, :6], atol=1e-3)
    assert to_numpy(fields_at(flat, grid_shape, positions=positions)).shape == (2,) + grid_shape + (3,)
