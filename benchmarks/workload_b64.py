"""Workload B64: the model, data and training step that `bench_b64.py`, `profile_b64_torch.py` and `gpu_check.py`
measure.

2D 64x64 grid, 1 field, batch 10, the sizes of the "b64" preset (patch 4 -> 256 patch tokens -> 128 latent tokens x
128; approximator width 256, depth 8, 8 heads, MLP ratio 4; decoder width 256, 3 blocks, 4 heads, MLP 256; Fourier
frequencies 1, 2, 4, 8); Adam lr 1e-4. A row (`ROWS`) picks the losses and the number of query points. Keras is
imported only by `setup_keras` and torch only by `setup_reference`, so a plain-torch process carries no Keras.
"""

import os
import time

import numpy as np

import harness
from upt_keras.models.presets import preset

B64_SIZES = preset("b64")  # the sizes of workload B64: the "b64" preset
B64_GRID = tuple(B64_SIZES.pop("grid_shape"))
BATCH_SIZE = 10
LEARNING_RATE = 1e-4
SEED = 0
NUM_POINTS = B64_GRID[0] * B64_GRID[1]

ROWS = {
    "fwd4096": dict(label="forward only", num_queries=4096, use_inverse_losses=False, inverse_loss_frequency=1),
    "fwd2048": dict(label="forward only", num_queries=2048, use_inverse_losses=False, inverse_loss_frequency=1),
    "inv4096": dict(label="+ inverse, freq 1", num_queries=4096, use_inverse_losses=True, inverse_loss_frequency=1),
    "inv2048": dict(label="+ inverse, freq 1", num_queries=2048, use_inverse_losses=True, inverse_loss_frequency=1),
    "freq2": dict(label="+ inverse, freq 2", num_queries=4096, use_inverse_losses=True, inverse_loss_frequency=2),
}


def model_kwargs(row):
    spec = ROWS[row]
    return dict(
        use_inverse_losses=spec["use_inverse_losses"],
        lambda_inv_enc=0.01,
        lambda_inv_dec=0.01,
        inverse_loss_frequency=spec["inverse_loss_frequency"],
        num_queries=spec["num_queries"],
        seed=SEED,
    )


def make_data(batch_size=BATCH_SIZE):
    """(u_t, u_next): seeded standard-normal fields and the same fields rolled by one row."""
    rng = np.random.default_rng(SEED)
    shape = (batch_size,) + B64_GRID + (B64_SIZES["num_fields"],)
    u_t = rng.standard_normal(shape).astype("float32")
    return u_t, np.roll(u_t, 1, axis=1)


def time_steps(step, total):
    """Runs `step()` `total` times; returns (seconds per step, inverse-on flag per step)."""
    times, flags = [], []
    for _ in range(total):
        start = time.perf_counter()
        on = step()
        times.append(time.perf_counter() - start)
        flags.append(bool(on))
    return times, flags


def count_flops(step, num):
    """[(GFLOP, inverse on)] of `num` more steps, from the torch profiler (torch backend and plain torch).

    The profiler counts matrix-multiply and convolution FLOPs: a measure of the
    work a step does that, unlike its time, does not depend on the machine's load.
    """
    from torch.profiler import ProfilerActivity, profile

    counts = []
    getattr(step, "before_flops", lambda: None)()
    for _ in range(num):
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            on = step()
        counts.append((sum(e.flops for e in prof.key_averages()) / 1e9, bool(on)))
    return counts


def setup_keras(row, device="cpu", mixed=False, jit_compile="auto"):
    """Builds and compiles the Keras model on the backend of `KERAS_BACKEND`; returns (step function, info function)."""
    backend = os.environ["KERAS_BACKEND"]
    if backend == "tensorflow" and device == "gpu":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    import keras

    from upt_keras import UPT, UPTObjective

    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if device == "gpu":
        harness.check_gpu_visible(backend)
    u_t, u_next = make_data()
    keras.utils.set_random_seed(SEED)
    model = UPT.from_sizes(B64_GRID, **B64_SIZES, objective=UPTObjective(**model_kwargs(row)))
    # One real encode, so that every weight exists before counting and compiling
    # whatever the layers create at build time.
    model.encode(u_t[:1])
    params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE), jit_compile=jit_compile)
    rss_build = harness.rss_mib()
    spec = ROWS[row]

    def step():
        counter = int(keras.ops.convert_to_numpy(model.objective.train_step_counter))
        on = spec["use_inverse_losses"] and counter % spec["inverse_loss_frequency"] == 0
        model.train_on_batch(u_t, u_next)  # returns numpy logs: the step has finished
        return on

    def skip_symbolic_build():
        # `train_on_batch` re-runs Keras's symbolic build whenever a layer is
        # still unbuilt. On torch it runs on the "meta" device: nothing is
        # computed, but the profiler would count its FLOPs, so it is skipped
        # while counting. Its time stays in the timed steps.
        for layer in model._flatten_layers():
            layer.built = True

    step.before_flops = skip_symbolic_build

    def info():
        threads = {"torch": torch_threads, "tensorflow": tf_threads, "jax": jax_threads}[backend]()
        return dict(params=params, rss_build=rss_build, threads=threads,
                    gpu_peak=harness.gpu_peak_mib(backend) if device == "gpu" else None,
                    jit_compile=str(model.jit_compile), policy=keras.mixed_precision.global_policy().name)

    return step, info


def setup_reference(row, device="cpu", mixed=False):
    """Builds the plain-torch twin (`torch_reference.py`); returns (step function, info function)."""
    import torch

    import torch_reference as ref

    if device == "gpu":
        harness.check_gpu_visible("torch")
    torch_device = torch.device("cuda" if device == "gpu" else "cpu")
    u_t, u_next = (torch.from_numpy(a).to(torch_device) for a in make_data())
    torch.manual_seed(SEED)
    model = ref.ReferenceUPT(B64_GRID, **B64_SIZES, **model_kwargs(row)).to(torch_device)
    optimizer = ref.make_optimizer(model, LEARNING_RATE)
    scaler = torch.amp.GradScaler("cuda") if mixed else None
    autocast_dtype = torch.float16 if mixed else None
    rss_build = harness.rss_mib()

    def step():
        on, _ = model.train_step(u_t, u_next, optimizer, scaler=scaler, autocast_dtype=autocast_dtype)
        return on  # train_step returns the loss as a float: the step has finished

    def info():
        return dict(params=ref.count_params(model), rss_build=rss_build, threads=torch_threads(),
                    gpu_peak=harness.gpu_peak_mib("torch") if device == "gpu" else None,
                    jit_compile="eager", policy="autocast float16" if mixed else "float32")

    return step, info


def setup(backend, row, device="cpu", mixed=False, jit_compile="auto"):
    """`setup_reference` for backend "reference", else `setup_keras` (the backend comes from `KERAS_BACKEND`)."""
    if backend == "reference":
        return setup_reference(row, device, mixed)
    return setup_keras(row, device, mixed, jit_compile)


def torch_threads():
    import torch

    return f"torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}"


def tf_threads():
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return f"TF intra-op {intra or 'default'}, inter-op {inter or 'default'}"


def jax_threads():
    return f"XLA CPU default (XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or 'unset'})"
