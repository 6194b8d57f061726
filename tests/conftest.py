import os

import numpy as np
import pytest

import keras

from upt_keras.presets import preset

BACKEND = keras.backend.backend()

# The sizes of the "tiny" preset that a grid model uses (what the plain-torch twin takes too).
POINT_ONLY = ("encoder", "num_supernodes", "supernodes", "supernode_radius", "supernode_neighbours")
TINY = {k: v for k, v in preset("tiny").items()
        if k not in ("grid_shape", "num_fields", "approximator_zero_init", "decoder_locality") + POINT_ONLY}


def tiny_upt(grid_shape=(32,), num_fields=1, **kwargs):
    """A UPT small enough for unit tests on every backend."""
    from upt_keras import UPT

    keras.utils.set_random_seed(kwargs.pop("init_seed", 0))
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
