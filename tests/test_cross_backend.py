"""A model saved under this backend loads under the other two with the same predictions and loss.

One subprocess per other backend (backends cannot share a process).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BACKEND, tiny_upt, wave_pairs
from xbackend_worker import evaluate, model_input

BACKENDS = ("torch", "tensorflow", "jax")
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("other", [b for b in BACKENDS if b != BACKEND])
def test_saved_model_matches_on_other_backend(tmp_path, other):
    # a grid model and a point-cloud model (scattered input points, different per sample), one subprocess for both
    u, v = wave_pairs(3, channels=2, seed=4)
    idx = np.random.default_rng(0).permutation(32)[:12].astype("int32")
    grid_model = tiny_upt((32,), 2, use_inverse_losses=True, lambda_inv_enc=0.5, lambda_inv_dec=0.25,
                          num_queries=12, field_mean=[0.1, -0.2], field_std=[1.5, 0.5], dt=0.01)
    point_model = tiny_upt((32,), 2, encoder="points", use_inverse_losses=True, lambda_inv_enc=0.5,
                           lambda_inv_dec=0.25, num_queries=12, field_mean=[0.1, -0.2], field_std=[1.5, 0.5])
    rng = np.random.default_rng(1)
    keep = np.stack([np.sort(rng.permutation(32)[:20]) for _ in range(3)])
    batches = {"grid": dict(x=u, y=v, idx=idx),
               "points": dict(x=np.take_along_axis(u, keep[..., None], axis=1), y=v, idx=idx,
                              positions=(keep[..., None] / 32.0).astype("float32"))}
    args, ours = [], {}
    for name, model in (("grid", grid_model), ("points", point_model)):
        path, batch = str(tmp_path / f"{name}_{BACKEND}.keras"), batches[name]
        model.save(path)
        np.savez(tmp_path / f"{name}.npz", **batch)
        ours[name] = evaluate(model, model_input(batch), batch["y"], idx)
        args += [path, str(tmp_path / f"{name}.npz"), str(tmp_path / f"{name}_out_{other}.npz")]

    env = dict(os.environ, KERAS_BACKEND=other, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "xbackend_worker.py"), *args],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, (pred, loss) in ours.items():
        theirs = np.load(tmp_path / f"{name}_out_{other}.npz")
        assert str(theirs["backend"]) == other
        np.testing.assert_allclose(theirs["pred"], pred, rtol=1e-5, atol=1e-5, err_msg=name)
        # same weights, same batch, same sampled indices -> same total training loss (inverse terms included)
        assert float(theirs["loss"]) == pytest.approx(loss, rel=1e-5), name
