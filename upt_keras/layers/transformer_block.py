"""The pre-norm transformer block (self- or cross-attention) of the encoders and the decoder."""

import keras

from upt_keras.layers.attention import Attention
from upt_keras.layers.mlp import MLP

PACKAGE = "upt_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(keras.layers.Layer):
    """Pre-norm transformer block; self-attention, or cross-attention to a context.

    `x = x + Attn(LN(x), LN(context)); x = x + MLP(LN(x))`. With
    `cross_attention=True` the queries attend to the context tokens only, never
    to each other, so every query token is processed independently.

    Args:
        dim: int, width.
        num_heads: int.
        mlp_dim: int, hidden width of the MLP.
        cross_attention: bool, attend to a `context` given at call time.
        qk_norm: bool.

    Example:
    >>> block = TransformerBlock(32, 4, 64, cross_attention=True)
    >>> block(np.zeros((2, 9, 32)), np.zeros((2, 5, 32))).shape
    (2, 9, 32)
    """

    def __init__(self, dim, num_heads, mlp_dim, cross_attention=False, qk_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.mlp_dim = int(dim), int(num_heads), int(mlp_dim)
        self.cross_attention, self.qk_norm = bool(cross_attention), bool(qk_norm)
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1", dtype=policy)
        if self.cross_attention:
            self.norm_context = keras.layers.LayerNormalization(epsilon=1e-6, name="norm_ctx", dtype=policy)
        self.attn = Attention(self.dim, self.num_heads, qk_norm=self.qk_norm, name="attn", dtype=policy)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2", dtype=policy)
        self.mlp = MLP(self.dim, self.mlp_dim, name="mlp", dtype=policy)

    def build(self, x_shape, context_shape=None):
        self.norm1.build(x_shape)
        if self.cross_attention:
            self.norm_context.build(context_shape)
        self.attn.build(x_shape, context_shape if self.cross_attention else None)
        self.norm2.build(x_shape)
        self.mlp.build(x_shape)

    def call(self, x, context=None, bias=None):
        if self.cross_attention:
            if context is None:
                raise ValueError("a cross-attention block needs a context")
            x = x + self.attn(self.norm1(x), self.norm_context(context), bias=bias)
        else:
            x = x + self.attn(self.norm1(x), bias=bias)
        return x + self.mlp(self.norm2(x))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "cross_attention": self.cross_attention,
                "qk_norm": self.qk_norm,
            }
        )
        return config
