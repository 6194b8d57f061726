"""Model files written before the model/objective split still load, on every backend, with the same predictions.

`tests/data/upt_tiny_0.1.0.keras` was saved by upt-keras 0.1.0 as it was before the split (tiny preset sizes,
two fields, inverse losses on, Q = 12) on the torch backend; `upt_tiny_0.1.0.npz` holds an input batch and that
model's one-step prediction and evaluation loss on it.
"""

import os

import numpy as np
import pytest

import keras

import upt_keras  # noqa: F401

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def test_model_file_of_the_previous_layout_loads_and_predicts_the_same():
    model = keras.saving.load_model(os.path.join(DATA, "upt_tiny_0.1.0.keras"))
    ref = np.load(os.path.join(DATA, "upt_tiny_0.1.0.npz"))
    assert model.objective.use_inverse_losses and model.objective.num_queries == 12 and model.grid_shape == (32,)
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["pred"], rtol=1e-5, atol=1e-5)
    y_pred = model(ref["x"])
    loss = model.compute_loss(x=ref["x"], y=ref["y"], y_pred=y_pred, training=False)
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(float(ref["loss"]), rel=1e-5)
    # and it trains on
    model.compile(optimizer="adam")
    history = model.fit(ref["x"], ref["y"], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
