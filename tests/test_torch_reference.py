"""The plain-PyTorch benchmark reference computes the same model and losses as UPT.

Only numpy arrays cross between the two, so this runs under every Keras backend.
"""

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402

from conftest import TINY, tiny_upt, wave_pairs  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import torch_reference as ref  # noqa: E402

GRID = (16, 8)


def _pair(num_fields=2):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(3,) + GRID + (num_fields,)).astype("float32")
    return u, np.roll(u, 1, axis=1)


def _built_keras(num_fields=2, **kwargs):
    model = tiny_upt(GRID, num_fields, **kwargs)
    model.encode(np.zeros((1,) + GRID + (num_fields,), "float32"))  # creates every weight
    return model


def _twin(model, **kwargs):
    torch.manual_seed(0)
    reference = ref.ReferenceUPT(model.grid_shape, model.num_fields, **TINY, **kwargs)
    ref.load_keras_weights(reference, model)
    return reference


def test_parameter_count_matches_keras():
    model = _built_keras()
    torch.manual_seed(0)
    reference = ref.ReferenceUPT(GRID, 2, **TINY)
    assert ref.count_params(reference) == sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_same_function_as_keras_with_copied_weights():
    model = _built_keras()
    reference = _twin(model)
    u, _ = _pair()
    coords = np.random.default_rng(1).random((11, 2)).astype("float32")
    z = keras.ops.convert_to_numpy(model.encode(u))
    with torch.no_grad():
        z_ref = reference.encode(torch.from_numpy(u))
        np.testing.assert_allclose(z_ref.numpy(), z, atol=1e-4, rtol=1e-4)
        z_next = keras.ops.convert_to_numpy(model.step(z))
        np.testing.assert_allclose(reference.step(torch.from_numpy(z)).numpy(), z_next, atol=1e-4, rtol=1e-4)
        out = keras.ops.convert_to_numpy(model.decode(z_next, coords))
        out_ref = reference.decode(torch.from_numpy(z_next), torch.from_numpy(coords)).numpy()
    np.testing.assert_allclose(out_ref, out, atol=1e-4, rtol=1e-4)


def test_same_training_loss_as_keras_with_inverse_terms():
    kwargs = dict(use_inverse_losses=True, lambda_inv_enc=0.3, lambda_inv_dec=0.7)
    model = _built_keras(**kwargs)
    reference = _twin(model, **kwargs)
    u, u_next = _pair()
    total = model.compute_loss(u, u_next, model(u, training=True), training=True)
    with torch.no_grad():
        total_ref, parts = reference.training_loss(torch.from_numpy(u), torch.from_numpy(u_next), step=0)
    assert float(parts["inv_enc"]) > 0 and float(parts["inv_dec"]) > 0
    np.testing.assert_allclose(float(total_ref), float(keras.ops.convert_to_numpy(total)), rtol=1e-4)


def test_training_steps_are_finite_and_gated_by_frequency():
    torch.manual_seed(0)
    u, u_next = wave_pairs(4, n=32)
    reference = ref.ReferenceUPT((32,), 1, **TINY, use_inverse_losses=True, inverse_loss_frequency=2, num_queries=12)
    optimizer = ref.make_optimizer(reference, 1e-3)
    before = [p.detach().clone() for p in reference.parameters()]
    steps = [reference.train_step(torch.from_numpy(u), torch.from_numpy(u_next), optimizer) for _ in range(4)]
    assert [on for on, _ in steps] == [True, False, True, False]
    assert all(np.isfinite(loss) for _, loss in steps)
    assert all(not torch.equal(a, b) for a, b in zip(before, reference.parameters()))
    with torch.no_grad():
        _, parts = reference.training_loss(torch.from_numpy(u), torch.from_numpy(u_next), step=1)
    assert float(parts["inv_enc"]) == 0.0 and float(parts["inv_dec"]) == 0.0
