"""Sin/cos features of coordinates and of the time step."""

import math

import keras
from keras import ops

PACKAGE = "upt_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class FourierFeatures(keras.layers.Layer):
    """Sin/cos features of coordinates in the unit cube.

    For every coordinate axis `d` and frequency `f` the layer emits
    `sin(2 pi f x_d)` and `cos(2 pi f x_d)`, plus the raw coordinates. With
    integer frequencies the features are periodic on [0, 1), which matches
    periodic PDE domains. Features are computed in float32 whatever the
    dtype policy, so that high frequencies keep their phase under float16.

    Args:
        num_dims: int, 1, 2 or 3: the number of coordinate axes.
        frequencies: sequence of positive numbers.

    Example:
    >>> feats = FourierFeatures(num_dims=2, frequencies=(1, 2, 4))
    >>> feats(np.zeros((5, 2))).shape   # 2 axes x 3 freqs x (sin, cos) + 2
    (5, 14)
    """

    def __init__(self, num_dims, frequencies=(1, 2, 4, 8), **kwargs):
        super().__init__(**kwargs)
        if num_dims not in (1, 2, 3):
            raise ValueError(f"num_dims must be 1, 2 or 3, got {num_dims}")
        frequencies = [float(f) for f in frequencies]
        if not frequencies or min(frequencies) <= 0:
            raise ValueError(f"frequencies must be non-empty and positive, got {frequencies}")
        self.num_dims = int(num_dims)
        self.frequencies = frequencies
        self.output_dim = self.num_dims * (2 * len(frequencies) + 1)

    def call(self, coords):
        if coords.shape[-1] != self.num_dims:
            raise ValueError(
                f"coordinates must have {self.num_dims} entries on the last axis, got shape {tuple(coords.shape)}"
            )
        x = ops.cast(coords, "float32")
        freqs = ops.convert_to_tensor([2.0 * math.pi * f for f in self.frequencies], "float32")
        angles = ops.expand_dims(x, -1) * freqs  # (..., d, F)
        new_shape = tuple(ops.shape(x)[:-1]) + (self.num_dims * len(self.frequencies),)
        angles = ops.reshape(angles, new_shape)
        feats = ops.concatenate([x, ops.sin(angles), ops.cos(angles)], axis=-1)
        return ops.cast(feats, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_dims": self.num_dims, "frequencies": list(self.frequencies)})
        return config


def timestep_embedding(t, dim, max_period=10000.0):
    """Sin/cos embedding of a batch of scalars `t` (B,) -> (B, dim), in float32."""
    half = dim // 2
    exponents = ops.arange(half, dtype="float32") / max(half, 1)
    freqs = ops.exp(-math.log(max_period) * exponents)
    args = ops.expand_dims(ops.cast(t, "float32"), -1) * freqs * max_period ** 0.5
    emb = ops.concatenate([ops.sin(args), ops.cos(args)], axis=-1)
    if dim % 2:
        emb = ops.pad(emb, [[0, 0], [0, 1]])
    return emb
