"""`Dense`: Keras's dense layer, with the bias added inside the matrix multiply on the torch backend."""

import keras
from keras import ops

PACKAGE = "upt_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` whose torch path is one fused kernel.

    Keras's `Dense.call` computes `matmul(x, kernel)` and then adds the bias: on torch, two passes over the output
    (`aten::mm`, then `aten::add`, and the same again in the backward pass). `torch.nn.functional.linear` does both
    in one (`aten::addmm`), as a plain-torch `nn.Linear` does. On the B64 training step the separate adds cost about
    a tenth of the step on CPU (`benchmarks/results/results_b64_profile.md`). On TensorFlow and JAX, without a bias, and
    for LoRA-enabled or quantized layers, Keras's own code runs. Weights, their names and the config are Keras's.

    Example:
    >>> Dense(8, activation="gelu")(np.zeros((2, 5, 4))).shape
    (2, 5, 8)
    """

    def call(self, inputs, training=None):
        if keras.backend.backend() != "torch" or self.bias is None or self.lora_enabled:
            return super().call(inputs, training=training)
        import torch

        kernel = ops.convert_to_tensor(self.kernel)
        x = ops.convert_to_tensor(inputs, kernel.dtype)
        # addmm on the (in, out) kernel as stored: `F.linear` would take its transpose, and the gradient of that
        # view costs a copy per layer and step.
        out = torch.addmm(ops.convert_to_tensor(self.bias), x.reshape(-1, x.shape[-1]), kernel)
        out = out.reshape(*x.shape[:-1], kernel.shape[-1])
        return self.activation(out) if self.activation is not None else out
