"""Scattered points: the `points` layout, its writer (`generate-data --points-fraction`), and training a point-cloud
UPT from a config on such a file (inputs and targets at each sample's own points, evaluation on the full grid)."""

import os

import h5py
import numpy as np
import pytest

import keras

from upt_keras import cli, evaluation, training
from upt_keras.config import ConfigError, load_config
from upt_keras.data import DataError, generate_dataset, open_trajectories, write_trajectories
from upt_keras.data.writer import PDEBenchWriter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = (8, 6)

# a point-cloud UPT of the points64 preset, shrunk to test size
TINY_POINTS = [
    "model.preset=points64", "model.encoder_dim=16", "model.encoder_heads=2", "model.num_latent_tokens=4",
    "model.latent_dim=16", "model.num_supernodes=16", "model.supernode_radius=0.3", "model.supernode_neighbours=4",
    "model.approximator_width=16", "model.approximator_depth=1", "model.approximator_heads=2",
    "model.decoder_width=16", "model.decoder_heads=2", "model.decoder_depth=1", "model.decoder_mlp_dim=16",
    "model.mlp_ratio=2", "model.frequencies=[1,2]",
]


def _trajectories(num=3, frames=4, grid=GRID, channels=1, seed=0):
    return np.random.default_rng(seed).normal(size=(num, frames) + grid + (channels,)).astype(np.float32)


def _write_points(path, u, num_points, seed=0, keep_grid=True):
    with PDEBenchWriter(path, "points", u.shape[0], u.shape[1], u.shape[2:-1], u.shape[-1],
                        times=np.arange(u.shape[1]) * 0.1, attrs={"dt_save": 0.1}, num_points=num_points, seed=seed,
                        keep_grid=keep_grid) as writer:
        writer.write(0, u[:1])
        writer.write(1, u[1:])
    return str(path)


def _values_at(u, positions):
    """u (S, T, *grid, C) read at positions (S, N, d) that are grid points: (S, T, N, C)."""
    idx = np.round(positions * np.asarray(u.shape[2:-1])).astype(int)  # (S, N, d)
    return np.stack([u[s][(slice(None),) + tuple(idx[s].T)] for s in range(u.shape[0])])


# ---------------------------------------------------------------------------------------------------- the layout


def test_points_round_trip(tmp_path):
    u = _trajectories()
    path = _write_points(tmp_path / "p.h5", u, num_points=12, seed=3)
    with h5py.File(path, "r") as f:
        assert list(f.attrs["grid_shape"]) == list(GRID)
        assert f["0001/positions"].shape == (12, 2) and f["0001/fields"].shape == (4, 12, 1)
        assert f["0001/grid"].shape == (4,) + GRID + (1,)
    with open_trajectories(path) as store:
        assert store.layout == "points" and store.has_grid
        assert (store.num_samples, store.num_frames, store.grid_shape) == (3, 4, GRID)
        assert store.dt == pytest.approx(0.1)
        points = store.points
        assert (points.num_points, points.grid_shape, points.coord_dim) == (12, (12,), 2)
        positions = points.positions([2, 0, 2])  # any order, repeats
        fields = points.read([2, 0, 2])
        assert positions.shape == (3, 12, 2) and fields.shape == (3, 4, 12, 1)
        assert positions.min() >= 0.0 and positions.max() < 1.0
        assert not np.array_equal(positions[0], positions[1])  # every sample has its own points
        np.testing.assert_array_equal(positions[0], positions[2])
        np.testing.assert_array_equal(fields, _values_at(u[[2, 0, 2]], positions))  # the grid's values there
        assert len({tuple(p) for p in positions[0]}) == 12  # distinct points
        np.testing.assert_array_equal(store.read([1]), u[[1]])  # the full-grid copy
        assert points.read([1], frame_slice=slice(1, 3)).shape == (1, 2, 12, 1)
    # seeded: the same points again, whatever the batches; another seed draws others
    again = _write_points(tmp_path / "again.h5", u, num_points=12, seed=3)
    other = _write_points(tmp_path / "other.h5", u, num_points=12, seed=4)
    with open_trajectories(again) as a, open_trajectories(other) as b:
        np.testing.assert_array_equal(a.points.positions([2, 0]), positions[:2])
        assert not np.array_equal(b.points.positions([2]), positions[:1])


def test_points_without_grid_copy(tmp_path):
    u = _trajectories()
    path = _write_points(tmp_path / "p.h5", u, num_points=5, keep_grid=False)
    with open_trajectories(path) as store:
        assert store.layout == "points" and not store.has_grid
        assert store.points.read(slice(None)).shape == (3, 4, 5, 1)
        with pytest.raises(DataError, match=r"p\.h5 \(key '0001/grid'\): the file has no full-grid copy"):
            store.read([1])


def _hand_written(path, edit=None, samples=2, n=5):
    with h5py.File(path, "w") as f:
        f.attrs["grid_shape"] = [8, 8]
        for s in range(samples):
            g = f.create_group(f"{s:04d}")
            g["positions"] = np.random.default_rng(s).uniform(0, 1, (n, 2)).astype(np.float32)
            g["fields"] = np.zeros((3, n, 1), np.float32)
        if edit is not None:
            edit(f)
    return str(path)


def _replace(key, value):
    def edit(f):
        del f[key]
        f[key] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.attrs.__delitem__("grid_shape"), r": missing root attribute 'grid_shape'"),
    (lambda f: f.attrs.__setitem__("grid_shape", [8, 0]), r": root attribute 'grid_shape' must hold 1 to 3"),
    (_replace("0000/positions", np.zeros((5, 3), np.float32)),
     r" \(key '0000/positions'\): expected \(points, 2\) for grid_shape \[8, 8\], got shape \(5, 3\)"),
    (_replace("0000/fields", np.zeros((3, 4, 1), np.float32)),
     r" \(key '0000/fields'\): expected \(time, 5 points, channels\), got shape \(3, 4, 1\)"),
    (_replace("0001/positions", np.zeros((6, 2), np.float32)),
     r" \(key '0001/positions'\): shape \(6, 2\) differs from \(5, 2\) \(from '0000/positions'\): every"),
    (_replace("0001/fields", np.zeros((4, 5, 1), np.float32)),
     r" \(key '0001/fields'\): shape \(4, 5, 1\) differs from \(3, 5, 1\) \(from '0000/fields'\)"),
    (lambda f: f["0001"].__delitem__("fields"), r" \(key '0001/fields'\): missing key"),
    (lambda f: f["0001"].create_dataset("grid", data=np.zeros((3, 8, 8, 1))),
     r" \(key '0001/grid'\): a full-grid copy in some samples only"),
    (lambda f: f["0000"].create_dataset("grid", data=np.zeros((3, 8, 4, 1))),
     r" \(key '0000/grid'\): shape \(3, 8, 4, 1\) differs from \(3, 8, 8, 1\) \(from '0000/fields' and "),
])
def test_bad_points_files_name_the_key(tmp_path, edit, message):
    path = _hand_written(tmp_path / "bad.h5", edit)
    with pytest.raises(DataError, match=r"bad\.h5" + message):
        open_trajectories(path).close()


def test_bad_positions_and_values_are_named_when_read(tmp_path):
    path = _hand_written(tmp_path / "bad.h5", _replace("0001/positions", np.full((5, 2), 1.0, np.float32)))
    with open_trajectories(path) as store:
        store.points.positions([0])
        with pytest.raises(DataError, match=r"\(key '0001/positions'\): positions must lie in \[0, 1\)"):
            store.points.positions([1])
    path = _hand_written(tmp_path / "nan.h5", _replace("0001/fields", np.full((3, 5, 1), np.nan, np.float32)))
    with open_trajectories(path) as store:
        with pytest.raises(DataError, match=r"\(key '0001/fields'\): non-finite values \(NaN or inf\) in sample 1"):
            store.points.read([0, 1])


def test_points_writer_checks_and_leaves_nothing_half_written(tmp_path):
    with pytest.raises(ValueError, match=r"layout 'points' needs num_points in \[1, 48\]"):
        PDEBenchWriter(tmp_path / "p.h5", "points", 2, 3, GRID, num_points=49)
    u = _trajectories()
    u[2, 1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        _write_points(tmp_path / "p.h5", u, num_points=5)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------------- generating


def test_generate_points_fraction(tmp_path, capsys):
    path = str(tmp_path / "p.h5")
    generate_dataset(path, "burgers", num_samples=3, dim=2, resolution=8, t_end=0.02, dt_save=0.01, progress=False,
                     points_fraction=0.25, seed=5)
    grid_path = str(tmp_path / "g.h5")
    generate_dataset(grid_path, "burgers", num_samples=3, dim=2, resolution=8, t_end=0.02, dt_save=0.01,
                     progress=False, seed=5)
    with open_trajectories(path) as store, open_trajectories(grid_path) as grid:
        assert store.layout == "points" and store.points.num_points == 16 and store.grid_shape == (8, 8)
        full = grid.read(slice(None))
        np.testing.assert_array_equal(store.read(slice(None)), full)  # the full grid kept for evaluation
        positions = store.points.positions(slice(None))
        np.testing.assert_array_equal(store.points.read(slice(None)), _values_at(full, positions))
        assert not np.array_equal(positions[0], positions[1])
    with pytest.raises(ValueError, match=r"points_fraction must be in \(0, 1\], got 1.5"):
        generate_dataset(str(tmp_path / "x.h5"), "burgers", num_samples=1, dim=2, resolution=8, t_end=0.01,
                         dt_save=0.01, progress=False, points_fraction=1.5)
    # the command line
    out = tmp_path / "cli.h5"
    code = cli.main(["generate-data", "--out", str(out), "--dim", "2", "--resolution", "8", "--num-samples", "2",
                     "--t-end", "0.02", "--points-fraction", "0.5", "--quiet"])
    assert code == 0 and "2 trajectories (32 scattered points each)" in capsys.readouterr().out
    with open_trajectories(out) as store:
        assert store.layout == "points"
    assert cli.main(["generate-data", "--out", str(tmp_path / "bad.h5"), "--points-fraction", "2"]) == 2
    assert "expected a fraction in (0, 1], got '2'" in capsys.readouterr().err
    assert not (tmp_path / "bad.h5").exists() and not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def points_file(tmp_path_factory):
    """8 Burgers trajectories of 5 frames on 16 x 16, 64 scattered points each, with the full grid."""
    path = tmp_path_factory.mktemp("points") / "points.h5"
    return str(generate_dataset(str(path), "burgers", num_samples=8, dim=2, resolution=16, t_end=0.04,
                                dt_save=0.01, progress=False, points_fraction=0.25))


def points_cfg(path, *extra):
    return load_config(None, [
        "data.source=hdf5", f"data.path={path}", "data.test_fraction=0.25", "data.val_fraction=0.25",
        "data.rollout_steps=2", "training.batch_size=4", "training.epochs=1", "training.checkpoint_every_steps=null",
        "training.query_sampling.enabled=true", "training.query_sampling.num_queries=32", *TINY_POINTS, *extra,
    ])


def test_train_a_point_model_from_a_config(points_file, tmp_path):
    cfg = points_cfg(points_file, "training.use_inverse_losses=true", "training.inverse_loss_warmup_epochs=0",
                     "training.lambda_inv_dec=0.1", "training.lambda_latent_consistency=0.1",
                     "training.rollout_loss_steps=2", "output.plots=false")
    model, history, metrics = training.train(cfg, run_dir=tmp_path / "run", verbose=0, progress=False)
    assert model.encoder.input_kind == "points" and model.grid_shape == (16, 16)
    # 4 trajectories x 3 start frames (5 frames, 2-step targets) / batch 4
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 3
    for name in ("loss", "forward_loss", "rollout_loss", "inv_enc_loss", "inv_dec_loss", "consistency_loss"):
        assert np.isfinite(history.history[name][-1]), name
    one = metrics["one_step"]
    assert one["num_pairs"] == 8 and np.isfinite(one["model"]["nrmse"]) and 0 < one["identity"]["nrmse"] < 1
    assert set(metrics["rollout"]) >= {"latent", "physical", "identity"}
    assert os.path.exists(tmp_path / "run" / "model.keras")


def test_point_datasets_hold_each_samples_points(points_file):
    data = training.prepare_data(points_cfg(points_file), progress=False)
    x, y = data.train[0]
    assert set(x) == {"fields", "positions", "coords"}
    assert x["fields"].shape == (4, 64, 1) and y.shape == (4, 64, 1) and x["positions"].shape == (4, 64, 2)
    np.testing.assert_array_equal(x["coords"], x["positions"])  # the targets are at the inputs' points
    x, y = data.test[0]  # evaluated on the full grid, from the points
    assert set(x) == {"fields", "positions"} and y.shape == (4, 16, 16, 1)
    assert data.test.start_frames(0).shape == (4, 16, 16, 1)
    assert data.grid_shape == (16, 16) and data.info["num_points"] == 64


def test_training_inputs_can_be_a_random_share_of_each_samples_points(points_file, tmp_path):
    """`data.input_points_fraction`: the model is given a fresh random subset of each sample's points; the targets
    and `coords` keep them all (what it is scored on off its inputs)."""
    data = training.prepare_data(points_cfg(points_file, "data.input_points_fraction=0.75"), progress=False)
    full = training.prepare_data(points_cfg(points_file), progress=False)
    x, y = data.train[0]
    x_all, y_all = full.train[0]
    assert x["fields"].shape == (4, 48, 1) and x["positions"].shape == (4, 48, 2)
    assert x["coords"].shape == (4, 64, 2) and y.shape == (4, 64, 1)
    np.testing.assert_array_equal(y, y_all)
    np.testing.assert_array_equal(x["coords"], x_all["positions"])
    for b in range(4):  # each kept point is one of the sample's own, with its own value, and no point twice
        rows = [np.flatnonzero((x_all["positions"][b] == p).all(-1)) for p in x["positions"][b]]
        assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 48
        np.testing.assert_array_equal(x["fields"][b], x_all["fields"][b][[int(r[0]) for r in rows]])
    assert not np.array_equal(x["positions"][0], x["positions"][1])  # each sample its own subset
    first = x["positions"].copy()
    data.train.on_epoch_end()
    assert not np.array_equal(data.train[0][0]["positions"], first)  # a fresh draw every epoch
    x, _ = data.test[0]  # the evaluation keeps every input point
    assert x["fields"].shape == (4, 64, 1)
    model, history, metrics = training.train(points_cfg(points_file, "data.input_points_fraction=0.75",
                                                        "model.residual=true", "output.plots=false"),
                                             run_dir=tmp_path / "run", verbose=0, progress=False)
    assert np.isfinite(history.history["loss"][-1]) and model.residual
    assert np.isfinite(metrics["one_step"]["model"]["nrmse"])


def test_input_points_fraction_needs_a_point_cloud(tmp_path):
    grid_file = str(write_trajectories(tmp_path / "g.h5", _trajectories(num=4, grid=(16, 16))))
    cfg = load_config(None, ["data.source=hdf5", f"data.path={grid_file}", "data.input_points_fraction=0.5"])
    with pytest.raises(ConfigError, match=r"data\.input_points_fraction=0\.5 keeps a share .* not a point cloud"):
        training.prepare_data(cfg, progress=False)
    with pytest.raises(ConfigError, match="input_points_fraction"):
        load_config(None, ["data.input_points_fraction=0"])


def test_points_only_file_evaluates_at_the_points(tmp_path):
    u = _trajectories(num=4, frames=4, grid=(8, 8))
    path = _write_points(tmp_path / "p.h5", u, num_points=16, keep_grid=False)
    cfg = points_cfg(path, "data.in_memory=false", "data.val_fraction=0.0", "training.query_sampling.num_queries=8")
    data = training.prepare_data(cfg, splits=("test", "rollout"), progress=False)
    try:
        x, y = data.test[0]
        assert set(x) == {"fields", "positions", "coords"} and y.shape == (3, 16, 1)
        model = training.build_model(cfg, data)
        metrics = evaluation.evaluate(model, data, run_dir=tmp_path / "eval", progress=False)
        assert metrics["one_step"]["num_pairs"] == 3
        identity = evaluation.metrics.nrmse(x["fields"], y)  # u_t at the same points as the targets
        assert metrics["one_step"]["identity"]["nrmse"] == pytest.approx(identity)
        assert metrics["rollout"]["num_steps"] == 2 and "rollout_frames_latent" not in metrics["files"]
    finally:
        data.close()


def test_model_and_file_must_match(points_file, tmp_path):
    grid_file = str(write_trajectories(tmp_path / "g.h5", _trajectories(num=4, grid=(16, 16))))
    with pytest.raises(ConfigError, match=r"model\.encoder=points .* is a grid file \(layout 'groups'\)"):
        training.prepare_data(points_cfg(grid_file), progress=False)
    with pytest.raises(ConfigError, match=r"holds scattered points \(layout 'points'\), which model\.encoder=grid"):
        training.prepare_data(points_cfg(points_file, "model.encoder=grid"), progress=False)
    with pytest.raises(ConfigError, match=r"training\.query_sampling\.num_queries=65 exceeds the 64 points of each"):
        training.prepare_data(points_cfg(points_file, "training.query_sampling.num_queries=65"), progress=False)
    with pytest.raises(ConfigError, match=r"training\.query_sampling\.strategy=stratified"):
        training.prepare_data(points_cfg(points_file, "training.query_sampling.strategy=stratified"), progress=False)
