"""The forward and inverse losses (pure keras.ops, computed in float32)."""

from keras import ops


def field_mse(pred, target, std):
    """MSE of physical fields in normalised units: mean(((pred - target) / std)^2).

    `std` is the per-channel normalisation scale, so every field counts alike.
    """
    err = (ops.cast(pred, "float32") - ops.cast(target, "float32")) / std
    return ops.mean(ops.square(err))


def latent_mse(pred, target):
    """MSE between two latent token tensors."""
    return ops.mean(ops.square(ops.cast(pred, "float32") - ops.cast(target, "float32")))


def field_relative_l2(pred, target, eps=1e-12):
    """Relative L2 error of physical fields, ||pred - target|| / ||target||, per sample and channel, averaged.

    The norms run over the points (every axis between the first and the last); this is the training form of
    PDEBench's nRMSE, so a field of small amplitude counts as much as a large one (under `field_mse` it hardly
    counts).
    """
    pred, target = ops.cast(pred, "float32"), ops.cast(target, "float32")
    batch, channels = ops.shape(target)[0], ops.shape(target)[-1]
    err = ops.reshape(pred - target, (batch, -1, channels))
    ref = ops.reshape(target, (batch, -1, channels))
    ratio = ops.sum(ops.square(err), axis=1) / (ops.sum(ops.square(ref), axis=1) + eps)
    return ops.mean(ops.sqrt(ratio + eps))
