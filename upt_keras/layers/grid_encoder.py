"""Grid encoder: fields on a regular 1D/2D grid -> a fixed number of latent tokens."""

import numpy as np

import keras
from keras import ops

from upt_keras.layers.dense import Dense
from upt_keras.layers.encoder import Encoder
from upt_keras.layers.fourier_features import FourierFeatures
from upt_keras.layers.transformer_block import TransformerBlock

PACKAGE = "upt_keras"


def grid_coordinates(grid_shape):
    """Coordinates of every point of a regular grid, normalised to [0, 1) per axis.

    Point `i` of an axis with `n` points sits at `i / n` (the periodic, cell-left
    convention of the solvers' `upt_keras.data.periodic_grid`). Returns a float32 numpy array (prod(grid_shape), len(grid_shape)),
    row-major (the last axis varies fastest), matching `reshape(B, N, C)` of a
    channels-last field.
    """
    axes = [np.arange(n, dtype=np.float64) / n for n in grid_shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=-1).astype("float32")


def interpolate_on_grid(fields, coords):
    """Fields on a periodic grid, read at any points by multilinear interpolation.

    `fields` (B, *grid, C); `coords` (Q, d) or (B, Q, d) in [0, 1) per axis, in the
    `grid_coordinates` convention (point `i` of `n` at `i / n`, the last cell wrapping
    round to point 0). At grid points the values are the fields' own. Returns (B, Q, C)
    float32.
    """
    grid = tuple(int(n) for n in fields.shape[1:-1])
    batch, channels = ops.shape(fields)[0], fields.shape[-1]
    flat = ops.reshape(ops.cast(fields, "float32"), (batch, -1, channels))
    coords = ops.cast(coords, "float32")
    if len(coords.shape) == 2:
        coords = coords[None]
    if coords.shape[-1] != len(grid):
        raise ValueError(f"coords of {coords.shape[-1]} dimensions for a {len(grid)}D grid {grid}")
    corners = [(ops.zeros(ops.shape(coords)[:2], "int32"), ops.ones(ops.shape(coords)[:2], "float32"))]
    stride = 1
    for axis in reversed(range(len(grid))):
        n = grid[axis]
        pos = coords[..., axis] * n
        low = ops.floor(pos + 1e-4)  # grid points land on their own index despite rounding
        frac = ops.clip(pos - low, 0.0, 1.0)
        low = ops.cast(low, "int32")
        lo, hi = ops.mod(low, n) * stride, ops.mod(low + 1, n) * stride
        corners = [pair for index, weight in corners
                   for pair in ((index + lo, weight * (1.0 - frac)), (index + hi, weight * frac))]
        stride *= n
    out = 0.0
    for index, weight in corners:
        index = ops.broadcast_to(index[..., None], (batch, ops.shape(index)[1], channels))
        out = out + ops.take_along_axis(flat, index, axis=1) * weight[..., None]
    return out


@keras.saving.register_keras_serializable(package=PACKAGE)
class GridEncoder(Encoder):
    """Encodes channels-last fields on a regular grid into latent tokens.

    (B, X, C) or (B, H, W, C) -> patchify (a 3-point conv stem, then a conv
    with kernel = stride = `patch_size`) -> add projected Fourier features of the
    patch centres -> `depth` self-attention blocks -> reduce the P patch tokens
    to `num_latent_tokens` (perceiver pooling: learned queries cross-attend to the
    patch tokens; or average pooling of contiguous groups) -> project to `latent_dim`.

    Args:
        grid_shape: tuple of ints, the grid, e.g. `(256,)` or `(64, 64)`.
        num_channels: int, number of physical fields (channels).
        patch_size: int, must divide every grid dimension.
        dim: int, width of the patch tokens.
        depth: int, self-attention blocks on the patch tokens (0 allowed).
        num_heads: int.
        mlp_ratio: number, MLP hidden width / dim.
        num_latent_tokens: int.
        latent_dim: int.
        pooling: `"perceiver"` or `"average"`.
        frequencies: Fourier frequencies of the patch-centre features.

    Example:
    >>> enc = GridEncoder((64,), num_channels=1, patch_size=4, dim=32,
    ...                   num_latent_tokens=8, latent_dim=16)
    >>> enc(np.zeros((2, 64, 1))).shape
    (2, 8, 16)
    """

    input_kind = "grid"

    def __init__(
        self,
        grid_shape,
        num_channels,
        patch_size=4,
        dim=64,
        depth=1,
        num_heads=4,
        mlp_ratio=4,
        num_latent_tokens=32,
        latent_dim=64,
        pooling="perceiver",
        frequencies=(1, 2, 4, 8),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.grid_shape = tuple(int(n) for n in grid_shape)
        if len(self.grid_shape) not in (1, 2):
            raise ValueError(f"GridEncoder supports 1D and 2D grids, got grid_shape={self.grid_shape}")
        if any(n % int(patch_size) for n in self.grid_shape):
            raise ValueError(f"patch_size={patch_size} does not divide grid_shape={self.grid_shape}")
        if pooling not in ("perceiver", "average"):
            raise ValueError(f"pooling must be 'perceiver' or 'average', got {pooling!r}")
        self.num_channels, self.patch_size, self.dim = int(num_channels), int(patch_size), int(dim)
        self.coord_dim = len(self.grid_shape)
        self.depth, self.num_heads, self.mlp_ratio = int(depth), int(num_heads), mlp_ratio
        self.num_latent_tokens, self.latent_dim = int(num_latent_tokens), int(latent_dim)
        self.pooling, self.frequencies = pooling, [float(f) for f in frequencies]
        ndim = len(self.grid_shape)
        self.patch_grid = tuple(n // self.patch_size for n in self.grid_shape)
        self.num_patches = int(np.prod(self.patch_grid))
        if pooling == "average" and self.num_patches % self.num_latent_tokens:
            raise ValueError(
                f"average pooling needs num_latent_tokens={num_latent_tokens} to divide the "
                f"{self.num_patches} patches of grid_shape={self.grid_shape}"
            )
        # Patch centres in the [0, 1) convention of `grid_coordinates`.
        centres = grid_coordinates(self.patch_grid) + (self.patch_size - 1) / (2.0 * np.array(self.grid_shape))
        self._patch_centres = centres.astype("float32")
        # Average pooling keeps locality: token t summarises a contiguous group of patches and sits at their mean
        # centre. Perceiver tokens have no position.
        self.token_positions = None
        if pooling == "average":
            group = self.num_patches // self.num_latent_tokens
            self.token_positions = self._patch_centres.reshape(self.num_latent_tokens, group, ndim).mean(axis=1)

        policy = self.dtype_policy
        conv = keras.layers.Conv1D if ndim == 1 else keras.layers.Conv2D
        self.stem = conv(self.dim // 2, 3, padding="same", activation="gelu", name="stem", dtype=policy)
        self.patchify = conv(self.dim, self.patch_size, strides=self.patch_size, name="patchify", dtype=policy)
        self.pos_features = FourierFeatures(ndim, self.frequencies, name="pos_features", dtype=policy)
        self.pos_proj = Dense(self.dim, name="pos_proj", dtype=policy)
        mlp_dim = int(self.dim * mlp_ratio)
        self.blocks = [
            TransformerBlock(self.dim, self.num_heads, mlp_dim, name=f"block_{i}", dtype=policy)
            for i in range(self.depth)
        ]
        if pooling == "perceiver":
            self.pool = TransformerBlock(
                self.dim, self.num_heads, mlp_dim, cross_attention=True, name="perceiver", dtype=policy
            )
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm", dtype=policy)
        self.out_proj = Dense(self.latent_dim, name="out_proj", dtype=policy)

    def build(self, fields_shape, positions_shape=None):
        self.check_input_shape(fields_shape)
        self.stem.build(fields_shape)
        self.patchify.build(tuple(fields_shape[:-1]) + (self.dim // 2,))
        self.pos_proj.build((None, self.pos_features.output_dim))
        token_shape = (None, self.num_patches, self.dim)
        for block in self.blocks:
            block.build(token_shape)
        pooled_shape = (None, self.num_latent_tokens, self.dim)
        if self.pooling == "perceiver":
            self.pool.build(pooled_shape, token_shape)
        self.norm.build(pooled_shape)
        self.out_proj.build(pooled_shape)
        if self.pooling == "perceiver":
            self.latent_queries = self.add_weight(
                shape=(self.num_latent_tokens, self.dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                name="latent_queries",
            )

    def check_input_shape(self, shape):
        """Raises ValueError naming the shape when it is not (B, *grid_shape, num_channels)."""
        shape = tuple(shape)
        expected = (None,) + self.grid_shape + (self.num_channels,)
        if len(shape) != len(expected):
            raise ValueError(
                f"GridEncoder expects fields of shape (batch, {', '.join(map(str, expected[1:]))}) "
                f"(rank {len(expected)}), got shape {shape} (rank {len(shape)})"
            )
        if tuple(shape[1:-1]) != self.grid_shape:
            raise ValueError(f"GridEncoder was built for grid {self.grid_shape}, got fields of shape {shape}")
        if shape[-1] != self.num_channels:
            raise ValueError(
                f"GridEncoder expects {self.num_channels} channel(s) on the last axis, got fields of shape {shape}"
            )

    def call(self, fields, positions=None):
        if positions is not None:
            raise ValueError("GridEncoder takes fields on its grid; the positions are implied (got positions)")
        self.check_input_shape(fields.shape)
        x = self.patchify(self.stem(fields))  # (B, *patch_grid, dim)
        batch = ops.shape(x)[0]
        x = ops.reshape(x, (batch, self.num_patches, self.dim))  # (B, P, dim)
        x = x + self.pos_proj(self.pos_features(ops.convert_to_tensor(self._patch_centres)))
        for block in self.blocks:
            x = block(x)
        if self.pooling == "perceiver":
            queries = ops.cast(ops.expand_dims(self.latent_queries, 0), x.dtype)
            queries = ops.broadcast_to(queries, (batch, self.num_latent_tokens, self.dim))
            x = self.pool(queries, x)  # (B, T, dim)
        else:
            group = self.num_patches // self.num_latent_tokens
            x = ops.mean(ops.reshape(x, (batch, self.num_latent_tokens, group, self.dim)), axis=2)
        return self.out_proj(self.norm(x))  # (B, T, latent_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_shape": list(self.grid_shape),
                "num_channels": self.num_channels,
                "patch_size": self.patch_size,
                "dim": self.dim,
                "depth": self.depth,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "num_latent_tokens": self.num_latent_tokens,
                "latent_dim": self.latent_dim,
                "pooling": self.pooling,
                "frequencies": list(self.frequencies),
            }
        )
        return config
