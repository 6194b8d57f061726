"""Helper process for cross-backend checks: loads .keras models under $KERAS_BACKEND, writes each one's predictions
and training loss (on fixed query indices) to an .npz file and, where asked, saves it again under this backend.

Usage: python xbackend_worker.py MODEL.keras BATCH.npz OUT.npz RESAVE.keras [MODEL2.keras BATCH2.npz OUT2.npz -] ...
RESAVE.keras `-`: no copy. A batch with `positions` is a point cloud: the model input is
{"fields": x, "positions": positions}.
"""

import sys

import numpy as np


def evaluate(model, x, y, idx):
    from keras import ops

    model.objective.query_sampler.sample = lambda: ops.convert_to_tensor(idx)  # same sampled points everywhere
    pred = ops.convert_to_numpy(model(x))
    y_pred = model(x, training=True)
    loss = float(ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)))
    return pred, loss


def model_input(batch):
    if "positions" in batch:
        return {"fields": batch["x"], "positions": batch["positions"]}
    return batch["x"]


def load_and_evaluate(model_path, batch_path, out_path, resave_path="-"):
    import keras

    import upt_keras  # noqa: F401  (registers the serialisable classes)

    batch = dict(np.load(batch_path))
    model = keras.saving.load_model(model_path, compile=False)
    if resave_path != "-":
        model.save(resave_path)  # the same weights, written by this backend
    pred, loss = evaluate(model, model_input(batch), batch["y"], batch["idx"])
    np.savez(out_path, pred=pred, loss=loss, backend=keras.backend.backend())


def main(*paths):
    for group in zip(paths[0::4], paths[1::4], paths[2::4], paths[3::4]):
        load_and_evaluate(*group)


if __name__ == "__main__":
    main(*sys.argv[1:])
