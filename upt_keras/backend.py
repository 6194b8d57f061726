"""The few places where the backends differ in what an eager call leaves behind."""

import contextlib

import keras
from keras import ops


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


def concat_chunks(make_chunk, total, chunk):
    """`concatenate([make_chunk(s) for s in range(0, total, chunk)], axis=1)`, in bounded memory.

    On torch outside autograd, each chunk is written into one output allocated up front: the chunk's temporaries
    are then freed and reused in place. Collecting the chunks and concatenating them interleaves each small kept
    result with the large freed temporaries, and the process heap grows with the number of chunks (measured: +1.7 GB
    for 10^7 decoded points against +0.2 GB this way; benchmarks/results/results_decode.md).
    """
    starts = range(0, total, chunk)
    if keras.backend.backend() == "torch":
        import torch

        if not torch.is_grad_enabled():
            first = make_chunk(0)
            out = first.new_empty((first.shape[0], total) + tuple(first.shape[2:]))
            out[:, : first.shape[1]] = first
            del first
            for start in starts[1:]:
                out[:, start:start + chunk] = make_chunk(start)
            return out
    return ops.concatenate([make_chunk(start) for start in starts], axis=1)
