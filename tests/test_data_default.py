import os

import numpy as np
import pytest

from upt_keras.data import default as default_module
from upt_keras.data import default_burgers_path, ensure_default_burgers, load_default_burgers


def test_default_path_uses_env_and_encodes_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("UPT_KERAS_CACHE", str(tmp_path / "env-cache"))
    path = default_burgers_path()
    assert os.path.dirname(path) == str(tmp_path / "env-cache")
    assert os.path.basename(path).startswith("burgers1d_nu0.01_x256_t41_n600_grf_v1-")
    assert default_burgers_path(num_samples=4) != path
    changed = dict(default_module.DEFAULT_BURGERS, nu=0.02)
    monkeypatch.setattr(default_module, "DEFAULT_BURGERS", changed)
    assert default_burgers_path() != path  # any parameter change gives a new file name


def test_generated_once_then_reused(tmp_path, monkeypatch):
    with load_default_burgers(cache_dir=tmp_path, num_samples=4, progress=False) as store:
        assert (store.num_samples, store.num_frames, store.grid_shape, store.num_channels) == (4, 41, (256,), 1)
        assert store.dt == pytest.approx(0.01) and store.nu == pytest.approx(0.01)
        u = store.read(slice(None))
    assert np.all(np.isfinite(u)) and 0.5 <= np.abs(u[:, 0]).max() <= 1.5
    path = default_burgers_path(tmp_path, num_samples=4)
    stamp = os.stat(path).st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("regenerated although a valid file exists")

    monkeypatch.setattr(default_module, "generate_burgers_dataset", refuse)
    assert ensure_default_burgers(tmp_path, num_samples=4) == path
    with load_default_burgers(cache_dir=tmp_path, num_samples=4) as store:
        np.testing.assert_array_equal(store.read(slice(None)), u)
    assert os.stat(path).st_mtime_ns == stamp
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_unreadable_cache_file_is_regenerated_and_subsets_agree(tmp_path):
    path = default_burgers_path(tmp_path, num_samples=2)
    os.makedirs(tmp_path, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"truncated by a crash of some other tool")
    assert ensure_default_burgers(tmp_path, num_samples=2, progress=False) == path
    with load_default_burgers(tmp_path, num_samples=2) as two, load_default_burgers(tmp_path, num_samples=3,
                                                                                  progress=False) as three:
        # sample i does not depend on how many samples are generated
        np.testing.assert_array_equal(two.read(slice(None)), three.read([0, 1]))
