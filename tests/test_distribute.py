"""Data parallelism: a 2-replica fit reproduces the single-device fit, step by step.

Device counts must be fixed before a framework initialises, so each engine is
checked in its own interpreter on 2 virtual CPU devices: JAX with
`XLA_FLAGS=--xla_force_host_platform_device_count=2`, TensorFlow with 2 logical
CPUs. Such a subprocess check runs from the pytest process of its own backend
only (once per suite run); under torch the scope must raise the documented error.

This file is also the subprocess: `python tests/test_distribute.py OUT.json`.
"""

import csv
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NUM_DEVICES = 2
EPOCHS, NUM_PAIRS, BATCH = 4, 16, 8  # 2 steps per epoch, 4 samples per replica
MODEL_KWARGS = dict(use_inverse_losses=True, inverse_loss_frequency=2, num_queries=12, seed=3,
                    lambda_inv_enc=0.5, lambda_inv_dec=0.25)
# curriculum: weights 0, 0, base/2, base -> the inverse terms are gated off, then on every 2nd step
CURRICULUM = dict(warmup_epochs=1, ramp_epochs=2, max_weight=1.0)


# --------------------------------------------------------------------------- subprocess side
def _set_virtual_devices(backend):
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES)


def _tiny_model():
    # `conftest.tiny_upt` with its seeding left out: `keras.utils.set_random_seed`
    # imports TensorFlow (seconds) into a JAX process; the initial weights come
    # from a weights file anyway.
    from conftest import TINY
    from upt_keras import UPT, UPTObjective

    return UPT.from_sizes((32,), 1, **TINY, objective=UPTObjective(**MODEL_KWARGS))


def _fit(kind, init_path, u, v):
    """Builds, loads `init_path`, compiles and fits inside `distribution_scope(kind)`; returns what to compare."""
    import keras

    from upt_keras import InverseLossCurriculum
    from upt_keras.distribute import distribution_scope, replica_count

    class Batches(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows = []

        def on_train_batch_end(self, batch, logs=None):
            self.rows.append({k: float(val) for k, val in logs.items()})

    info = {}
    with distribution_scope(kind, devices=None if kind is None else NUM_DEVICES) as dist:
        info["replicas"] = replica_count()
        model = _tiny_model()
        model.load_weights(init_path)
        model.compile(optimizer=keras.optimizers.SGD(0.003))
        batches = Batches()
        history = model.fit(u, v, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                            validation_data=(u[:BATCH], v[:BATCH]),
                            callbacks=[InverseLossCurriculum(**CURRICULUM), batches])
        info["history"] = {k: [float(x) for x in val] for k, val in history.history.items()}
        info["batches"] = batches.rows
        info["counter"] = int(keras.ops.convert_to_numpy(model.objective.train_step_counter))
        info["seed_state"] = keras.ops.convert_to_numpy(model.objective.query_sampler.seed_generator.state).tolist()
        if kind is not None:
            info.update(_replica_checks(model, dist))
    info["weights"] = [keras.ops.convert_to_numpy(w).tolist() for w in model.weights]
    return info


def _replica_checks(model, dist):
    """What each device holds of the weights, seed state and step counter; per-replica sampled indices (TF)."""
    import keras

    state, counter = model.objective.query_sampler.seed_generator.state, model.objective.train_step_counter
    weight = model.trainable_weights[0]
    if keras.backend.backend() == "jax":
        def shards(var):
            return [np.asarray(s.data).tolist() for s in var.value.addressable_shards]

        return {"weight_devices": len(weight.value.sharding.device_set),
                "weight_replicated": bool(weight.value.sharding.is_fully_replicated),
                "seed_per_replica": shards(state), "counter_per_replica": shards(counter)}

    import tensorflow as tf

    def local(var):
        return [np.asarray(x).tolist() for x in dist.experimental_local_results(var.value)]

    out = {"weight_devices": len(dist.experimental_local_results(weight.value)),
           "weight_kind": type(weight.value).__name__,
           "seed_per_replica": local(state), "counter_per_replica": local(counter)}
    # the next draw, made by every replica separately as in a train step
    sample = tf.function(model.objective.query_sampler.sample)
    out["indices_per_replica"] = [np.asarray(x).tolist() for x in
                                  dist.experimental_local_results(dist.run(sample))]
    out["seed_per_replica_after_draw"] = local(state)
    return out


def worker(out_path):
    import keras

    backend = keras.backend.backend()
    from conftest import wave_pairs
    from upt_keras.distribute import distribution_scope

    u, v = wave_pairs(NUM_PAIRS, seed=1)
    init_path = os.path.splitext(out_path)[0] + ".weights.h5"
    random.seed(0)  # the initialisers draw their seeds from Python's `random`
    np.random.seed(0)
    _tiny_model().save_weights(init_path)
    result = {"backend": backend, "single": _fit(None, init_path, u, v),
              "data_parallel": _fit("data_parallel", init_path, u, v)}
    if backend == "jax":  # the scope restores the previous global distribution
        result["restored"] = keras.distribution.distribution() is None
        with distribution_scope("data_parallel"):
            result["inside"] = type(keras.distribution.distribution()).__name__
        result["restored"] = result["restored"] and keras.distribution.distribution() is None
    else:
        import tensorflow as tf

        result["restored"] = not tf.distribute.has_strategy()
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":  # before anything below can initialise the framework
    _set_virtual_devices(os.environ.get("KERAS_BACKEND", ""))

# --------------------------------------------------------------------------- pytest side
from conftest import BACKEND  # noqa: E402

from upt_keras.distribute import (  # noqa: E402
    DistributionUnavailableError,
    check_batch_size,
    distribution_scope,
    replica_count,
    scale_loss_for_replicas,
)


def _run_worker(backend, tmp_path):
    out = tmp_path / f"dp_{backend}.json"
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([HERE, ROOT, os.environ.get("PYTHONPATH", "")]))
    if backend == "jax":
        # 2 virtual CPU devices; the two CPU code-generation flags halve XLA's compile time, which is
        # most of this test (both fits compile under the same flags, so the comparison is unaffected)
        flags = (f"--xla_force_host_platform_device_count={NUM_DEVICES} --xla_backend_optimization_level=0"
                 " --xla_llvm_disable_expensive_passes=true")
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
        env["JAX_PLATFORMS"] = "cpu"
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""  # virtual CPU replicas, whatever GPUs the machine has
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out) as f:
        return json.load(f)


def _assert_same_training(result):
    single, dp = result["single"], result["data_parallel"]
    assert single["replicas"] == 1 and dp["replicas"] == NUM_DEVICES
    assert dp["weight_devices"] == NUM_DEVICES  # the weights really live on both devices

    steps = EPOCHS * NUM_PAIRS // BATCH
    assert len(single["batches"]) == len(dp["batches"]) == steps
    assert single["history"]["loss"][0] != single["history"]["loss"][-1]  # it trained
    # epochs 0-1: both weights 0, inverse terms off; epochs 2-3: on (every 2nd step)
    assert single["history"]["inv_enc_loss"][:2] == [0.0, 0.0] and min(single["history"]["inv_enc_loss"][2:]) > 0

    # the first step sees the same weights and batch: a loss `replicas` times too large means compute_loss
    # returned its per-replica mean unscaled (TensorFlow sums the replicas)
    first, reference = dp["batches"][0]["loss"], single["batches"][0]["loss"]
    hint = ""
    if abs(first / reference - NUM_DEVICES) < 1e-3:
        hint = f" = {NUM_DEVICES} x: compute_loss must return scale_loss_for_replicas(loss)"
    assert first == pytest.approx(reference, rel=1e-4), f"first-step loss {first} vs {reference} on one device{hint}"

    # the same loss trajectory: every logged value after every batch, and the epoch (+ validation) logs
    assert set(dp["history"]) == set(single["history"])
    for key in single["history"]:
        np.testing.assert_allclose(dp["history"][key], single["history"][key], rtol=1e-4, atol=1e-6, err_msg=key)
    for i, (a, b) in enumerate(zip(dp["batches"], single["batches"])):
        for key in b:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=f"batch {i}: {key}")
    for a, b in zip(dp["weights"], single["weights"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)

    # one seed state and one step counter, advanced once per step, identical on every replica
    assert dp["counter"] == single["counter"] == steps
    assert dp["seed_state"] == single["seed_state"]
    assert dp["seed_per_replica"] == [single["seed_state"]] * NUM_DEVICES
    assert dp["counter_per_replica"] == [steps] * NUM_DEVICES
    assert result["restored"]


@pytest.mark.skipif(BACKEND != "jax", reason="spawned once per suite run: from the KERAS_BACKEND=jax run")
def test_jax_data_parallel_matches_single_device(tmp_path):
    result = _run_worker("jax", tmp_path)
    assert result["backend"] == "jax" and result["inside"] == "DataParallel"
    assert result["data_parallel"]["weight_replicated"]
    _assert_same_training(result)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="spawned once per suite run: from the KERAS_BACKEND=tensorflow run")
def test_tensorflow_mirrored_matches_single_device(tmp_path):
    result = _run_worker("tensorflow", tmp_path)
    dp = result["data_parallel"]
    assert result["backend"] == "tensorflow" and dp["weight_kind"] == "MirroredVariable"
    # each replica runs compute_loss and draws its own indices: they must be the same points
    first, second = dp["indices_per_replica"]
    assert first == second and len(set(first)) == MODEL_KWARGS["num_queries"]
    a, b = dp["seed_per_replica_after_draw"]
    assert a == b and a != dp["seed_per_replica"][0]
    _assert_same_training(result)


@pytest.mark.skipif(BACKEND != "torch", reason="the torch backend has no in-process data-parallel engine")
def test_torch_data_parallel_raises_documented_error():
    with pytest.raises(DistributionUnavailableError, match="torchrun") as err:
        with distribution_scope("data_parallel"):
            pass
    message = str(err.value)
    assert "DistributedDataParallel" in message and "docs/distributed.md" in message
    assert "examples/train_ddp_torch.py" in message
    for path in ("docs/distributed.md", "examples/train_ddp_torch.py"):
        assert os.path.exists(os.path.join(ROOT, path)), path


TINY_RUN = [
    "data.source=hdf5", "data.test_fraction=0.25", "data.val_fraction=0.25", "training.batch_size=8",
    "training.epochs=3", "training.use_inverse_losses=true", "training.lambda_latent_consistency=0", "training.inverse_loss_warmup_epochs=1", "training.inverse_loss_ramp_epochs=0",
    "training.lambda_inv_enc=0.5", "training.lambda_inv_dec=0.25", "training.inverse_loss_max_weight=1.0",
    "training.inverse_loss_frequency=2", "training.query_sampling.enabled=true",
    "training.query_sampling.num_queries=12", "output.plots=false",
    "model.encoder_dim=16", "model.encoder_heads=2", "model.num_latent_tokens=4", "model.latent_dim=16",
    "model.approximator_width=16", "model.approximator_depth=1", "model.approximator_heads=2",
    "model.decoder_width=16", "model.decoder_heads=2", "model.decoder_depth=1", "model.decoder_mlp_dim=16",
    "model.mlp_ratio=2", "model.frequencies=[1,2]",
]


def _history(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


@pytest.mark.skipif(BACKEND != "torch", reason="the torchrun launcher is for the torch backend")
def test_torch_ddp_launcher_matches_one_process(tmp_path):
    """examples/train_ddp_torch.py under torchrun on the CPU (gloo): 2 processes follow the 1-process run."""
    from upt_keras.data import generate_burgers_dataset

    data = generate_burgers_dataset(str(tmp_path / "tiny.h5"), num_samples=12, resolution=32, t_end=0.1,
                                    progress=False)
    sets = [arg for item in TINY_RUN + [f"data.path={data}"] for arg in ("--set", item)]
    env = dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    histories = {}
    for nproc in (1, 2):
        run_dir = tmp_path / f"run{nproc}"
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
             os.path.join(ROOT, "examples", "train_ddp_torch.py"), "--cpu", "--run-dir", str(run_dir), *sets],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        histories[nproc] = _history(run_dir / "history.csv")
        assert (run_dir / "model.keras").exists()
    one, two = histories[1], histories[2]
    assert len(one["loss"]) == 3 and one["loss"][0] == pytest.approx(one["forward_loss"][0])  # epoch 0: no inverse
    assert one["loss"][1] > one["forward_loss"][1]  # inverse terms on from epoch 1
    for key in ("loss", "forward_loss", "val_forward_loss"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, err_msg=key)


def test_no_distribution_is_a_null_context():
    with distribution_scope(None) as dist:
        assert dist is None
        assert replica_count() == 1
        assert scale_loss_for_replicas(2.0) == 2.0
    with pytest.raises(ValueError, match="data_parallel"):
        with distribution_scope("model_parallel"):
            pass


def test_check_batch_size():
    check_batch_size(8, 16, replicas=2)
    check_batch_size(8, 18, replicas=2)  # last batch of 2 still splits
    check_batch_size(7, 19)  # one replica outside a distribution scope
    with pytest.raises(ValueError, match="divisible by the 2 replicas"):
        check_batch_size(7, replicas=2)
    with pytest.raises(ValueError, match="last batch of 3"):
        check_batch_size(8, 19, replicas=2)


if __name__ == "__main__":
    sys.path[:0] = [HERE, ROOT]
    worker(sys.argv[1])
