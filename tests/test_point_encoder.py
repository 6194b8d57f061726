"""The encoder interface through its second implementation: PointCloudEncoder (supernode pooling) in a UPT."""

import numpy as np
import pytest

import keras

from conftest import BACKEND, FEW_STEPS, tiny_upt, to_numpy, wave_pairs
from upt_keras import UPT
from upt_keras.layers import GridEncoder, PointCloudEncoder
from upt_keras.layers.encoder import split_inputs
from upt_keras.objectives.losses import field_mse


def _scattered(u, num_points, seed=0):
    """A random subset of `num_points` of the 1D grid points per sample: (fields, positions)."""
    rng = np.random.default_rng(seed)
    n = u.shape[1]
    keep = np.stack([rng.permutation(n)[:num_points] for _ in range(u.shape[0])])
    return np.take_along_axis(u, keep[..., None], axis=1), (keep[..., None] / n).astype("float32")


def test_encoder_interface_attributes():
    grid = GridEncoder((32,), 2, dim=16, num_latent_tokens=4, latent_dim=8)
    points = PointCloudEncoder(2, 1, num_supernodes=8, dim=16, num_latent_tokens=4, latent_dim=8)
    for enc, kind in ((grid, "grid"), (points, "points")):
        assert enc.input_kind == kind
        assert (enc.num_channels, enc.coord_dim, enc.latent_shape) == (2, 1, (4, 8))


def test_point_encoder_takes_any_number_of_points_and_checks_shapes():
    enc = PointCloudEncoder(1, 2, num_supernodes=16, dim=16, num_heads=2, num_latent_tokens=4, latent_dim=8)
    rng = np.random.default_rng(0)
    for n in (16, 50, 300):
        out = enc(rng.normal(size=(3, n, 1)).astype("float32"), rng.random((3, n, 2)).astype("float32"))
        assert tuple(out.shape) == (3, 4, 8)
    with pytest.raises(ValueError, match="positions"):
        enc(np.zeros((1, 20, 1), "float32"))
    with pytest.raises(ValueError, match=r"\(batch, N, 2\)"):
        enc(np.zeros((1, 20, 1), "float32"), np.zeros((1, 20, 3), "float32"))
    with pytest.raises(ValueError, match="at least"):
        enc(np.zeros((1, 10, 1), "float32"), np.zeros((1, 10, 2), "float32"))


def test_supernodes_only_hear_points_within_their_radius():
    """With a radius below the point spacing, only the supernodes' own values reach the latent."""
    n, s = 64, 8
    pos = (np.arange(n)[None, :, None] / n).astype("float32")
    rng = np.random.default_rng(0)
    fields = rng.normal(size=(1, n, 1)).astype("float32")
    other = fields.copy()
    supernodes = (np.arange(s) * n) // s
    other[0, np.setdiff1d(np.arange(n), supernodes)] += 1.0  # change every point that is not a supernode
    for radius, same in ((0.5 / n, True), (4.0 / n, False)):
        keras.utils.set_random_seed(0)
        enc = PointCloudEncoder(1, 1, num_supernodes=s, radius=radius, max_neighbours=8, dim=16, num_heads=2,
                                num_latent_tokens=4, latent_dim=8)
        a, b = to_numpy(enc(fields, pos)), to_numpy(enc(other, pos))
        assert np.allclose(a, b, atol=1e-6) == same, radius


def test_model_needs_an_output_grid_for_a_point_encoder():
    enc = PointCloudEncoder(1, 1, num_supernodes=8, dim=16, num_heads=2, num_latent_tokens=4, latent_dim=16)
    model = tiny_upt((32,))
    with pytest.raises(ValueError, match="grid_shape"):
        UPT(enc, model.approximator, model.decoder)


def test_point_model_trains_on_scattered_points_and_decodes_the_grid():
    """Every part of the point-cloud UPT learns from scattered inputs; predictions live on the full grid."""
    u, v = wave_pairs(32, seed=0)
    fields, positions = _scattered(u, 20)
    model = tiny_upt((32,), encoder="points", use_inverse_losses=True, lambda_inv_enc=0.5, lambda_inv_dec=0.1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    parts = {name: getattr(model, name) for name in ("encoder", "approximator", "decoder")}
    before = {name: [to_numpy(w).copy() for w in p.trainable_weights] for name, p in parts.items()}
    history = model.fit({"fields": fields, "positions": positions}, v, batch_size=8, epochs=8, verbose=0)
    for name, p in parts.items():
        moved = [not np.array_equal(b, to_numpy(w)) for w, b in zip(p.trainable_weights, before[name])]
        assert all(moved), f"every {name} weight must receive a gradient"
    losses = history.history["forward_loss"]
    assert losses[-1] < 0.75 * losses[0], losses
    pred = model.predict({"fields": fields, "positions": positions}, verbose=0)
    assert pred.shape == (32, 32, 1)
    assert {"inv_enc_loss", "inv_dec_loss"} <= set(history.history)


def test_point_model_inverse_encoding_is_measured_at_the_input_points():
    u, _ = wave_pairs(4, seed=1)
    fields, positions = _scattered(u, 20)
    model = tiny_upt((32,), encoder="points", field_mean=[0.2], field_std=[1.5])
    z = model.encode(fields, positions)
    _, std = model.field_stats()
    expected = to_numpy(field_mse(model.decode(z, positions), fields, std))
    got = model.objective.inverse_losses(model, {"fields": fields, "positions": positions})["inv_enc_loss"]
    assert got == pytest.approx(float(expected), rel=1e-5)


def test_point_model_rollouts_save_load_and_point_independence(tmp_path):
    u, _ = wave_pairs(3, seed=2)
    fields, positions = _scattered(u, 24)
    inputs = {"fields": fields, "positions": positions}
    model = tiny_upt((32,), encoder="points", dt=0.01)
    latent = model.rollout(inputs, 3)
    physical = model.rollout(inputs, 3, mode="physical")
    assert latent.shape == physical.shape == (3, 3, 32, 1)
    # one step of either mode is the same prediction
    np.testing.assert_allclose(latent[:, 0], physical[:, 0], atol=1e-5)
    # the decoder: a point decodes to the same value alone as among all others
    z = model.encode(fields, positions)
    coords = np.random.default_rng(0).random((40, 1)).astype("float32")
    together = to_numpy(model.decode(z, coords))
    alone = np.concatenate([to_numpy(model.decode(z, coords[i:i + 1])) for i in range(40)], axis=1)
    np.testing.assert_allclose(alone, together, atol=1e-5)
    path = str(tmp_path / "points.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.encoder, PointCloudEncoder) and reloaded.grid_shape == (32,)
    np.testing.assert_allclose(reloaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-6)


def test_grid_encoder_refuses_positions():
    model = tiny_upt((32,))
    u, _ = wave_pairs(2)
    with pytest.raises(ValueError, match="positions"):
        model.encode(u, np.zeros((2, 32, 1), "float32"))
    assert split_inputs(u)[1] is None


def test_inverse_decoding_from_the_sampled_points_only():
    """`inverse_decoding_points="queries"`: decode and re-encode the Q sampled points; the full grid is never decoded."""
    from keras import ops

    from upt_keras.objectives.losses import latent_mse

    u, v = wave_pairs(4, seed=3)
    fields, positions = _scattered(u, 20)
    x = {"fields": fields, "positions": positions}
    model = tiny_upt((32,), encoder="points", use_inverse_losses=True, forward_loss_weight=0.0, lambda_inv_enc=0.0,
                     lambda_inv_dec=1.0, num_queries=12, inverse_decoding_points="queries")
    idx = np.arange(0, 32, 32 // 12)[:12].astype("int32")
    model.objective.query_sampler.sample = lambda: ops.convert_to_tensor(idx)
    decoded = []
    decode = model.decode
    model.decode = lambda z, coords=None, chunk_size=None, gradients=False: decoded.append(
        None if coords is None else tuple(coords.shape)) or decode(z, coords, chunk_size, gradients)
    y_pred = model(x, training=True)
    loss = to_numpy(model.compute_loss(x=x, y=v, y_pred=y_pred, training=True))
    # forward and inverse decoding at the 12 queries; never the 32-point grid, and the inverse encoding (at the 20
    # input points) not at all, its weight being 0 (JAX traces both branches of a cond, so there it is traced)
    assert set(decoded) == ({(12, 1), (4, 20, 1)} if BACKEND == "jax" else {(12, 1)}), decoded
    coords_q = model.grid_coords[idx]
    z_next = y_pred["z_next"]
    expected = latent_mse(model.encode(decode(z_next, coords_q), np.broadcast_to(coords_q, (4, 12, 1))), z_next)
    assert float(loss) == pytest.approx(float(to_numpy(expected)), rel=1e-5)

    del model.decode  # back to the method: one training step moves the encoder and the decoder
    model.compile(optimizer=keras.optimizers.SGD(0.1), **FEW_STEPS)
    before = {n: [to_numpy(w).copy() for w in getattr(model, n).trainable_weights] for n in ("encoder", "decoder")}
    model.fit(x, v, batch_size=4, epochs=1, verbose=0)
    for name, weights in before.items():
        after = getattr(model, name).trainable_weights
        assert all(not np.array_equal(b, to_numpy(w)) for w, b in zip(after, weights)), name


def test_inverse_decoding_from_queries_needs_a_point_encoder():
    with pytest.raises(ValueError, match="point-cloud encoder"):
        tiny_upt((32,), inverse_decoding_points="queries")
    with pytest.raises(ValueError, match="num_supernodes"):
        tiny_upt((32,), encoder="points", num_queries=4, inverse_decoding_points="queries")


def test_grid_supernodes_give_tokens_positions_and_tolerate_empty_neighbourhoods():
    enc = PointCloudEncoder(1, 2, num_supernodes=16, supernodes="grid", radius=0.01, max_neighbours=4, dim=16,
                            num_heads=2, num_latent_tokens=4, latent_dim=8)
    # 4x4 anchors at cell centres, tokens at the mean of 4 consecutive anchors (row-major)
    np.testing.assert_allclose(enc.token_positions[0], [0.125, 0.5], atol=1e-6)
    assert enc.token_positions.shape == (4, 2)
    rng = np.random.default_rng(0)
    out = to_numpy(enc(rng.normal(size=(2, 5, 1)).astype("float32"), rng.random((2, 5, 2)).astype("float32")))
    assert out.shape == (2, 4, 8) and np.isfinite(out).all()  # fewer points than anchors, most anchors hear none
    with pytest.raises(ValueError, match="n\\^2"):
        PointCloudEncoder(1, 2, num_supernodes=10, supernodes="grid", num_latent_tokens=2)
    model = UPT.from_preset("tiny", grid_shape=(8, 8), encoder="points", num_supernodes=16, supernodes="grid",
                            num_latent_tokens=4, decoder_locality=True)
    assert model._token_positions.shape == (4, 2)
