"""Layer-level checks: shapes, per-query independence, dt conditioning, errors, configs."""

import numpy as np
import pytest

import keras

from conftest import to_numpy
from upt_keras.layers import AnyPointDecoder, Approximator, FourierFeatures, GridEncoder, grid_coordinates


def test_fourier_features_shape_and_periodicity():
    feats = FourierFeatures(num_dims=2, frequencies=(1, 2, 4))
    x = np.random.default_rng(0).random((5, 2)).astype("float32")
    out = to_numpy(feats(x))
    assert out.shape == (5, 2 * (2 * 3 + 1))
    # sin/cos parts are periodic on [0, 1): x and x + 1 give the same features
    shifted = to_numpy(feats(x + 1.0))
    np.testing.assert_allclose(out[:, 2:], shifted[:, 2:], atol=1e-4)


@pytest.mark.parametrize("grid_shape", [(32,), (16, 8)])
def test_grid_encoder_shapes(grid_shape):
    for pooling in ("perceiver", "average"):
        enc = GridEncoder(grid_shape, num_channels=2, patch_size=4, dim=16, depth=1, num_heads=2,
                          num_latent_tokens=4, latent_dim=8, pooling=pooling)
        z = enc(np.zeros((3,) + grid_shape + (2,), "float32"))
        assert tuple(z.shape) == (3, 4, 8)


def test_grid_encoder_bad_shapes_name_the_shape():
    with pytest.raises(ValueError, match=r"patch_size=3 does not divide grid_shape=\(32,\)"):
        GridEncoder((32,), 1, patch_size=3)
    enc = GridEncoder((32,), 1, patch_size=4, dim=16, num_heads=2, num_latent_tokens=4, latent_dim=8)
    with pytest.raises(ValueError, match=r"got shape \(2, 32\)"):  # missing channel axis
        enc(np.zeros((2, 32), "float32"))
    with pytest.raises(ValueError, match=r"built for grid \(32,\).*\(2, 16, 1\)"):
        enc(np.zeros((2, 16, 1), "float32"))
    with pytest.raises(ValueError, match=r"1 channel\(s\).*\(2, 32, 3\)"):
        enc(np.zeros((2, 32, 3), "float32"))
    with pytest.raises(ValueError, match=r"grid_shape=\(4, 4, 4\)"):
        GridEncoder((4, 4, 4), 1)
    with pytest.raises(ValueError, match="average pooling"):
        GridEncoder((32,), 1, patch_size=4, num_latent_tokens=3, pooling="average")


def test_approximator_depends_on_dt():
    approx = Approximator(latent_dim=8, width=16, depth=2, num_heads=2)
    z = np.random.default_rng(0).normal(size=(2, 4, 8)).astype("float32")
    a = to_numpy(approx(z, dt=np.full((2,), 0.01, "float32")))
    b = to_numpy(approx(z, dt=np.full((2,), 0.05, "float32")))
    assert a.shape == (2, 4, 8)
    assert np.abs(a - b).max() > 1e-4
    # a per-sample dt acts per sample
    c = to_numpy(approx(z, dt=np.array([0.01, 0.05], "float32")))
    np.testing.assert_allclose(c[0], a[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c[1], b[1], rtol=1e-5, atol=1e-5)


def test_decoder_per_query_independence():
    dec = AnyPointDecoder(num_fields=2, coord_dim=2, width=32, depth=2, num_heads=4, mlp_dim=32)
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(2, 8, 16)).astype("float32")
    coords = rng.random((4096, 2)).astype("float32")
    many = to_numpy(dec(latent, coords))
    assert many.shape == (2, 4096, 2)
    for i in (0, 1234, 4095):
        alone = to_numpy(dec(latent, coords[i:i + 1]))
        np.testing.assert_allclose(alone[:, 0], many[:, i], rtol=1e-5, atol=1e-5)
    # batched coordinates (B, Q, d) give the same as shared coordinates
    batched = to_numpy(dec(latent, np.broadcast_to(coords[:10], (2, 10, 2)).copy()))
    np.testing.assert_allclose(batched, many[:, :10], rtol=1e-5, atol=1e-5)


def test_decoder_bad_coords():
    dec = AnyPointDecoder(num_fields=1, coord_dim=2, width=16, depth=1, num_heads=2, mlp_dim=16)
    with pytest.raises(ValueError, match=r"got shape \(5, 3\)"):
        dec(np.zeros((1, 4, 8), "float32"), np.zeros((5, 3), "float32"))


def test_explicit_attention_matches_fused():
    from upt_keras.layers.attention import explicit_attention

    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, n, 4, 8)).astype("float32") for n in (5, 7, 7))
    fused = to_numpy(keras.ops.dot_product_attention(q, k, v))
    np.testing.assert_allclose(to_numpy(explicit_attention(q, k, v)), fused, rtol=1e-5, atol=1e-5)


def test_dense_matches_keras_dense_and_fuses_the_bias_on_torch():
    from upt_keras.layers import Dense

    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    ours, ref = Dense(8, activation="gelu"), keras.layers.Dense(8, activation="gelu")
    ours.build(x.shape)
    ref.build(x.shape)
    ours.bias.assign(np.linspace(-1, 1, 8).astype("float32"))  # a bias that matters
    ref.set_weights(ours.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(ref(x)), rtol=1e-5, atol=1e-6)
    if keras.backend.backend() == "torch":
        import torch
        from torch.profiler import profile

        inputs = torch.tensor(x, requires_grad=True)
        with profile() as prof:
            ours(inputs).sum().backward()
        names = {event.key for event in prof.key_averages()}
        assert "aten::addmm" in names and "aten::add" not in names, sorted(names)  # one kernel, no separate add
        reference = torch.tensor(x, requires_grad=True)
        ref(reference).sum().backward()
        np.testing.assert_allclose(inputs.grad.numpy(), reference.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the torch path of the attention")
def test_torch_attention_takes_transposed_views_without_copies():
    import torch
    from torch.profiler import profile

    from upt_keras.layers import Attention
    from upt_keras.layers.attention import explicit_attention, scaled_dot_product_attention

    q, k, v = (torch.randn(2, 64, 4, 8) for _ in range(3))
    bias = torch.randn(1, 4, 64, 64)
    np.testing.assert_allclose(to_numpy(scaled_dot_product_attention(q, k, v, bias)),
                               to_numpy(explicit_attention(q, k, v, bias)), rtol=1e-4, atol=1e-5)
    layer = Attention(32, 4)
    x, context = torch.randn(2, 64, 32, requires_grad=True), torch.randn(2, 8, 16)
    layer(x, context)
    with profile() as prof:
        layer(x, context, bias=torch.randn(1, 4, 64, 8)).sum().backward()
    names = {event.key for event in prof.key_averages()}
    # `ops.dot_product_attention` calls .contiguous() on q, k and v (and a copy follows to reshape its output)
    assert "aten::contiguous" not in names, sorted(n for n in names if "contig" in n or "clone" in n)
    # with a bias on the CPU: two matmuls, not the fused kernel's generic path with its check of every row for -inf
    assert "aten::isneginf" not in names and "aten::bmm" in names, sorted(names)
    with profile() as prof:
        layer(x, context).sum().backward()
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in {event.key for event in prof.key_averages()}


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the JAX CPU path of the attention")
def test_jax_on_cpu_uses_the_explicit_attention_in_float32(monkeypatch):
    import jax

    from upt_keras.layers import attention

    if any(d.platform != "cpu" for d in jax.devices()):
        pytest.skip("an accelerator is present: the fused attention runs there")
    calls = []
    explicit = attention.explicit_attention
    monkeypatch.setattr(attention, "explicit_attention", lambda *a: calls.append(1) or explicit(*a))
    q, k, v = (np.random.default_rng(i).normal(size=(2, 6, 2, 4)).astype("float32") for i in range(3))
    out = attention.scaled_dot_product_attention(q, k, v)
    assert calls, "float32 attention on JAX's CPU backend should take the explicit form"
    np.testing.assert_allclose(to_numpy(out), to_numpy(keras.ops.dot_product_attention(q, k, v)), rtol=1e-5, atol=1e-6)


def test_grid_coordinates_convention():
    c = grid_coordinates((4, 2))
    assert c.shape == (8, 2)
    np.testing.assert_allclose(c[:3], [[0, 0], [0, 0.5], [0.25, 0]])


@pytest.mark.parametrize(
    "layer",
    [
        lambda: FourierFeatures(3, (1, 3)),
        lambda: GridEncoder((8, 8), 2, patch_size=2, dim=16, num_heads=2, num_latent_tokens=4, latent_dim=8),
        lambda: Approximator(8, width=16, depth=1, num_heads=2, qk_norm=False),
        lambda: AnyPointDecoder(3, 2, width=16, depth=1, num_heads=2, mlp_dim=24, frequencies=(1, 5)),
    ],
)
def test_layer_config_round_trip(layer):
    layer = layer()
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)


def test_bilinear_readout_adds_a_position_weighted_read_of_the_features():
    """`readout="bilinear"`: zero-initialised it changes nothing; once its position heads are set, every point's value
    moves by exactly sum_j x_j h_j(coords) (x: the decoded features, h: a linear map of the position's embedding)."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2, 8, 16)).astype("float32")
    coords = rng.uniform(size=(20, 2)).astype("float32")
    kwargs = dict(num_fields=2, coord_dim=2, width=16, depth=1, num_heads=2, mlp_dim=16, frequencies=(1, 2, 4, 8))
    linear, bilinear = AnyPointDecoder(**kwargs), AnyPointDecoder(readout="bilinear", **kwargs)
    for dec in (linear, bilinear):
        dec.build((None, 8, 16), (None, 2))
    for src, dst in zip(linear.weights, bilinear.weights):  # the same weights, position heads aside
        dst.assign(src)
    base = to_numpy(linear(latent, coords))
    np.testing.assert_allclose(to_numpy(bilinear(latent, coords)), base, atol=1e-6)

    for head in bilinear.position_heads:
        head.kernel.assign(rng.normal(size=head.kernel.shape).astype("float32") * 0.1)
    query = to_numpy(bilinear.query_mlp[1](bilinear.query_mlp[0](bilinear.features(coords[None]))))  # (1, Q, w)
    x = to_numpy(bilinear.norm(bilinear.blocks[0](
        np.broadcast_to(query, (2,) + query.shape[1:]), bilinear.latent_proj(latent))))  # decoded features (2, Q, w)
    expected = base + np.stack([np.sum(x * (query @ to_numpy(h.kernel) + to_numpy(h.bias)), axis=-1)
                                for h in bilinear.position_heads], axis=-1)
    out = to_numpy(bilinear(latent, coords))
    assert np.abs(out - base).max() > 1e-3
    np.testing.assert_allclose(out, expected, atol=1e-4)
    clone = AnyPointDecoder.from_config(bilinear.get_config())
    assert clone.readout == "bilinear" and len(clone.position_heads) == 2
    with pytest.raises(ValueError, match="readout"):
        AnyPointDecoder(readout="cubic", **kwargs)


@pytest.mark.parametrize("grid_shape", [(12,), (6, 9)])
def test_patch_readout_reads_each_token_as_its_patch(grid_shape):
    """`patch_grid`/`patch_size`: zero-initialised the patch readout changes nothing; once its map is set, the output
    moves at every grid point by exactly the value its token maps to at that point's place in the patch (tokens in
    row-major patch order), and between grid points by the multilinear interpolation of those values."""
    rng = np.random.default_rng(1)
    p, ndim, fields = 3, len(grid_shape), 2
    patch_grid = tuple(n // p for n in grid_shape)
    tokens = int(np.prod(patch_grid))
    latent = rng.normal(size=(2, tokens, 8)).astype("float32")
    coords = grid_coordinates(grid_shape)
    kwargs = dict(num_fields=fields, coord_dim=ndim, width=16, depth=1, num_heads=2, mlp_dim=16, frequencies=(1, 2))
    plain, patched = AnyPointDecoder(**kwargs), AnyPointDecoder(patch_grid=patch_grid, patch_size=p, **kwargs)
    for dec in (plain, patched):
        dec.build((None, tokens, 8), (None, ndim))
    for src, dst in zip(plain.weights, patched.weights):  # the same weights, the patch readout aside
        dst.assign(src)
    base = to_numpy(plain(latent, coords))
    np.testing.assert_allclose(to_numpy(patched(latent, coords)), base, atol=1e-6)

    kernel = rng.normal(size=patched.unpatchify.kernel.shape).astype("float32")
    patched.unpatchify.kernel.assign(kernel)
    values = latent @ kernel  # (B, T, p^d * fields): token t's values at its patch's points
    expected = np.zeros((2,) + tuple(grid_shape) + (fields,), "float32")
    for t, corner in enumerate(np.ndindex(*patch_grid)):
        for k, offset in enumerate(np.ndindex(*((p,) * ndim))):
            point = tuple(c * p + o for c, o in zip(corner, offset))
            expected[(slice(None),) + point] = values[:, t, k * fields:(k + 1) * fields]
    out = to_numpy(patched(latent, coords))
    np.testing.assert_allclose(out - base, expected.reshape(2, -1, fields), atol=1e-4)
    # half-way between two neighbouring grid points along the last axis: the mean of their values
    step = np.zeros(ndim, "float32")
    step[-1] = 0.5 / grid_shape[-1]
    middle = to_numpy(patched(latent, coords + step)) - to_numpy(plain(latent, coords + step))
    flat = expected.reshape(2, -1, fields)
    neighbour = np.roll(expected, -1, axis=ndim).reshape(2, -1, fields)
    np.testing.assert_allclose(middle, (flat + neighbour) / 2, atol=1e-4)

    clone = AnyPointDecoder.from_config(patched.get_config())
    assert clone.patch_grid == patch_grid and clone.patch_size == p
    with pytest.raises(ValueError, match="one token per patch"):
        AnyPointDecoder(patch_grid=patch_grid, patch_size=p, **kwargs).build((None, tokens + 1, 8), (None, ndim))
    with pytest.raises(ValueError, match="patch_grid"):
        AnyPointDecoder(patch_grid=patch_grid + (2,), patch_size=p, **kwargs)


@pytest.mark.parametrize("grid_shape, p", [((12,), 4), ((6, 8), 2), ((9, 6), 3)])
def test_overlapping_patch_readout_blends_neighbouring_tokens(grid_shape, p):
    """`patch_overlap`: each token's values cover a window of 2p points per axis round its patch, weighted by a tent
    that fades to its edges; the windows' weights sum to 1 everywhere (a constant map reads as that constant at
    and between the grid points), and one token's values land exactly on its window (periodic), with those weights."""
    ndim = len(grid_shape)
    patch_grid = tuple(n // p for n in grid_shape)
    tokens = int(np.prod(patch_grid))
    dec = AnyPointDecoder(1, ndim, width=8, depth=1, num_heads=2, mlp_dim=8, patch_grid=patch_grid, patch_size=p,
                          patch_overlap=True)
    dec.build((None, tokens, 4), (None, ndim))
    assert dec.unpatchify.kernel.shape == (4, (2 * p) ** ndim)
    coords = grid_coordinates(grid_shape)
    off_grid = np.random.default_rng(2).uniform(size=(30, ndim)).astype("float32")
    dec.unpatchify.bias.assign(np.full(dec.unpatchify.bias.shape, 2.5, "float32"))
    for where in (coords, off_grid):
        np.testing.assert_allclose(to_numpy(dec.patch_values(np.zeros((1, tokens, 4), "float32"), where)), 2.5,
                                   atol=1e-5)

    dec.unpatchify.bias.assign(np.zeros(dec.unpatchify.bias.shape, "float32"))
    kernel = np.zeros(dec.unpatchify.kernel.shape, "float32")
    kernel[0] = 1.0  # every value of a window = the token's first latent entry
    dec.unpatchify.kernel.assign(kernel)
    token = tokens // 2 + 1
    corner = np.unravel_index(token, patch_grid)
    latent = np.zeros((1, tokens, 4), "float32")
    latent[0, token, 0] = 1.0
    expected = np.ones(grid_shape)
    for axis, (n, c) in enumerate(zip(grid_shape, corner)):
        offset = (np.arange(n) - (c * p - p // 2)) % n  # place in the window, which starts p // 2 before the patch
        weight = np.where(offset < 2 * p, 1.0 - np.abs(offset - (p - 0.5)) / p, 0.0)
        expected = expected * weight.reshape([-1 if a == axis else 1 for a in range(ndim)])
    out = to_numpy(dec.patch_values(latent, coords)).reshape(grid_shape)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.count_nonzero(out > 1e-6) == (2 * p) ** ndim
    assert AnyPointDecoder.from_config(dec.get_config()).patch_overlap is True
