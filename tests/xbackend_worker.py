"""Helper process for cross-backend checks: loads a .keras model under $KERAS_BACKEND and
writes its predictions and its training loss (on fixed query indices) to an .npz file.

Usage: python xbackend_worker.py MODEL.keras BATCH.npz OUT.npz
"""

import sys

import numpy as np


def evaluate(model, x, y, idx):
    from keras import ops

    model.query_sampler.sample = lambda: ops.convert_to_tensor(idx)  # same sampled points everywhere
    pred = ops.convert_to_numpy(model(x))
    y_pred = model(x, training=True)
    loss = float(ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)))
    return pred, loss


def main(model_path, batch_path, out_path):
    import keras

    import upt_keras  # noqa: F401  (registers the serialisable classes)

    batch = np.load(batch_path)
    model = keras.saving.load_model(model_path, compile=False)
    pred, loss = evaluate(model, batch["x"], batch["y"], batch["idx"])
    np.savez(out_path, pred=pred, loss=loss, backend=keras.backend.backend())


if __name__ == "__main__":
    main(*sys.argv[1:4])
