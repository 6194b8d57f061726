"""A model saved under any backend loads under the other two with the same predictions and loss.

Backends cannot share a process, so the check chains processes: this one (torch) saves a grid model and a
point-cloud model; TensorFlow loads them and saves them again; JAX loads both backends' files and saves again;
TensorFlow loads JAX's files, and this process loads TensorFlow's and JAX's. That covers all six (saved under,
loaded under) pairs, so it runs from one suite run only: the torch one.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BACKEND, tiny_upt, wave_pairs
from xbackend_worker import evaluate, load_and_evaluate, model_input

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(backend, *groups):
    """Loads and evaluates each (model, batch, out, resave) group in a `backend` process."""
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    args = [str(arg) for group in groups for arg in group]
    proc = subprocess.run([sys.executable, os.path.join(HERE, "xbackend_worker.py"), *args],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(BACKEND != "torch", reason="covers every pair of backends from one run: the KERAS_BACKEND=torch one")
def test_saved_model_matches_on_every_other_backend(tmp_path):
    # a grid model and a point-cloud model (scattered input points, different per sample)
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
    ours = {}
    for name, model in (("grid", grid_model), ("points", point_model)):
        batch = batches[name]
        model.save(tmp_path / f"{name}_torch.keras")
        np.savez(tmp_path / f"{name}.npz", **batch)
        ours[name] = evaluate(model, model_input(batch), batch["y"], idx)

    def group(name, saved, loaded, resave=False):
        """(model saved under `saved`, batch, predictions under `loaded`, copy saved again under `loaded`)."""
        return (tmp_path / f"{name}_{saved}.keras", tmp_path / f"{name}.npz",
                tmp_path / f"{name}_{saved}_in_{loaded}.npz", tmp_path / f"{name}_{loaded}.keras" if resave else "-")

    names = ("grid", "points")
    _run("tensorflow", *[group(n, "torch", "tensorflow", resave=True) for n in names])
    _run("jax", *[group(n, "torch", "jax", resave=True) for n in names],
         *[group(n, "tensorflow", "jax") for n in names])
    _run("tensorflow", *[group(n, "jax", "tensorflow") for n in names])
    for saved in ("tensorflow", "jax"):
        for n in names:
            load_and_evaluate(*map(str, group(n, saved, "torch")))

    pairs = [("torch", "tensorflow"), ("torch", "jax"), ("tensorflow", "jax"), ("jax", "tensorflow"),
             ("tensorflow", "torch"), ("jax", "torch")]
    for saved, loaded in pairs:
        for name, (pred, loss) in ours.items():
            theirs = np.load(tmp_path / f"{name}_{saved}_in_{loaded}.npz")
            where = f"{name} saved under {saved}, loaded under {loaded}"
            assert str(theirs["backend"]) == loaded, where
            np.testing.assert_allclose(theirs["pred"], pred, rtol=1e-5, atol=1e-5, err_msg=where)
            # same weights, same batch, same sampled indices -> same total training loss (inverse terms included)
            assert float(theirs["loss"]) == pytest.approx(loss, rel=1e-5), where
