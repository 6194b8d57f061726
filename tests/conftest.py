import os

# JAX compiles every training step with XLA, which is most of a tiny test's time on the CPU. The two code-generation
# flags halve compile time; they only change how hard the code generator optimises (set before JAX creates its CPU backend).
if os.environ.get("KERAS_BACKEND") == "jax":
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
                                        "--xla_llvm_disable_expensive_passes=true"]).strip()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402

from upt_keras.models.presets import preset  # noqa: E402

BACKEND = keras.backend.backend()

# The sizes of the "tiny" preset that a grid model uses (what the plain-torch twin takes too).
POINT_ONLY = ("encoder", "num_supernodes", "supernodes", "supernode_radius", "supernode_neighbours")
TINY = {k: v for k, v in preset("tiny").items()
        if k not in ("grid_shape", "num_fields", "approximator_zero_init", "decoder_locality",
                       "approximator_locality") + POINT_ONLY}


def tiny_upt(grid_shape=(32,), num_fields=1, **kwargs):
    """A UPT small enough for unit tests on every backend; the objective's arguments build its `UPTObjective`."""
    from upt_keras import UPT, UPTObjective
    from upt_keras.objectives.settings import OBJECTIVE_KEYS

    keras.utils.set_random_seed(kwargs.pop("init_seed", 0))
    settings = {k: kwargs.pop(k) for k in list(kwargs) if k in OBJECTIVE_KEYS + ("num_queries", "query_strategy",
                                                                                 "seed")}
    if settings:
        kwargs["objective"] = UPTObjective(**settings)
    return UPT.from_preset("tiny", grid_shape=grid_shape, num_fields=num_fields, **kwargs)


def wave_pairs(num=16, n=32, channels=1, shift=1, seed=0):
    """Smooth random periodic fields and their shifted copies: a learnable one-step map."""
    rng = np.random.default_rng(seed)
    x = np.arange(n) / n
    k = np.arange(1, 4)
    amp = rng.normal(size=(num, channels, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(num, channels, 3))
    u = (amp[..., None] * np.sin(2 * np.pi * k[None, None, :, None] * x + phase[..., None])).sum(2)
    u = np.moveaxis(u, 1, -1).astype("float32")  # (num, n, C)
    return u, np.roll(u, shift, axis=1)


# `compile` keywords for a test that checks what one or two training steps compute (gradients, updates), not how
# the step is compiled: TensorFlow traces a graph for every new model, which takes far longer than a few eager steps.
# JAX and torch keep their defaults. Compiled steps have tests of their own (test_train_step.py, the pipelines).
FEW_STEPS = {"run_eagerly": True} if BACKEND == "tensorflow" else {}


@pytest.fixture
def backend():
    return BACKEND


@pytest.fixture
def one_torch_thread():
    """Torch ops on one CPU thread during a test (a no-op on other backends).

    Two CPU threads per process spin badly when the machine is shared; one is faster for the tiny test models.
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`.
    """
    if BACKEND != "torch":
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def pytest_report_header(config):
    return f"keras backend: {BACKEND} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')})"
