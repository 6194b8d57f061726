"""Any-point decoder: latent tokens + arbitrary coordinates -> field values."""

import keras
from keras import ops

from upt_keras.layers.dense import Dense
from upt_keras.layers.fourier_features import FourierFeatures
from upt_keras.layers.locality import add_locality_scales, locality_bias
from upt_keras.layers.transformer_block import TransformerBlock

PACKAGE = "upt_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnyPointDecoder(keras.layers.Layer):
    """Decodes the field at arbitrary query coordinates by cross-attention to latent tokens.

    coords (B, Q, d) or (Q, d) -> Fourier features -> MLP -> `depth` cross-attention
    blocks that attend to the latent tokens only (never to other queries) ->
    one linear head per field. Each query is processed independently, so a point
    decodes to the same value alone or among any number of others, the cost is
    linear in Q, and queries can lie anywhere (off-grid, finer grids).

    Args:
        num_fields: int, number of output fields (channels).
        coord_dim: int, 1, 2 or 3.
        width: int.
        depth: int, cross-attention blocks.
        num_heads: int.
        mlp_dim: int, hidden width of the block MLPs.
        frequencies: Fourier frequencies of the query features.
        locality: bool, add a learned distance bias to the attention logits:
            `-s_h * |x_q - p_t|^2 / spacing^2` per head h, where `p_t` are the
            latent tokens' positions (given at call time) and `spacing` is the
            mean token spacing `T^(-1/coord_dim)`. The scales `s_h` start at
            1, 1/4, 1/16, ... (heads from local to almost global) and are learned.
            A query then starts out looking at the tokens near it, which the
            decoder would otherwise have to learn from the Fourier features.
            Called without positions, the decoder attends without the bias.
        readout: "linear" (one linear head per field on the decoded features) or "bilinear": the linear head plus
            `sum_j x_j h_j(coords)`, the decoded features weighted by a learned function of the query's position
            (a linear map of its embedding, zero-initialised). A point's value is then a position-dependent linear
            read of the content, as a patch "unpatchify" layer would give on a grid, but at any coordinates: one
            latent token can hold many points' values (a 2D token covers a whole patch), which a sum of
            position and content followed by one MLP struggles to separate.

    Example:
    >>> dec = AnyPointDecoder(num_fields=2, coord_dim=2, width=32, depth=1)
    >>> dec(np.zeros((3, 8, 16)), np.random.rand(100, 2)).shape
    (3, 100, 2)
    """

    def __init__(self, num_fields, coord_dim, width=128, depth=2, num_heads=4, mlp_dim=256,
                 frequencies=(1, 2, 4, 8), locality=False, readout="linear", **kwargs):
        super().__init__(**kwargs)
        if readout not in ("linear", "bilinear"):
            raise ValueError(f"readout must be 'linear' or 'bilinear', got {readout!r}")
        self.locality, self.readout = bool(locality), readout
        self.num_fields, self.coord_dim = int(num_fields), int(coord_dim)
        self.width, self.depth, self.num_heads, self.mlp_dim = int(width), int(depth), int(num_heads), int(mlp_dim)
        self.frequencies = [float(f) for f in frequencies]
        policy = self.dtype_policy
        self.features = FourierFeatures(self.coord_dim, self.frequencies, name="features", dtype=policy)
        self.query_mlp = [
            Dense(self.width, activation="gelu", name="query_0", dtype=policy),
            Dense(self.width, name="query_1", dtype=policy),
        ]
        self.latent_proj = Dense(self.width, name="latent_proj", dtype=policy)
        self.blocks = [
            TransformerBlock(self.width, self.num_heads, self.mlp_dim, cross_attention=True,
                             name=f"block_{i}", dtype=policy)
            for i in range(self.depth)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm", dtype=policy)
        self.heads = [Dense(1, name=f"head_{i}", dtype=policy) for i in range(self.num_fields)]
        if self.readout == "bilinear":  # per field, position -> weights on the decoded features
            self.position_heads = [Dense(self.width, kernel_initializer="zeros", name=f"position_head_{i}",
                                         dtype=policy) for i in range(self.num_fields)]

    def build(self, latent_shape, coords_shape=None):
        query_shape = (None, None, self.width)
        self.query_mlp[0].build((None, None, self.features.output_dim))
        self.query_mlp[1].build(query_shape)
        self.latent_proj.build(latent_shape)
        context_shape = tuple(latent_shape[:-1]) + (self.width,)
        for block in self.blocks:
            block.build(query_shape, context_shape)
        self.norm.build(query_shape)
        for head in self.heads + getattr(self, "position_heads", []):
            head.build(query_shape)
        if self.locality:
            num_tokens = latent_shape[1]
            # mean distance between neighbouring tokens, for a unit-free scale; 1 when unknown
            self._spacing2 = float(num_tokens) ** (-2.0 / self.coord_dim) if num_tokens else 1.0
            self.locality_log_scale = add_locality_scales(self, self.num_heads)

    def locality_bias(self, coords, positions):
        """(B, heads, Q, T) logits bias `-s_h |x_q - p_t|^2 / spacing^2` from coords (B, Q, d) and positions (T, d)
        (layers.locality.locality_bias)."""
        return locality_bias(coords, positions, self.locality_log_scale, self._spacing2)

    def call(self, latent, coords, positions=None):
        batch = ops.shape(latent)[0]
        if len(coords.shape) not in (2, 3) or coords.shape[-1] != self.coord_dim:
            raise ValueError(
                f"coords must have shape (Q, {self.coord_dim}) or (batch, Q, {self.coord_dim}), "
                f"got shape {tuple(coords.shape)}"
            )
        shared = len(coords.shape) == 2
        if shared:  # coordinates shared by the whole batch: query embedding and bias computed once, then broadcast
            coords = ops.expand_dims(coords, 0)
        x = self.features(coords)
        for layer in self.query_mlp:
            x = layer(x)
        query = x  # the position's embedding, (1 or B, Q, width)
        if shared:
            x = ops.broadcast_to(x, (batch,) + tuple(ops.shape(x)[1:]))
        context = self.latent_proj(latent)
        bias = self.locality_bias(coords, positions) if self.locality and positions is not None else None
        for block in self.blocks:
            x = block(x, context, bias=bias)  # (B, Q, width)
        x = self.norm(x)
        out = [head(x) for head in self.heads]
        if self.readout == "bilinear":
            out = [o + ops.sum(x * pos(query), axis=-1, keepdims=True) for o, pos in zip(out, self.position_heads)]
        return ops.concatenate(out, axis=-1)  # (B, Q, num_fields)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_fields": self.num_fields,
                "coord_dim": self.coord_dim,
                "width": self.width,
                "depth": self.depth,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "frequencies": list(self.frequencies),
                "locality": self.locality,
                "readout": self.readout,
            }
        )
        return config


def output_coords(inputs, coords=None):
    """Where to predict: the `"coords"` of a dict input when it has them, else `coords` (None: the grid)."""
    return inputs.get("coords", coords) if isinstance(inputs, dict) else coords
