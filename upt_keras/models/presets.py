"""Model sizes: the defaults, the named presets, and the one function that builds the three parts from them.

Every place that sizes a model (`UPT.from_sizes`, `UPT.from_preset`, the config's
`model:` section, the benchmarks, the tests) goes through `SIZE_DEFAULTS`,
`PRESETS` and `build_parts`, so a new size knob is added here once. Importing this
module imports no deep-learning framework (the config reads it).
"""

# The sizes `UPT.from_sizes` takes, with their defaults (the config's `model:` keys, less `preset` and
# `decode_chunk_size`).
SIZE_DEFAULTS = dict(
    encoder="grid",  # "grid" (GridEncoder) or "points" (PointCloudEncoder)
    patch_size=4,
    encoder_dim=64,
    encoder_depth=1,
    encoder_heads=4,
    num_latent_tokens=32,
    latent_dim=64,
    pooling="perceiver",
    num_supernodes=256,
    supernodes="sampled",
    supernode_radius=0.08,
    supernode_neighbours=16,
    approximator_width=128,
    approximator_depth=4,
    approximator_heads=4,
    approximator_zero_init=False,
    approximator_locality=False,
    mlp_ratio=4,
    decoder_width=128,
    decoder_depth=2,
    decoder_heads=4,
    decoder_mlp_dim=256,
    decoder_locality=False,
    frequencies=(1, 2, 4, 8),
)

# Named presets: `grid_shape` and `num_fields` are the data's; the rest are sizes (missing ones take SIZE_DEFAULTS).
PRESETS = {
    # the 1D CPU default (configs/train_burgers1d.yaml): 256 points, one latent token per patch, local approximator
    # and decoder
    "b1d": dict(
        grid_shape=(256,), num_fields=1, patch_size=4, encoder_dim=64, encoder_depth=1, encoder_heads=4,
        num_latent_tokens=64, latent_dim=64, pooling="average", approximator_width=96, approximator_depth=2,
        approximator_heads=4, approximator_zero_init=True, approximator_locality=True, mlp_ratio=4, decoder_width=64,
        decoder_depth=1, decoder_heads=4, decoder_mlp_dim=128, decoder_locality=True, frequencies=(1, 2, 4, 8, 16, 32),
    ),
    # workload B64 (configs/train_burgers2d_64.yaml, benchmarks/bench_b64.py): 2D 64x64
    "b64": dict(
        grid_shape=(64, 64), num_fields=1, patch_size=4, encoder_dim=128, encoder_depth=1, encoder_heads=4,
        num_latent_tokens=128, latent_dim=128, pooling="perceiver", approximator_width=256, approximator_depth=8,
        approximator_heads=8, mlp_ratio=4, decoder_width=256, decoder_depth=3, decoder_heads=4,
        decoder_mlp_dim=256, frequencies=(1, 2, 4, 8),
    ),
    # 2D 64x64 fields given as scattered points (benchmarks/bench_points.py), a CPU-sized point-cloud UPT
    # (supernodes at fixed anchors, so latent tokens have positions and the decoder's locality bias applies)
    "points64": dict(
        encoder="points", grid_shape=(64, 64), num_fields=1, encoder_dim=64, encoder_depth=1, encoder_heads=4,
        num_supernodes=256, supernodes="grid", supernode_radius=0.06, supernode_neighbours=16,
        num_latent_tokens=64, latent_dim=64, approximator_width=128, approximator_depth=2, approximator_heads=4,
        approximator_zero_init=True, mlp_ratio=4, decoder_width=64, decoder_depth=2, decoder_heads=4,
        decoder_mlp_dim=128, decoder_locality=True, frequencies=(1, 2, 4),
    ),
    # the smallest useful model, for tests and quick checks
    "tiny": dict(
        grid_shape=(32,), num_fields=1, patch_size=4, encoder_dim=16, encoder_depth=1, encoder_heads=2,
        num_latent_tokens=8, latent_dim=16, num_supernodes=8, supernode_radius=0.2, approximator_width=32,
        approximator_depth=1, approximator_heads=2, mlp_ratio=2, decoder_width=32, decoder_depth=1,
        decoder_heads=2, decoder_mlp_dim=32, frequencies=(1, 2, 4),
    ),
}


GRID_PRESETS = tuple(name for name, p in PRESETS.items() if p.get("encoder", "grid") == "grid")


def preset(name):
    """The preset `name` as a dict of `grid_shape`, `num_fields` and sizes (all sizes filled in)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return dict(SIZE_DEFAULTS, **PRESETS[name])


def build_parts(grid_shape, num_fields=1, **sizes):
    """(encoder, approximator, decoder) from a grid, a field count and sizes (missing ones: SIZE_DEFAULTS)."""
    from upt_keras.layers import AnyPointDecoder, Approximator, GridEncoder, PointCloudEncoder

    unknown = sorted(set(sizes) - set(SIZE_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown model size(s): {', '.join(unknown)}; the sizes are {', '.join(SIZE_DEFAULTS)}")
    s = dict(SIZE_DEFAULTS, **sizes)
    grid_shape, ndim = tuple(int(n) for n in grid_shape), len(grid_shape)
    if s["encoder"] == "grid":
        encoder = GridEncoder(
            grid_shape, num_fields, patch_size=s["patch_size"], dim=s["encoder_dim"], depth=s["encoder_depth"],
            num_heads=s["encoder_heads"], mlp_ratio=s["mlp_ratio"], num_latent_tokens=s["num_latent_tokens"],
            latent_dim=s["latent_dim"], pooling=s["pooling"], frequencies=s["frequencies"], name="encoder",
        )
    elif s["encoder"] == "points":
        encoder = PointCloudEncoder(
            num_fields, ndim, num_supernodes=s["num_supernodes"], radius=s["supernode_radius"],
            max_neighbours=s["supernode_neighbours"], supernodes=s["supernodes"], dim=s["encoder_dim"], depth=s["encoder_depth"],
            num_heads=s["encoder_heads"], mlp_ratio=s["mlp_ratio"], num_latent_tokens=s["num_latent_tokens"],
            latent_dim=s["latent_dim"], frequencies=s["frequencies"], name="encoder",
        )
    else:
        raise ValueError(f"encoder must be 'grid' or 'points', got {s['encoder']!r}")
    approximator = Approximator(
        s["latent_dim"], width=s["approximator_width"], depth=s["approximator_depth"],
        num_heads=s["approximator_heads"], mlp_ratio=s["mlp_ratio"], zero_init=s["approximator_zero_init"],
        locality=s["approximator_locality"], name="approximator",
    )
    decoder = AnyPointDecoder(
        num_fields, ndim, width=s["decoder_width"], depth=s["decoder_depth"], num_heads=s["decoder_heads"],
        mlp_dim=s["decoder_mlp_dim"], frequencies=s["frequencies"], locality=s["decoder_locality"], name="decoder",
    )
    return encoder, approximator, decoder
