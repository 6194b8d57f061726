import numpy as np
import pytest

from upt_keras import training
from upt_keras.cli import commands as cli
from upt_keras.config import load_config
from upt_keras.data import (
    PairDataset,
    compute_normalization,
    generate_dataset,
    open_trajectories,
    solve_fisher_kpp,
    solve_kuramoto_sivashinsky,
    split_indices,
)

# Tiny settings per kind: (pde, settings, layout, grid, channels, frames).
KINDS = {
    "ks": ("ks", dict(resolution=32, length=22.0, t_end=2.0, t_burn=5.0), "tensor", (32,), 1, 5),
    "fisher_1d": ("fisher", dict(resolution=32, t_end=0.2), "tensor", (32,), 1, 5),
    "fisher_2d": ("fisher", dict(dim=2, resolution=16, t_end=0.2), "groups", (16, 16), 1, 5),
    "navier_stokes": ("navier-stokes", dict(resolution=16, t_end=2.0), "groups", (16, 16), 1, 3),
    "burgers_velocity_2d": ("burgers", dict(dim=2, equation="vector", resolution=16, t_end=0.04), "groups", (16, 16), 2,
                            5),
    "burgers_scalar_2d": ("burgers", dict(dim=2, resolution=16, t_end=0.04), "groups", (16, 16), 1, 5),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_loads_through_the_data_pipeline(tmp_path, kind):
    pde, settings, layout, grid, channels, frames = KINDS[kind]
    path = generate_dataset(str(tmp_path / f"{kind}.h5"), pde, num_samples=8, progress=False, **settings)
    with open_trajectories(path) as store:
        shape = (store.layout, store.grid_shape, store.num_channels, store.num_frames)
        assert shape == (layout, grid, channels, frames)
        assert store.dt == pytest.approx({"ks": 0.5, "navier-stokes": 1.0, "fisher": 0.05}.get(pde, 0.01))
        split = split_indices(store.num_samples, 0.25, 0.25)
        stats = compute_normalization(store, split["train"])
        assert np.all(np.asarray(stats["std"]) > 0)
        x, y = PairDataset(store, split["train"], batch_size=4)[0]
        assert x.shape == (4,) + grid + (channels,) and y.shape == x.shape
        assert np.all(np.isfinite(x)) and not np.allclose(x, y)  # consecutive frames differ


def test_generated_files_go_through_prepare_data(tmp_path):
    # the training entry point (data.source=hdf5) reads the new kinds unchanged
    for kind in ("ks", "navier_stokes"):
        pde, settings, _, grid, channels, frames = KINDS[kind]
        path = generate_dataset(str(tmp_path / f"{kind}.h5"), pde, num_samples=8, progress=False, **settings)
        cfg = load_config(None, ["data.source=hdf5", f"data.path={path}", "data.test_fraction=0.25",
                                 "data.val_fraction=0.25", f"data.rollout_steps={frames - 1}", "training.batch_size=4"])
        data = training.prepare_data(cfg, splits=("train", "test", "rollout"), progress=False)
        assert data.grid_shape == grid and data.num_channels == channels
        assert data.dt == pytest.approx(0.5 if pde == "ks" else 1.0)


def test_samples_match_the_solver_and_do_not_depend_on_the_batch(tmp_path):
    pde, settings, *_ = KINDS["ks"]
    a = generate_dataset(str(tmp_path / "a.h5"), pde, num_samples=5, batch=2, progress=False, **settings)
    b = generate_dataset(str(tmp_path / "b.h5"), pde, num_samples=3, batch=3, progress=False, **settings)
    with open_trajectories(a) as sa, open_trajectories(b) as sb:
        ua, ub = sa.read([0, 1, 2]), sb.read([0, 1, 2])
        assert sa.attrs["t_burn"] == 5.0 and sa.attrs["length"] == 22.0 and sa.nu is None
    np.testing.assert_array_equal(ua, ub)
    # stored frames are the solver's frames from t_burn on: re-solving from frame 0 continues the same trajectory
    again = solve_kuramoto_sivashinsky(ua[:, 0, :, 0].astype(np.float64), 2.0, 0.5, length=22.0)
    np.testing.assert_allclose(again[:, 1:], ua[:, 1:, :, 0], atol=1e-4)
    assert np.abs(ua).max() > 0.5  # past the burn-in the field has grown to the attractor's size


def test_fisher_settings_reach_the_solver(tmp_path):
    path = generate_dataset(str(tmp_path / "f.h5"), "fisher", num_samples=2, resolution=32, t_end=0.2, nu=0.01,
                            rate=4.0, amplitude=0.5, progress=False)
    with open_trajectories(path) as store:
        u = store.read([0, 1])[..., 0]
        assert store.nu == pytest.approx(0.01) and store.attrs["rho"] == 4.0
    assert u[:, 0].min() == pytest.approx(0.0, abs=1e-2) and u[:, 0].max() == pytest.approx(0.5, abs=1e-2)
    again = solve_fisher_kpp(u[:, 0].astype(np.float64), 0.01, 4.0, 0.2, 0.05)
    np.testing.assert_allclose(again, u, atol=1e-5)
    wrong_rate = solve_fisher_kpp(u[:, 0].astype(np.float64), 0.01, 2.0, 0.2, 0.05)
    assert np.abs(wrong_rate - u).max() > 1e-2


def test_bad_settings_are_named(tmp_path):
    out = str(tmp_path / "x.h5")
    with pytest.raises(ValueError, match="pde must be one of burgers, ks, fisher, navier-stokes; got 'heat'"):
        generate_dataset(out, "heat")
    with pytest.raises(ValueError, match="pde 'ks' has no setting 'nu'"):
        generate_dataset(out, "ks", nu=0.1)
    with pytest.raises(ValueError, match="pde 'burgers' has no setting 'rate'"):
        generate_dataset(out, "burgers", rate=0.1)
    with pytest.raises(ValueError, match="pde 'navier-stokes' does not take dim=1"):
        generate_dataset(out, "navier-stokes", dim=1)


def test_cli_writes_each_pde_and_rejects_bad_values(tmp_path, capsys):
    out = tmp_path / "ks.h5"
    code = cli.main(["generate-data", "--out", str(out), "--pde", "ks", "--num-samples", "2", "--resolution", "32",
                     "--length", "22", "--t-end", "1", "--t-burn", "2", "--quiet"])
    assert code == 0 and "2 trajectories, 3 frames, grid (32,)" in capsys.readouterr().out
    code = cli.main(["generate-data", "--out", str(tmp_path / "ns.h5"), "--pde", "navier-stokes", "--num-samples", "2",
                     "--resolution", "16", "--t-end", "1", "--quiet"])
    assert code == 0 and "grid (16, 16), 1 channel(s), dt 1.0" in capsys.readouterr().out
    code = cli.main(["generate-data", "--out", str(tmp_path / "f.h5"), "--pde", "fisher", "--dim", "2",
                     "--num-samples", "2", "--resolution", "16", "--t-end", "0.1", "--rate", "3", "--quiet"])
    assert code == 0 and "grid (16, 16)" in capsys.readouterr().out
    for argv, message in [
        (["--pde", "heat"], "argument --pde: invalid choice: 'heat'"),
        (["--pde", "ks", "--nu", "0.1"], "--pde ks does not take --nu"),
        (["--pde", "ks", "--ic", "sinusoid"], "--pde ks does not take --ic"),
        (["--pde", "navier-stokes", "--dim", "1"], "pde 'navier-stokes' does not take dim=1"),
    ]:
        assert cli.main(["generate-data", "--out", str(tmp_path / "bad.h5"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "bad.h5").exists()
