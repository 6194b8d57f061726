"""The DiT-style block of the approximator: norms modulated by a condition vector (the time step)."""

import keras
from keras import ops

from upt_keras.layers.attention import Attention
from upt_keras.layers.dense import Dense
from upt_keras.layers.mlp import MLP

PACKAGE = "upt_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdaLNBlock(keras.layers.Layer):
    """DiT-style transformer block whose norms are modulated by a condition vector.

    `cond` (B, C) -> shift, scale, gate for the attention and the MLP branch:
    `x = x + gate1 * Attn(LN(x) * (1 + scale1) + shift1)`, same for the MLP.
    An optional additive `bias` goes to the attention logits (the approximator's locality bias).

    Args:
        dim: int, width.
        num_heads: int.
        mlp_dim: int.
        qk_norm: bool.

    Example:
    >>> block = AdaLNBlock(32, 4, 64)
    >>> block(np.zeros((2, 8, 32)), np.ones((2, 32))).shape
    (2, 8, 32)
    """

    def __init__(self, dim, num_heads, mlp_dim, qk_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.mlp_dim, self.qk_norm = int(dim), int(num_heads), int(mlp_dim), bool(qk_norm)
        policy = self.dtype_policy
        norm_kw = dict(epsilon=1e-6, center=False, scale=False, dtype=policy)
        self.norm1 = keras.layers.LayerNormalization(name="norm1", **norm_kw)
        self.norm2 = keras.layers.LayerNormalization(name="norm2", **norm_kw)
        self.attn = Attention(self.dim, self.num_heads, qk_norm=self.qk_norm, name="attn", dtype=policy)
        self.mlp = MLP(self.dim, self.mlp_dim, name="mlp", dtype=policy)
        self.modulation = Dense(6 * self.dim, name="modulation", dtype=policy)

    def build(self, x_shape, cond_shape):
        self.norm1.build(x_shape)
        self.norm2.build(x_shape)
        self.attn.build(x_shape)
        self.mlp.build(x_shape)
        self.modulation.build(cond_shape)

    def call(self, x, cond, bias=None):
        mod = ops.expand_dims(self.modulation(ops.silu(cond)), 1)  # (B, 1, 6D)
        shift1, scale1, gate1, shift2, scale2, gate2 = ops.split(mod, 6, axis=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1.0 + scale1) + shift1, bias=bias)
        return x + gate2 * self.mlp(self.norm2(x) * (1.0 + scale2) + shift2)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"dim": self.dim, "num_heads": self.num_heads, "mlp_dim": self.mlp_dim, "qk_norm": self.qk_norm}
        )
        return config
