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
