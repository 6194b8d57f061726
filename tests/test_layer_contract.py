"""Every public layer through the shared contract check (tests/layer_checks.py)."""

import numpy as np
import pytest

from layer_checks import run_layer_test
from upt_keras.layers import (MLP, AdaLNBlock, AnyPointDecoder, Approximator, Attention, Dense, GridEncoder,
                              PointCloudEncoder, TransformerBlock)

RNG = np.random.default_rng(0)
B = 2


def _normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def _uniform(*shape):
    return RNG.random(shape).astype("float32")


CASES = {
    "Dense": (Dense, dict(units=8, activation="gelu"), [_normal(B, 5, 4)], {}, (B, 5, 8)),
    "MLP": (MLP, dict(dim=8, hidden_dim=16), [_normal(B, 5, 8)], {}, (B, 5, 8)),
    "Attention_self": (Attention, dict(dim=8, num_heads=2), [_normal(B, 5, 8)], {}, (B, 5, 8)),
    "Attention_cross": (Attention, dict(dim=8, num_heads=2, qk_norm=True), [_normal(B, 5, 8), _normal(B, 3, 6)], {},
                        (B, 5, 8)),
    "TransformerBlock": (TransformerBlock, dict(dim=8, num_heads=2, mlp_dim=16), [_normal(B, 5, 8)], {}, (B, 5, 8)),
    "TransformerBlock_cross": (TransformerBlock, dict(dim=8, num_heads=2, mlp_dim=16, cross_attention=True),
                               [_normal(B, 5, 8), _normal(B, 3, 8)], {}, (B, 5, 8)),
    "AdaLNBlock": (AdaLNBlock, dict(dim=8, num_heads=2, mlp_dim=16), [_normal(B, 5, 8), _normal(B, 8)], {},
                   (B, 5, 8)),
    "Approximator": (Approximator, dict(latent_dim=8, width=16, depth=1, num_heads=2), [_normal(B, 4, 8)],
                     {"dt": 0.1}, (B, 4, 8)),
    "Approximator_locality": (Approximator, dict(latent_dim=8, width=16, depth=1, num_heads=2, locality=True),
                              [_normal(B, 4, 8)], {"dt": 0.1, "positions": _uniform(4, 1)}, (B, 4, 8)),
    "GridEncoder_1d": (GridEncoder, dict(grid_shape=(16,), num_channels=2, patch_size=4, dim=8, num_heads=2,
                                         num_latent_tokens=2, latent_dim=8), [_normal(B, 16, 2)], {}, (B, 2, 8)),
    "GridEncoder_2d_average": (GridEncoder, dict(grid_shape=(8, 8), num_channels=1, patch_size=4, dim=8,
                                                 num_heads=2, num_latent_tokens=2, latent_dim=8, pooling="average"),
                               [_normal(B, 8, 8, 1)], {}, (B, 2, 8)),
    "PointCloudEncoder": (PointCloudEncoder, dict(num_channels=1, coord_dim=2, num_supernodes=8, radius=0.3,
                                                  max_neighbours=4, dim=8, num_heads=2, num_latent_tokens=2,
                                                  latent_dim=8), [_normal(B, 20, 1), _uniform(B, 20, 2)], {},
                          (B, 2, 8)),
    "PointCloudEncoder_grid": (PointCloudEncoder, dict(num_channels=1, coord_dim=2, num_supernodes=16, radius=0.3,
                                                       max_neighbours=4, dim=8, num_heads=2, num_latent_tokens=4,
                                                       latent_dim=8, supernodes="grid"),
                               [_normal(B, 20, 1), _uniform(B, 20, 2)], {}, (B, 4, 8)),
    "AnyPointDecoder": (AnyPointDecoder, dict(num_fields=2, coord_dim=2, width=8, depth=1, num_heads=2, mlp_dim=16),
                        [_normal(B, 4, 8), _uniform(B, 7, 2)], {}, (B, 7, 2)),
    "AnyPointDecoder_locality": (AnyPointDecoder, dict(num_fields=1, coord_dim=1, width=8, depth=1, num_heads=2,
                                                       mlp_dim=16, locality=True),
                                 [_normal(B, 4, 8), _uniform(B, 7, 1)], {"positions": _uniform(4, 1)}, (B, 7, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_contract(name, tmp_path):
    cls, init_kwargs, inputs, call_kwargs, shape = CASES[name]
    run_layer_test(cls, init_kwargs, inputs, call_kwargs, expected_output_shape=shape, tmp_path=tmp_path)


def test_every_public_layer_is_checked():
    import keras

    import upt_keras.layers as layers

    public = {name for name in layers.__all__
              if isinstance(getattr(layers, name), type) and issubclass(getattr(layers, name), keras.layers.Layer)}
    checked = {case[0].__name__ for case in CASES.values()}
    # FourierFeatures has no weights (tests/test_layers.py checks its values); Encoder is the abstract interface
    assert public - checked == {"FourierFeatures", "Encoder"}, public - checked
