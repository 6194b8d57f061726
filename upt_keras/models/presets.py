"""Model sizes: their declaration, the named presets, and the functions that build the three parts and check that
they fit together.

Every place that sizes a model (`UPT.from_sizes`, `UPT.from_preset`, the config's
`model:` section, the benchmarks, the tests) goes through `ModelSizes` (the declaration: name, default, range),
`PRESETS` and `build_parts`, so a new size knob is added here once. Importing this
module imports no deep-learning framework (the config reads it).
"""

from pydantic import Field

from upt_keras.schema import Bool, Float, Int, NumberList, Section, one_of, validated


class ModelSizes(Section):
    """The sizes `UPT.from_sizes` takes, with their defaults: the one declaration behind `SIZE_DEFAULTS`, the presets
    and the config's `model:` section (`upt_keras.config.ModelConfig` adds `preset`, `decode_chunk_size`, `residual`,
    `residual_neighbours`)."""

    encoder: one_of("grid", "points") = "grid"  # GridEncoder or PointCloudEncoder
    patch_size: Int = Field(4, ge=1)
    encoder_dim: Int = Field(64, ge=1)
    encoder_depth: Int = Field(1, ge=0)
    encoder_heads: Int = Field(4, ge=1)
    num_latent_tokens: Int = Field(32, ge=1)
    latent_dim: Int = Field(64, ge=1)
    pooling: one_of("perceiver", "average") = "perceiver"
    # point-cloud encoder: supernodes, their neighbourhood radius (in [0, 1) coordinates) and neighbour count
    num_supernodes: Int = Field(256, ge=1)
    supernodes: one_of("sampled", "grid") = "sampled"
    supernode_radius: Float = Field(0.08, gt=0.0)
    supernode_neighbours: Int = Field(16, ge=1)
    approximator_width: Int = Field(128, ge=1)
    approximator_depth: Int = Field(4, ge=1)
    approximator_heads: Int = Field(4, ge=1)
    approximator_zero_init: Bool = False  # untrained approximator = identity
    approximator_locality: Bool = False  # distance bias in the approximator's attention (average pooling)
    mlp_ratio: Int = Field(4, ge=1)
    decoder_width: Int = Field(128, ge=1)
    decoder_depth: Int = Field(2, ge=1)
    decoder_heads: Int = Field(4, ge=1)
    decoder_mlp_dim: Int = Field(256, ge=1)
    decoder_locality: Bool = False  # distance bias in the decoder's attention (tokens with positions)
    decoder_readout: one_of("linear", "bilinear") = "linear"  # bilinear: features weighted by a function of position
    # a linear map of each token to its patch's values, interpolated at the queries (grid encoder, one token per
    # patch: average pooling with num_latent_tokens = the number of patches)
    decoder_patch_readout: Bool = False
    decoder_patch_overlap: Bool = False
    frequencies: NumberList = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32])


SIZE_DEFAULTS = ModelSizes().model_dump()

# Named presets: `grid_shape` and `num_fields` are the data's; the rest are sizes (missing ones take SIZE_DEFAULTS).
PRESETS = {
    # the 1D CPU default (configs/train_burgers1d.yaml): 256 points, one latent token per patch, local approximator
    # and decoder, bilinear readout (Kuramoto-Sivashinsky at 300 s: one-step -13%, latent rollout -28%; B1D -7%)
    "b1d": dict(
        grid_shape=(256,), num_fields=1, patch_size=4, encoder_dim=64, encoder_depth=1, encoder_heads=4,
        num_latent_tokens=64, latent_dim=64, pooling="average", approximator_width=96, approximator_depth=2,
        approximator_heads=4, approximator_zero_init=True, approximator_locality=True, mlp_ratio=4, decoder_width=64,
        decoder_depth=1, decoder_heads=4, decoder_mlp_dim=128, decoder_locality=True, decoder_readout="bilinear",
        frequencies=(1, 2, 4, 8, 16, 32),
    ),
    # the 2D CPU default (configs/train_burgers2d.yaml): 64x64 / patch 8 = 64 patch tokens kept as 64 latent tokens
    # of width 64 (one per patch, with positions for the locality biases), zero-initialised local approximator,
    # local decoder: the 1D default's recipe on a 2D grid (patch 4, 256 tokens: 3.2x the step time); a bilinear
    # readout and frequencies up to 32 (benchmarks/results/results_accuracy_2d.md: 12% lower rollout error at 300 s);
    # a patch readout, each token mapped linearly to its 8x8 patch (benchmarks/results/results_accuracy_patch.md:
    # the error of the change at wavenumbers below 8 down 2-3x on burgers2d_64)
    "b2d": dict(
        grid_shape=(64, 64), num_fields=1, patch_size=8, encoder_dim=64, encoder_depth=1, encoder_heads=4,
        num_latent_tokens=64, latent_dim=64, pooling="average", approximator_width=96, approximator_depth=2,
        approximator_heads=4, approximator_zero_init=True, approximator_locality=True, mlp_ratio=4, decoder_width=64,
        decoder_depth=1, decoder_heads=4, decoder_mlp_dim=128, decoder_locality=True, decoder_readout="bilinear",
        decoder_patch_readout=True, frequencies=(1, 2, 4, 8, 16, 32),
    ),
    # workload B64 (configs/train_burgers2d_64.yaml, benchmarks/bench_b64.py): 2D 64x64, sized for a GPU
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


def checked_sizes(sizes):
    """`sizes` with every missing size filled in, each value checked (a `ConfigError` names the size at fault)."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}
    return validated(ModelSizes, plain).model_dump()


def build_parts(grid_shape, num_fields=1, **sizes):
    """(encoder, approximator, decoder) from a grid, a field count and sizes (missing ones: SIZE_DEFAULTS)."""
    from upt_keras.layers import AnyPointDecoder, Approximator, GridEncoder, PointCloudEncoder

    unknown = sorted(set(sizes) - set(SIZE_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown model size(s): {', '.join(unknown)}; the sizes are {', '.join(SIZE_DEFAULTS)}")
    s = checked_sizes(sizes)
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
    patches = {}
    if s["decoder_patch_readout"]:
        if s["encoder"] != "grid" or s["pooling"] != "average" or encoder.num_patches != s["num_latent_tokens"]:
            raise ValueError(
                "decoder_patch_readout needs one latent token per patch of a grid encoder (encoder: grid, pooling: "
                f"average, num_latent_tokens = the number of patches); got encoder={s['encoder']!r}, "
                f"pooling={s['pooling']!r}, num_latent_tokens={s['num_latent_tokens']}"
                + (f" for {encoder.num_patches} patches" if s["encoder"] == "grid" else ""))
        patches = dict(patch_grid=encoder.patch_grid, patch_size=encoder.patch_size,
                       patch_overlap=s["decoder_patch_overlap"])
    decoder = AnyPointDecoder(
        num_fields, ndim, width=s["decoder_width"], depth=s["decoder_depth"], num_heads=s["decoder_heads"],
        mlp_dim=s["decoder_mlp_dim"], frequencies=s["frequencies"], locality=s["decoder_locality"],
        readout=s["decoder_readout"], name="decoder", **patches,
    )
    return encoder, approximator, decoder


def check_parts(encoder, approximator, decoder, grid_shape=None):
    """The output grid of a UPT made of these parts (the encoder's, for a grid encoder); a `ValueError` names what
    does not fit."""
    if encoder.input_kind == "grid":
        grid_shape = encoder.grid_shape if grid_shape is None else grid_shape
        if tuple(grid_shape) != encoder.grid_shape:
            raise ValueError(f"grid_shape={tuple(grid_shape)} differs from the encoder's {encoder.grid_shape}")
    elif grid_shape is None:
        raise ValueError(f"an encoder of input_kind={encoder.input_kind!r} needs the output grid: UPT(..., "
                         "grid_shape=...)")
    grid_shape = tuple(int(n) for n in grid_shape)
    if decoder.num_fields != encoder.num_channels or not decoder.coord_dim == encoder.coord_dim == len(grid_shape):
        raise ValueError(f"decoder (num_fields={decoder.num_fields}, coord_dim={decoder.coord_dim}) does not match "
                         f"the encoder (num_channels={encoder.num_channels}, coord_dim={encoder.coord_dim}) and "
                         f"grid {grid_shape}")
    if approximator.latent_dim != encoder.latent_dim:
        raise ValueError(f"approximator latent_dim={approximator.latent_dim} != encoder latent_dim="
                         f"{encoder.latent_dim}")
    return grid_shape


def build_unbuilt(encoder, approximator, decoder, grid_shape, num_fields):
    """Builds whichever of the three parts is not built yet (parts deserialised from a file come built) for fields
    of `num_fields` channels on `grid_shape` (or at points, for an encoder that does not take a grid)."""
    grid_shape = tuple(grid_shape)
    latent_shape, coord_shape = (None,) + tuple(encoder.latent_shape), (None, None, len(grid_shape))
    if not encoder.built:
        if encoder.input_kind == "grid":
            encoder.build((None,) + grid_shape + (num_fields,))
        else:
            encoder.build((None, None, num_fields), coord_shape)
    if not approximator.built:
        approximator.build(latent_shape)
    if not decoder.built:
        decoder.build(latent_shape, coord_shape)


def normalisation(field_mean, field_std, num_fields):
    """(mean, std) as lists of `num_fields` floats (defaults 0 and 1); a `ValueError` names what is wrong."""
    mean = [0.0] * num_fields if field_mean is None else [float(v) for v in field_mean]
    std = [1.0] * num_fields if field_std is None else [float(v) for v in field_std]
    if len(mean) != num_fields or len(std) != num_fields:
        raise ValueError(f"field_mean and field_std need {num_fields} entries (one per field)")
    if min(std) <= 0:
        raise ValueError(f"field_std must be positive, got {std}")
    return mean, std
