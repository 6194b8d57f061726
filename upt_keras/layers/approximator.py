"""Approximator: advances the latent tokens by one time step."""

import keras
from keras import ops

from upt_keras.layers.adaln_block import AdaLNBlock
from upt_keras.layers.dense import Dense
from upt_keras.layers.fourier_features import timestep_embedding
from upt_keras.layers.locality import add_locality_scales, locality_bias

PACKAGE = "upt_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Approximator(keras.layers.Layer):
    """Pre-norm transformer on latent tokens, conditioned on the time step dt.

    `z_next = z + f(z, dt)`: tokens are projected `latent_dim -> width`, pass
    `depth` DiT-style blocks whose layer norms are modulated (shift, scale, gate)
    by an embedding of dt, and are projected back to `latent_dim`.

    Args:
        latent_dim: int, width of the latent tokens.
        width: int, internal width.
        depth: int, number of blocks.
        num_heads: int.
        mlp_ratio: number, MLP hidden width / width.
        qk_norm: bool, normalise queries and keys (stabilises deep stacks).
        zero_init: bool, start the output projection at zero, so that the
            untrained approximator is the identity (`z_next = z`) and training
            learns the change over one step (as DiT's adaLN-Zero and UPT's
            `init_last_proj_zero`). Without it the first steps decode a randomly
            perturbed latent.
        locality: bool, add a learned distance bias to the self-attention logits,
            `-s_h * |p_i - p_j|^2 / spacing^2` per head h between the tokens'
            positions `p` (given at call time; `spacing` is the mean token spacing
            `T^(-1/d)`). The scales start at 1, 1/4, 1/16, ... (heads from local to
            almost global) and are learned: a token starts out mixing with its
            neighbours, as a local PDE's update does. Called without positions,
            the approximator attends without the bias.

    Example:
    >>> approx = Approximator(latent_dim=16, width=32, depth=2, num_heads=4)
    >>> approx(np.zeros((2, 8, 16)), dt=np.full((2,), 0.01)).shape
    (2, 8, 16)
    """

    def __init__(self, latent_dim, width=128, depth=4, num_heads=4, mlp_ratio=4, qk_norm=True, zero_init=False,
                 locality=False, **kwargs):
        super().__init__(**kwargs)
        self.zero_init, self.locality = bool(zero_init), bool(locality)
        self.latent_dim, self.width, self.depth = int(latent_dim), int(width), int(depth)
        self.num_heads, self.mlp_ratio, self.qk_norm = int(num_heads), mlp_ratio, bool(qk_norm)
        policy = self.dtype_policy
        self.in_proj = Dense(self.width, name="in_proj", dtype=policy)
        self.cond_mlp = [
            Dense(self.width, activation="silu", name="cond_0", dtype=policy),
            Dense(self.width, name="cond_1", dtype=policy),
        ]
        self.blocks = [
            AdaLNBlock(self.width, self.num_heads, int(self.width * mlp_ratio), qk_norm=self.qk_norm,
                       name=f"block_{i}", dtype=policy)
            for i in range(self.depth)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm", dtype=policy)
        zero = dict(kernel_initializer="zeros", bias_initializer="zeros") if self.zero_init else {}
        self.out_proj = Dense(self.latent_dim, name="out_proj", dtype=policy, **zero)

    def build(self, z_shape, dt_shape=None):
        self.in_proj.build(z_shape)
        cond_shape = (None, self.width)
        for layer in self.cond_mlp:
            layer.build(cond_shape)
        x_shape = tuple(z_shape[:-1]) + (self.width,)
        for block in self.blocks:
            block.build(x_shape, cond_shape)
        self.norm.build(x_shape)
        self.out_proj.build(x_shape)
        if self.locality:
            self.locality_log_scale = add_locality_scales(self, self.num_heads)

    def locality_bias(self, positions):
        """(1, heads, T, T) logits bias `-s_h |p_i - p_j|^2 / spacing^2` from token positions (T, d)."""
        num, ndim = tuple(positions.shape)
        return locality_bias(positions, positions, self.locality_log_scale, float(num) ** (-2.0 / ndim))[None]

    def call(self, z, dt, positions=None):
        batch = ops.shape(z)[0]
        dt = ops.broadcast_to(ops.reshape(ops.cast(dt, "float32"), (-1,)), (batch,))
        cond = timestep_embedding(dt, self.width)
        for layer in self.cond_mlp:
            cond = layer(cond)
        x = self.in_proj(z)
        bias = self.locality_bias(positions) if self.locality and positions is not None else None
        for block in self.blocks:
            x = block(x, cond, bias=bias)
        return z + ops.cast(self.out_proj(self.norm(x)), z.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "latent_dim": self.latent_dim,
                "width": self.width,
                "depth": self.depth,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "qk_norm": self.qk_norm,
                "zero_init": self.zero_init,
                "locality": self.locality,
            }
        )
        return config
