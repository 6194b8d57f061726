"""The inverse-loss curriculum."""

import keras


def curriculum_weight(epoch, base, warmup_epochs, ramp_epochs=None, max_weight=0.05):
    """Weight of an inverse loss at `epoch` (0-based).

    `0` before `warmup_epochs`; then a linear ramp `base * (epoch - W) / R` for
    `W <= epoch < W + R`; then `base`; never above `max_weight`.
    `R = ramp_epochs` defaults to `W`; `R = 0` jumps to `base` at epoch W.
    """
    warmup = int(warmup_epochs)
    ramp = warmup if ramp_epochs is None else int(ramp_epochs)
    if epoch < warmup:
        weight = 0.0
    elif ramp > 0 and epoch < warmup + ramp:
        weight = base * (epoch - warmup) / ramp
    else:
        weight = base
    return float(min(weight, max_weight))


class InverseLossCurriculum(keras.callbacks.Callback):
    """Sets the model's effective inverse-loss weights at the start of every epoch.

    Schedule for warmup W=5, ramp R=5 (default R = W), base 0.01, cap 0.05:

    | epoch  | 0-4 | 5   | 6     | 7     | 8     | 9     | >= 10 |
    |--------|-----|-----|-------|-------|-------|-------|-------|
    | weight | 0   | 0   | 0.002 | 0.004 | 0.006 | 0.008 | 0.01  |

    The weights live in non-trainable variables owned by the model
    (`model.inv_enc_weight`, `model.inv_dec_weight`) and are written through
    `self.model`, so the schedule takes effect inside compiled steps and on JAX.
    While a weight is 0, the model skips computing that step's inverse terms.

    Args:
        lambda_inv_enc: base weight of the inverse-encoding loss (default: the model's `lambda_inv_enc`).
        lambda_inv_dec: base weight of the inverse-decoding loss (default: the model's `lambda_inv_dec`).
        warmup_epochs: int, epochs with weight 0.
        ramp_epochs: int or None (= warmup_epochs), length of the linear ramp.
        max_weight: float, cap on both weights.

    Example:
    >>> model.fit(data, epochs=20, callbacks=[InverseLossCurriculum(warmup_epochs=5)])
    """

    def __init__(self, lambda_inv_enc=None, lambda_inv_dec=None, warmup_epochs=5, ramp_epochs=None, max_weight=0.05):
        super().__init__()
        for name, value in (("warmup_epochs", warmup_epochs), ("ramp_epochs", ramp_epochs), ("max_weight", max_weight)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.lambda_inv_enc, self.lambda_inv_dec = lambda_inv_enc, lambda_inv_dec
        self.warmup_epochs, self.ramp_epochs, self.max_weight = warmup_epochs, ramp_epochs, max_weight

    def weights_at(self, epoch):
        """(inverse-encoding weight, inverse-decoding weight) at `epoch`."""
        enc = self.model.lambda_inv_enc if self.lambda_inv_enc is None else self.lambda_inv_enc
        dec = self.model.lambda_inv_dec if self.lambda_inv_dec is None else self.lambda_inv_dec
        args = (self.warmup_epochs, self.ramp_epochs, self.max_weight)
        return curriculum_weight(epoch, enc, *args), curriculum_weight(epoch, dec, *args)

    def on_epoch_begin(self, epoch, logs=None):
        enc, dec = self.weights_at(epoch)
        self.model.inv_enc_weight.assign(enc)
        self.model.inv_dec_weight.assign(dec)
