"""Multi-head attention (`Attention`) and the attention function every block uses.

Attention is torch's fused kernel on the torch backend (called on transposed views, without copies; with a bias,
on the CPU, while training: two matmuls),
`keras.ops.dot_product_attention` on TensorFlow and on JAX with an accelerator (XLA, cuDNN), and the explicit form
(two einsums, softmax in float32) on JAX without one, where it is both the faster and the only differentiable form in
float16/bfloat16.
"""

import keras
from keras import ops

from upt_keras.layers.dense import Dense

PACKAGE = "upt_keras"


_JAX_HAS_ACCELERATOR = None


def _jax_has_accelerator():
    """Whether JAX sees a device other than the CPU (looked up once)."""
    global _JAX_HAS_ACCELERATOR
    if _JAX_HAS_ACCELERATOR is None:
        _JAX_HAS_ACCELERATOR = any(not d.startswith("cpu") for d in keras.distribution.list_devices())
    return _JAX_HAS_ACCELERATOR


def scaled_dot_product_attention(q, k, v, bias=None):
    """softmax(q k^T / sqrt(d) + bias) v for (B, T, heads, d) tensors, softmax in float32.

    `bias`: None or additive logits broadcastable to (B, heads, T, S).

    torch: its fused kernel on transposed views (`_torch_attention`). JAX without an accelerator: the explicit form,
    since XLA's CPU backend cannot differentiate float16/bfloat16 attention (no mixed-precision dot_general on CPU)
    and in float32 the explicit form is faster than `jax.nn.dot_product_attention`'s XLA composite (0.35 s against
    0.49 s forward and backward at the B64 decoder's shapes, `benchmarks/results/results_kernels.md`). Elsewhere
    `ops.dot_product_attention`.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch_attention(q, k, v, bias)
    if backend == "jax" and not _jax_has_accelerator():
        return explicit_attention(q, k, v, bias)
    if bias is not None:
        bias = ops.cast(bias, q.dtype)
    return ops.dot_product_attention(q, k, v, bias=bias)


def _torch_attention(q, k, v, bias=None):
    """torch attention on (B, heads, T, d) views of the (B, T, heads, d) inputs.

    Without a bias, torch's fused kernel: `ops.dot_product_attention` makes contiguous (B, heads, T, d) copies of
    q, k and v before calling it, and its output then needs another copy to be reshaped back to (B, T, D); the CPU
    flash kernel takes the transposed views as they are and writes its output in (B, T, heads, d) order, so nothing
    is copied (on the B64 training step those copies were ~0.2 s of ~3.5 s on CPU:
    `benchmarks/results/results_b64_profile.md`). With a bias (the locality biases), on the CPU and with autograd on,
    two matmuls and a float32 softmax: there torch's kernel takes a float mask through a generic path that also
    checks every row for -inf (5% of the 1D and 2D CPU defaults' training steps, measured on one core); without
    autograd (inference, rollouts) the fused kernel is the faster one (1.7x on a full-grid 2D rollout).
    """
    import torch
    import torch.nn.functional as F

    q, k, v = (ops.convert_to_tensor(t).transpose(1, 2) for t in (q, k, v))
    if bias is None or q.device.type != "cpu" or not torch.is_grad_enabled():
        bias = None if bias is None else ops.convert_to_tensor(bias, q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2)
    logits = torch.matmul(q, k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5 + ops.convert_to_tensor(bias).float()
    return torch.matmul(torch.softmax(logits, dim=-1).to(v.dtype), v).transpose(1, 2)


def explicit_attention(q, k, v, bias=None):
    """The same attention written out (materialises the (B, heads, T, S) weights)."""
    dtype = keras.backend.standardize_dtype(q.dtype)
    logits = ops.einsum("bqhd,bkhd->bhqk", q, k) * ops.cast(q.shape[-1] ** -0.5, dtype)
    if bias is not None:
        logits = ops.cast(logits, "float32") + ops.cast(bias, "float32")
    weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), dtype)
    return ops.einsum("bhqk,bkhd->bqhd", weights, v)


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
        self.q_proj = Dense(self.dim, name="q", dtype=policy)
        self.k_proj = Dense(self.dim, name="k", dtype=policy)
        self.v_proj = Dense(self.dim, name="v", dtype=policy)
        self.out_proj = Dense(self.dim, name="out", dtype=policy)
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
