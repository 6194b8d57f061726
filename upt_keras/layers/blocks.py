"""Attention building blocks shared by the encoder, approximator and decoder.

All blocks are pre-norm. Attention goes through `keras.ops.dot_product_attention`
(fused SDPA on torch, cuDNN/XLA on JAX, XLA on TF) with its softmax in float32
under mixed precision.
"""

import numpy as np

import keras
from keras import ops

PACKAGE = "upt_keras"


_JAX_HAS_ACCELERATOR = None


def _fused_attention_supported(dtype):
    """Whether `ops.dot_product_attention` can run (forward and backward) in `dtype` here.

    Fused attention runs everywhere in float32, on torch in any dtype, and on TF
    (Keras computes its softmax in float32). JAX's CPU backend cannot
    differentiate float16/bfloat16 attention (no mixed-precision dot_general
    on CPU), so there the explicit form below is used.
    """
    global _JAX_HAS_ACCELERATOR
    if dtype == "float32" or keras.backend.backend() != "jax":
        return True
    if _JAX_HAS_ACCELERATOR is None:
        _JAX_HAS_ACCELERATOR = any(not d.startswith("cpu") for d in keras.distribution.list_devices())
    return _JAX_HAS_ACCELERATOR


def scaled_dot_product_attention(q, k, v, bias=None):
    """softmax(q k^T / sqrt(d) + bias) v for (B, T, heads, d) tensors, softmax in float32.

    `bias`: None or additive logits broadcastable to (B, heads, T, S).
    """
    if _fused_attention_supported(keras.backend.standardize_dtype(q.dtype)):
        if bias is not None:
            bias = ops.cast(bias, q.dtype)
        return ops.dot_product_attention(q, k, v, bias=bias)
    return explicit_attention(q, k, v, bias)


def explicit_attention(q, k, v, bias=None):
    """The same attention written out (materialises the (B, heads, T, S) weights)."""
    dtype = keras.backend.standardize_dtype(q.dtype)
    logits = ops.einsum("bqhd,bkhd->bhqk", q, k) * ops.cast(q.shape[-1] ** -0.5, dtype)
    if bias is not None:
        logits = ops.cast(logits, "float32") + ops.cast(bias, "float32")
    weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), dtype)
    return ops.einsum("bhqk,bkhd->bqhd", weights, v)


def add_locality_scales(layer, num_heads):
    """The learned log-scales of a locality bias, one per head, starting at 1, 1/4, 1/16, ... (local to global)."""
    return layer.add_weight(shape=(num_heads,), name="locality_log_scale",
                            initializer=keras.initializers.Constant(np.log(0.25) * np.arange(num_heads)))


# Floor of the locality bias. A token this far down the logits gets a weight below e^-40 ~ 4e-18 of the nearest
# one's, i.e. none, while unbounded logits (thousands for far tokens) drive the softmax and its gradient into
# subnormal floats, which CPUs process ~100x slower: without the floor the 1D default's training step takes
# ~1.3x as long on CPU (benchmarks/results_accuracy.md).
LOCALITY_BIAS_FLOOR = -40.0


def locality_bias(queries, positions, log_scale, spacing2):
    """Attention-logit bias `max(-s_h |x_q - p_t|^2 / spacing^2, LOCALITY_BIAS_FLOOR)`: (..., heads, Q, T) from
    queries (..., Q, d), token positions (T, d) and per-head log-scales `log s_h` (the decoder's and the
    approximator's locality)."""
    positions = ops.cast(ops.convert_to_tensor(positions), "float32")
    d2 = ops.sum(ops.square(ops.expand_dims(ops.cast(queries, "float32"), -2) - positions), axis=-1)  # (..., Q, T)
    scale = ops.exp(ops.cast(log_scale, "float32")) / spacing2
    return ops.maximum(-ops.expand_dims(d2, -3) * scale[:, None, None], LOCALITY_BIAS_FLOOR)


def _dense(units, name, **kwargs):
    return keras.layers.Dense(units, name=name, **kwargs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Attention(keras.layers.Layer):
    """Multi-head attention of `x` (B, T, D) over `context` (B, S, Dc).

    With `context=None` this is self-attention. There is no mask: every query
    sees every key, and queries never see each other unless they are also the keys.
    An optional additive `bias` (broadcastable to (B, heads, T, S)) is added to the
    attention logits (the decoder's locality bias).

    Args:
        dim: int, model width (output width too).
        num_heads: int, must divide `dim`.
        qk_norm: bool, layer-normalise queries and keys per head.

    Example:
    >>> attn = Attention(dim=32, num_heads=4)
    >>> attn(np.zeros((2, 7, 32)), np.zeros((2, 5, 32))).shape
    (2, 7, 32)
    """

    def __init__(self, dim, num_heads, qk_norm=False, **kwargs):
        super().__init__(**kwargs)
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim}")
        self.dim, self.num_heads, self.qk_norm = int(dim), int(num_heads), bool(qk_norm)
        self.head_dim = self.dim // self.num_heads
        policy = self.dtype_policy
        self.q_proj = _dense(self.dim, "q", dtype=policy)
        self.k_proj = _dense(self.dim, "k", dtype=policy)
        self.v_proj = _dense(self.dim, "v", dtype=policy)
        self.out_proj = _dense(self.dim, "out", dtype=policy)
        if self.qk_norm:
            self.q_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="q_norm", dtype=policy)
            self.k_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="k_norm", dtype=policy)

    def build(self, x_shape, context_shape=None):
        context_shape = x_shape if context_shape is None else context_shape
        self.q_proj.build(x_shape)
        self.k_proj.build(context_shape)
        self.v_proj.build(context_shape)
        self.out_proj.build(tuple(x_shape[:-1]) + (self.dim,))
        if self.qk_norm:
            head_shape = (None, None, self.num_heads, self.head_dim)
            self.q_norm.build(head_shape)
            self.k_norm.build(head_shape)

    def _heads(self, t):
        shape = ops.shape(t)
        return ops.reshape(t, (shape[0], shape[1], self.num_heads, self.head_dim))

    def call(self, x, context=None, bias=None):
        context = x if context is None else context
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(context))
        v = self._heads(self.v_proj(context))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
            q, k = ops.cast(q, v.dtype), ops.cast(k, v.dtype)
        out = scaled_dot_product_attention(q, k, v, bias)  # (B, T, heads, head_dim)
        shape = ops.shape(out)
        return self.out_proj(ops.reshape(out, (shape[0], shape[1], self.dim)))

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "num_heads": self.num_heads, "qk_norm": self.qk_norm})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MLP(keras.layers.Layer):
    """Two-layer GELU MLP applied per token.

    Args:
        dim: int, input and output width.
        hidden_dim: int, hidden width.

    Example:
    >>> MLP(16, 64)(np.zeros((2, 3, 16))).shape
    (2, 3, 16)
    """

    def __init__(self, dim, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.hidden_dim = int(dim), int(hidden_dim)
        self.fc1 = _dense(self.hidden_dim, "fc1", activation="gelu", dtype=self.dtype_policy)
        self.fc2 = _dense(self.dim, "fc2", dtype=self.dtype_policy)

    def build(self, x_shape):
        self.fc1.build(x_shape)
        self.fc2.build(tuple(x_shape[:-1]) + (self.hidden_dim,))

    def call(self, x):
        return self.fc2(self.fc1(x))

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "hidden_dim": self.hidden_dim})
        return config


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
        self.modulation = _dense(6 * self.dim, "modulation", dtype=policy)

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
