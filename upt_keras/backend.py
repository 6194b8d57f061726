"""The few places where the backends differ in what an eager call leaves behind."""

import contextlib

import keras


def inference_mode():
    """A context in which eager calls record no autograd graph: `torch.no_grad()` on torch.

    TensorFlow and JAX build no gradient state outside a `GradientTape` or a traced function, so there it is a null
    context. Eager torch calls record the graph of every op on tensors that need gradients (the weights): a chunked
    decode of 10^6 points or a 20-step rollout otherwise keeps all their activations alive.
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()
