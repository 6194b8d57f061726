"""The two-layer GELU MLP of every transformer block."""

import keras

from upt_keras.layers.dense import Dense

PACKAGE = "upt_keras"


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
        self.fc1 = Dense(self.hidden_dim, name="fc1", activation="gelu", dtype=self.dtype_policy)
        self.fc2 = Dense(self.dim, name="fc2", dtype=self.dtype_policy)

    def build(self, x_shape):
        self.fc1.build(x_shape)
        self.fc2.build(tuple(x_shape[:-1]) + (self.hidden_dim,))

    def call(self, x):
        return self.fc2(self.fc1(x))

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "hidden_dim": self.hidden_dim})
        return config
