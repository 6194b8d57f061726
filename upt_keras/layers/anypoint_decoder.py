"""Any-point decoder: latent tokens + arbitrary coordinates -> field values."""

import numpy as np

import keras
from keras import ops

from upt_keras.layers.dense import Dense
from upt_keras.layers.fourier_features import FourierFeatures
from upt_keras.layers.grid_encoder import interpolate_on_grid
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
        patch_grid, patch_size: tokens laid out as the patches of a grid (`patch_grid`, e.g. `(8, 8)`, one token per
            patch of `patch_size` points per axis, in row-major order, as `GridEncoder` with average pooling and one
            token per patch gives them): adds a patch readout, a linear map of each token to the values of its
            patch's points (zero-initialised), read at the queries by multilinear interpolation on the grid those
            patches tile. It gives the decoder a direct, linear path from a token to the detail inside its patch
            (the inverse of a patchify layer), which the attention path learns only slowly. None: no patch readout.

    Example:
    >>> dec = AnyPointDecoder(num_fields=2, coord_dim=2, width=32, depth=1)
    >>> dec(np.zeros((3, 8, 16)), np.random.rand(100, 2)).shape
    (3, 100, 2)
    """

    def __init__(self, num_fields, coord_dim, width=128, depth=2, num_heads=4, mlp_dim=256,
                 frequencies=(1, 2, 4, 8), locality=False, readout="linear", patch_grid=None, patch_size=None,
                 patch_overlap=False, **kwargs):
        super().__init__(**kwargs)
        if readout not in ("linear", "bilinear"):
            raise ValueError(f"readout must be 'linear' or 'bilinear', got {readout!r}")
        self.patch_grid = None if patch_grid is None else tuple(int(n) for n in patch_grid)
        self.patch_size = None if patch_size is None else int(patch_size)
        self.patch_overlap = bool(patch_overlap)
        if (self.patch_grid is None) != (self.patch_size is None):
            raise ValueError(f"patch_grid and patch_size go together, got patch_grid={patch_grid}, "
                             f"patch_size={patch_size}")
        if self.patch_grid is not None and (int(coord_dim) not in (1, 2) or len(self.patch_grid) != int(coord_dim)
                                            or min(self.patch_grid) < 1 or self.patch_size < 1):
            raise ValueError(f"patch_grid={patch_grid} (one positive size per axis, {coord_dim} axes; 1D or 2D) "
                             f"and patch_size={patch_size} (positive) describe no patches")
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
        if self.patch_grid is not None:  # token -> its patch's values, every field
            span = self.patch_size * (2 if self.patch_overlap else 1)
            self.unpatchify = Dense(span ** self.coord_dim * self.num_fields, kernel_initializer="zeros",
                                    bias_initializer="zeros", name="unpatchify", dtype=policy)

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
        if self.patch_grid is not None:
            num_tokens, patches = latent_shape[1], int(np.prod(self.patch_grid))
            if num_tokens is not None and num_tokens != patches:
                raise ValueError(f"a patch readout over patch_grid={self.patch_grid} needs one token per patch "
                                 f"({patches}), got latent tokens of shape {tuple(latent_shape)}")
            self.unpatchify.build(latent_shape)
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
        out = ops.concatenate(out, axis=-1)  # (B, Q, num_fields)
        if self.patch_grid is not None:
            out = out + ops.cast(self.patch_values(latent, coords), out.dtype)
        return out

    def patch_values(self, latent, coords):
        """The patch readout at `coords` ((Q, d) or (B or 1, Q, d)): each token's linear map to its patch's points,
        laid out on the grid the patches tile and interpolated there, (B, Q, num_fields) float32."""
        values = self.unpatchify(latent)  # (B, T, p^d * fields)
        if self.patch_overlap:
            return interpolate_on_grid(self.overlapped_grid(values), coords)
        patches = ops.reshape(values, (ops.shape(values)[0],) + self.patch_grid + (self.patch_size,) * self.coord_dim
                              + (self.num_fields,))
        return interpolate_on_grid(self._tile(patches), coords)

    def _tile(self, patches):
        """(B, *patch_grid, p[, p], fields) patch values -> (B, *grid, fields): patch (r, c) at points r p.., c p..."""
        batch, p, fields = ops.shape(patches)[0], self.patch_size, self.num_fields
        if self.coord_dim == 1:
            return ops.reshape(patches, (batch, self.patch_grid[0] * p, fields))
        rows, cols = self.patch_grid
        return ops.reshape(ops.transpose(patches, (0, 1, 3, 2, 4, 5)), (batch, rows * p, cols * p, fields))

    def overlapped_grid(self, values):
        """The grid of the overlapping patch readout: token t's values on a window of 2p points per axis centred on
        its patch, weighted by a tent (`1 - |offset from the window's centre| / p` per axis, a partition of unity:
        the windows' weights sum to 1 at every point), added up with periodic wrap. (B, *grid, fields)."""
        p, fields, ndim = self.patch_size, self.num_fields, self.coord_dim
        batch = ops.shape(values)[0]
        tent = 1.0 - np.abs(np.arange(2 * p) - (p - 0.5)) / p  # (2p,), halves (2, p)
        if ndim == 1:
            (rows,) = self.patch_grid
            v = ops.reshape(ops.cast(values, "float32"), (batch, rows, 2, p, fields))
            v = v * ops.convert_to_tensor(tent.reshape(2, p, 1).astype("float32"))
            # window t covers patches t and t + 1 of the grid shifted by p // 2
            shifted = v[:, :, 0] + ops.roll(v[:, :, 1], 1, axis=1)  # (B, rows, p, fields)
            return ops.roll(self._tile(shifted), -(p // 2), axis=1)
        rows, cols = self.patch_grid
        v = ops.reshape(ops.cast(values, "float32"), (batch, rows, cols, 2, p, 2, p, fields))
        v = v * ops.convert_to_tensor(np.multiply.outer(tent, tent).reshape(2, p, 2, p, 1).astype("float32"))
        # window (r, c) covers patches r..r+1 x c..c+1 of the shifted grid: its quarter (a, b) lands on (r+a, c+b)
        shifted = (v[:, :, :, 0, :, 0] + ops.roll(v[:, :, :, 1, :, 0], 1, axis=1)
                   + ops.roll(v[:, :, :, 0, :, 1], 1, axis=2)
                   + ops.roll(ops.roll(v[:, :, :, 1, :, 1], 1, axis=1), 1, axis=2))  # (B, rows, cols, p, p, fields)
        return ops.roll(ops.roll(self._tile(shifted), -(p // 2), axis=1), -(p // 2), axis=2)

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
                "patch_grid": None if self.patch_grid is None else list(self.patch_grid),
                "patch_size": self.patch_size,
                "patch_overlap": self.patch_overlap,
            }
        )
        return config


def output_coords(inputs, coords=None):
    """Where to predict: the `"coords"` of a dict input when it has them, else `coords` (None: the grid)."""
    return inputs.get("coords", coords) if isinstance(inputs, dict) else coords
