"""Helper process for cross-backend checks: loads a .keras model under $KERAS_BACKEND and
writes its predictions and its training loss (on fixed query indices) to an .npz file.

Usage: python xbackend_worker.py MODEL.keras BATCH.npz OUT.npz [MODEL2.keras BATCH2.npz OUT2.npz ...]
A batch with `positions` is a point cloud: the model input is {"fields": x, "positions": positions}.
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


def model_input(batch):
    if "positions" in batch:
        return {"fields": batch["x"], "positions": batch["positions"]}
    return batch["x"]


def main(*paths):
    import keras

    import upt_keras  # noqa: F401  (registers the serialisable classes)

    for model_path, batch_path, out_path in zip(paths[0::3], paths[1::3], paths[2::3]):
        batch = dict(np.load(batch_path))
        model = keras.saving.load_model(model_path, compile=False)
        pred, loss = evaluate(model, model_input(batch), batch["y"], batch["idx"])
        np.savez(out_path, pred=pred, loss=loss, backend=keras.backend.backend())


if __name__ == "__main__":
    main(*sys.argv[1:])
