"""Named presets: one source of model sizes for the model, the config and the benchmarks."""

import numpy as np
import pytest

from upt_keras import UPT
from upt_keras.config import ConfigError, config_from_dict, load_config
from upt_keras.models.presets import PRESETS, SIZE_DEFAULTS, preset
from upt_keras.training import model_kwargs


def test_from_preset_builds_the_preset_and_takes_overrides():
    model = UPT.from_preset("tiny", grid_shape=(16,), num_fields=2, latent_dim=8, dt=0.5)
    tiny = preset("tiny")
    assert model.grid_shape == (16,) and model.num_fields == 2 and model.dt == 0.5
    assert model.encoder.latent_dim == model.approximator.latent_dim == 8
    assert model.encoder.dim == tiny["encoder_dim"] and model.decoder.width == tiny["decoder_width"]
    points = UPT.from_preset("tiny", encoder="points")
    assert points.encoder.input_kind == "points" and points.encoder.num_supernodes == tiny["num_supernodes"]


def test_every_preset_names_only_known_sizes():
    for name, sizes in PRESETS.items():
        assert set(sizes) - {"grid_shape", "num_fields"} <= set(SIZE_DEFAULTS), name


def test_unknown_preset_and_size_are_named():
    with pytest.raises(ValueError, match="unknown model preset 'b2'.*b1d"):
        UPT.from_preset("b2")
    with pytest.raises(ValueError, match="latent_dims"):
        UPT.from_sizes((32,), 1, latent_dims=3)


def test_config_preset_fills_the_model_section_and_keys_override_it():
    cfg = config_from_dict({"model": {"preset": "b64", "decoder_depth": 1}})
    b64 = preset("b64")
    assert cfg.model.approximator_depth == b64["approximator_depth"] == 8
    assert cfg.model.decoder_depth == 1
    assert cfg.model.frequencies == list(b64["frequencies"])
    points = config_from_dict({"model": {"preset": "points64"}}).model  # the point-cloud sizes are config keys too
    assert points.encoder == "points" and points.supernodes == "grid" and points.num_supernodes == 256
    with pytest.raises(ConfigError, match="model.preset must be one of b1d | b64 | points64 | tiny | null"):
        config_from_dict({"model": {"preset": "b128"}})


@pytest.mark.parametrize("path, name", [("configs/train_burgers1d.yaml", "b1d"),
                                        ("configs/train_burgers2d_64.yaml", "b64"),
                                        ("configs/train_burgers2d.yaml", "b2d")])
def test_shipped_configs_build_their_preset(path, name):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    kwargs = model_kwargs(load_config(os.path.join(root, path)))
    sizes = preset(name)
    for key, value in kwargs.items():
        if key in sizes:
            assert list(value) == list(sizes[key]) if isinstance(value, (list, tuple)) else value == sizes[key], key


def _built(make):
    import keras

    keras.utils.set_random_seed(7)
    return make()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_and_python_paths_build_the_same_model(name, tmp_path):
    """A YAML naming the preset and `UPT.from_preset` give the same config, weight count and outputs."""
    import json

    import keras
    import numpy as np

    from upt_keras import UPTObjective
    from upt_keras.training import objective_kwargs

    path = tmp_path / "c.yaml"
    path.write_text(f"model:\n  preset: {name}\n")
    cfg = load_config(path)
    sizes = preset(name)
    grid, fields = sizes["grid_shape"], sizes["num_fields"]
    from_yaml = _built(lambda: UPT.from_sizes(grid, fields, **model_kwargs(cfg),
                                              objective=UPTObjective(**objective_kwargs(cfg))))
    from_python = _built(lambda: UPT.from_preset(name, objective=UPTObjective(seed=cfg.seed)))

    def config(model):
        return json.dumps({k: v for k, v in model.get_config().items() if k != "name"}, sort_keys=True, default=str)

    assert config(from_yaml) == config(from_python)
    assert from_yaml.count_params() == from_python.count_params() > 0
    u = np.random.default_rng(0).normal(size=(1,) + tuple(grid) + (fields,)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(from_yaml(u)), keras.ops.convert_to_numpy(from_python(u)),
                               rtol=1e-6, atol=1e-6)


def test_decoder_readout_is_a_config_key(tmp_path):
    """`model.decoder_readout` reaches the decoder from a YAML (and the default stays the plain linear head)."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  preset: tiny\n  decoder_readout: bilinear\n")
    cfg = load_config(str(path))
    assert cfg.model.decoder_readout == "bilinear"
    model = UPT.from_sizes(grid_shape=(32,), num_fields=1, **model_kwargs(cfg))
    assert model.decoder.readout == "bilinear"
    assert UPT.from_preset("tiny").decoder.readout == "linear"


def test_decoder_patch_readout_is_a_config_key(tmp_path):
    """`model.decoder_patch_readout` gives the decoder a patch readout over the encoder's patches from a YAML; a model
    whose tokens are not one per patch is refused with the key named."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  preset: tiny\n  pooling: average\n  decoder_patch_readout: true\n")
    cfg = load_config(str(path))
    assert cfg.model.decoder_patch_readout is True
    model = UPT.from_sizes(grid_shape=(32,), num_fields=1, **model_kwargs(cfg))
    assert model.decoder.patch_grid == (8,) and model.decoder.patch_size == 4
    assert tuple(model(np.zeros((2, 32, 1), "float32")).shape) == (2, 32, 1)
    assert UPT.from_preset("tiny").decoder.patch_grid is None
    with pytest.raises(ValueError, match="decoder_patch_readout"):
        UPT.from_preset("tiny", decoder_patch_readout=True)  # perceiver pooling: 8 tokens for 8 patches, no order
