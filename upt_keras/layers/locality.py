"""The locality bias of the decoder's and the approximator's attention: a learned, per-head penalty on the squared
distance between a query and a token's position, added to the attention logits."""

import numpy as np

import keras
from keras import ops


def add_locality_scales(layer, num_heads):
    """The learned log-scales of a locality bias, one per head, starting at 1, 1/4, 1/16, ... (local to global)."""
    return layer.add_weight(shape=(num_heads,), name="locality_log_scale",
                            initializer=keras.initializers.Constant(np.log(0.25) * np.arange(num_heads)))


# Floor of the locality bias. A token this far down the logits gets a weight below e^-40 ~ 4e-18 of the nearest
# one's, i.e. none, while unbounded logits (thousands for far tokens) drive the softmax and its gradient into
# subnormal floats, which CPUs process ~100x slower: without the floor the 1D default's training step takes
# ~1.3x as long on CPU (benchmarks/results/results_accuracy.md).
LOCALITY_BIAS_FLOOR = -40.0


def locality_bias(queries, positions, log_scale, spacing2):
    """Attention-logit bias `max(-s_h |x_q - p_t|^2 / spacing^2, LOCALITY_BIAS_FLOOR)`: (..., heads, Q, T) from
    queries (..., Q, d), token positions (T, d) and per-head log-scales `log s_h` (the decoder's and the
    approximator's locality)."""
    positions = ops.cast(ops.convert_to_tensor(positions), "float32")
    d2 = ops.sum(ops.square(ops.expand_dims(ops.cast(queries, "float32"), -2) - positions), axis=-1)  # (..., Q, T)
    scale = ops.exp(ops.cast(log_scale, "float32")) / spacing2
    return ops.maximum(-ops.expand_dims(d2, -3) * scale[:, None, None], LOCALITY_BIAS_FLOOR)
