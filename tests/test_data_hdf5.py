import os
import time

import h5py
import numpy as np
import pytest

from upt_keras.data import generate as generate_module
from upt_keras.data import layouts as layouts_module
from upt_keras.data.errors import DataError
from upt_keras.data.generate import generate_burgers_dataset
from upt_keras.data.store import open_trajectories
from upt_keras.data.writer import PDEBenchWriter, write_trajectories


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _leftovers(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------------- round trips


def test_tensor_layout_round_trip(tmp_path):
    path = tmp_path / "b1d.h5"
    data = _random((5, 7, 32, 1))
    times = np.arange(7) * 0.05
    x = (np.arange(32) + 0.5) / 32
    write_trajectories(path, data, coords=[x], times=times, attrs={"Nu": 0.01})
    with h5py.File(path, "r") as f:
        assert f["tensor"].shape == (5, 7, 32)
        assert f["t-coordinate"].shape == (8,)  # PDEBench: one more time than frames
        assert f.attrs["Nu"] == pytest.approx(0.01)
    with open_trajectories(path) as store:
        assert store.layout == "tensor"
        assert (store.num_samples, store.num_frames, store.grid_shape, store.num_channels) == (5, 7, (32,), 1)
        assert store.nu == pytest.approx(0.01)
        assert store.dt == pytest.approx(0.05)
        np.testing.assert_allclose(store.coords[0], x, rtol=1e-6)
        np.testing.assert_allclose(store.times, times, atol=1e-7)
        np.testing.assert_array_equal(store.read(slice(None)), data)
        np.testing.assert_array_equal(store.read([3, 0, 3]), data[[3, 0, 3]])  # any order, repeats
        got = store.read(2)
        assert got.dtype == np.float32 and got.shape == (1, 7, 32, 1)


def test_groups_layout_round_trip(tmp_path):
    path = tmp_path / "b2d.h5"
    data = _random((3, 4, 16, 8, 2))
    x, y = np.linspace(0, 1, 16, endpoint=False), np.linspace(0, 2, 8, endpoint=False)
    write_trajectories(path, data, coords=[x, y], times=np.arange(4) * 0.1, attrs={"Nu": 0.002})
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["0000", "0001", "0002"]
        assert f["0001/data"].shape == (4, 16, 8, 2)
        assert f["0001/grid/x"].shape == (16,) and f["0001/grid/y"].shape == (8,) and f["0001/grid/t"].shape == (4,)
    with open_trajectories(path) as store:
        assert store.layout == "groups"
        assert (store.num_samples, store.num_frames, store.grid_shape, store.num_channels) == (3, 4, (16, 8), 2)
        assert store.dt == pytest.approx(0.1) and store.nu == pytest.approx(0.002)
        np.testing.assert_allclose(store.coords[1], y, rtol=1e-6)
        np.testing.assert_array_equal(store.read([2, 0]), data[[2, 0]])


def _write_cfd(path, arrays, extra=None):
    s, t, nx, ny = arrays["Vx"].shape
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
        f["x-coordinate"] = np.linspace(0, 1, nx, endpoint=False)
        f["y-coordinate"] = np.linspace(0, 1, ny, endpoint=False)
        f["t-coordinate"] = np.arange(t + 1) * 0.05
        for key, value in (extra or {}).items():
            f[key] = value


def test_cfd_layout_by_hand(tmp_path):
    path = tmp_path / "cfd.h5"
    keys = ["Vx", "Vy", "density", "pressure"]
    arrays = {k: _random((4, 6, 8, 10), seed=i) for i, k in enumerate(keys)}
    _write_cfd(path, {k: arrays[k] for k in ["pressure", "Vy", "Vx", "density"]})  # file order does not matter
    with open_trajectories(path) as store:
        assert store.layout == "cfd"
        assert store.channel_names == keys
        assert (store.num_samples, store.num_frames, store.grid_shape, store.num_channels) == (4, 6, (8, 10), 4)
        assert store.dt == pytest.approx(0.05)
        np.testing.assert_array_equal(store.read([1, 3]), np.stack([arrays[k] for k in keys], axis=-1)[[1, 3]])


def test_converted_data_layout_by_hand(tmp_path):
    path = tmp_path / "conv.h5"
    data = _random((6, 5, 12, 3))
    with h5py.File(path, "w") as f:
        f["data"] = data
    with open_trajectories(path) as store:
        assert store.layout == "data"
        assert (store.num_samples, store.num_frames, store.grid_shape, store.num_channels) == (6, 5, (12,), 3)
        assert store.dt is None and store.nu is None and store.times is None
        np.testing.assert_allclose(store.coords[0], np.arange(12) / 12)
        np.testing.assert_array_equal(store.read(np.array([5, 1, 2])), data[[5, 1, 2]])


# ---------------------------------------------------------------------------------------------------- striding


def test_striding_every_layout(tmp_path):
    one_d = _random((4, 9, 16, 1))
    write_trajectories(tmp_path / "t.h5", one_d, times=np.arange(9) * 0.01)
    two_d = _random((3, 9, 8, 6, 2))
    write_trajectories(tmp_path / "g.h5", two_d, times=np.arange(9) * 0.01)
    cfd = {"Vx": _random((2, 9, 8, 6), 1), "density": _random((2, 9, 8, 6), 2)}
    _write_cfd(tmp_path / "c.h5", {"Vx": cfd["Vx"], "density": cfd["density"]})
    cfd_full = np.stack([cfd["Vx"], cfd["density"]], axis=-1)

    for name, full, grid in [("t.h5", one_d, (8,)), ("g.h5", two_d, (4, 3)), ("c.h5", cfd_full, (4, 3))]:
        with open_trajectories(tmp_path / name, reduced_resolution=2, reduced_resolution_t=3) as store:
            space = (slice(None, None, 2),) * len(grid)
            expected = full[(slice(None), slice(None, None, 3)) + space]
            assert store.num_frames == 3 and store.grid_shape == grid
            assert [c.size for c in store.coords] == list(grid)
            np.testing.assert_array_equal(store.read(slice(None)), expected)
            # frame_slice counts strided frames
            np.testing.assert_array_equal(store.read([1, 0], frame_slice=slice(1, 3)), expected[[1, 0], 1:3])
            np.testing.assert_array_equal(store.read([0], frame_slice=-1), expected[:1, -1:])
    with open_trajectories(tmp_path / "t.h5", reduced_resolution=2, reduced_resolution_t=3) as store:
        assert store.dt == pytest.approx(0.03, rel=1e-6)
        np.testing.assert_allclose(store.coords[0], np.arange(0, 16, 2) / 16)


# ---------------------------------------------------------------------------------------------------- laziness


def test_opening_is_lazy_and_reads_touch_only_requested_samples(tmp_path, monkeypatch):
    path = tmp_path / "big.h5"
    s, t, x = 20000, 201, 1024  # 16.5 GB of float32 if it were materialised
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("tensor", shape=(s, t, x), dtype="f4", chunks=(1, t, x), fillvalue=np.nan)
        ds[7] = 1.0
        ds[11] = 2.0
        f["x-coordinate"] = np.arange(x) / x
        f["t-coordinate"] = np.arange(t + 1) * 0.01
    assert os.path.getsize(path) < 10_000_000  # only two chunks exist on disk

    start = time.perf_counter()
    store = open_trajectories(path, reduced_resolution=4)
    assert time.perf_counter() - start < 1.0
    assert store.num_samples == s and store.grid_shape == (256,)

    selections = []
    original = h5py.Dataset.__getitem__

    def spy(self, args, *rest, **kwargs):
        if self.name == "/tensor":
            selections.append(args)
        return original(self, args, *rest, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    u = store.read([11, 7])
    assert u.shape == (2, 201, 256, 1)
    assert np.all(u[0] == 2.0) and np.all(u[1] == 1.0)
    rows = set()
    for sel in selections:
        first = sel[0]
        rows.update(range(first.start, first.stop) if isinstance(first, slice) else np.atleast_1d(first).tolist())
    assert rows == {7, 11}  # never touched the (NaN-filled) neighbours
    # An unwritten sample holds the NaN fill value: reading it is an error naming file, key and sample.
    with pytest.raises(DataError) as err:
        store.read([8])
    assert str(path) in str(err.value) and "'tensor'" in str(err.value) and "sample 8" in str(err.value)
    store.close()


# ---------------------------------------------------------------------------------------------------- errors


def _expect_error(path, *fragments):
    with pytest.raises(DataError) as err:
        open_trajectories(path).close()
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "absent.h5", "not found")


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"definitely not hdf5")
    _expect_error(path, "HDF5")


def test_unknown_layout(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f["velocity"] = np.zeros((2, 3, 4))
    _expect_error(path, "unknown layout", "velocity")


def test_missing_coordinate_key(tmp_path):
    path = tmp_path / "nocoord.h5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((2, 3, 4), np.float32)
        f["t-coordinate"] = np.arange(4.0)
    _expect_error(path, "'x-coordinate'", "missing key")


def test_group_without_data(tmp_path):
    path = tmp_path / "groups.h5"
    with h5py.File(path, "w") as f:
        f["0000/data"] = np.zeros((3, 4, 4, 1), np.float32)
        f["0001/grid/x"] = np.zeros(4)
    _expect_error(path, "'0001/data'", "missing key")


def test_ragged_groups(tmp_path):
    path = tmp_path / "ragged.h5"
    with h5py.File(path, "w") as f:
        f["0000/data"] = np.zeros((3, 4, 4, 1), np.float32)
        f["0001/data"] = np.zeros((3, 4, 5, 1), np.float32)
    _expect_error(path, "'0001/data'", "ragged")


def test_ragged_cfd_arrays(tmp_path):
    path = tmp_path / "ragged_cfd.h5"
    _write_cfd(path, {"Vx": np.zeros((2, 3, 4, 4)), "Vy": np.zeros((2, 3, 4, 4))})
    with h5py.File(path, "a") as f:
        del f["Vy"]
        f["Vy"] = np.zeros((2, 3, 4, 5))
    _expect_error(path, "'Vy'", "ragged")


def test_non_finite_values_in_groups_and_cfd(tmp_path):
    path = tmp_path / "nan.h5"
    data = np.zeros((3, 2, 4, 4, 1), np.float32)
    data[1, 1, 2, 2, 0] = np.inf
    with h5py.File(path, "w") as f:
        for i in range(3):
            f[f"{i:04d}/data"] = data[i]
    with open_trajectories(path) as store:
        store.read([0, 2])  # fine
        with pytest.raises(DataError) as err:
            store.read([0, 1])
    assert str(path) in str(err.value) and "'0001/data'" in str(err.value)

    path = tmp_path / "nan_cfd.h5"
    vx = np.zeros((3, 2, 4, 4))
    vx[2, 0, 0, 0] = np.nan
    _write_cfd(path, {"Vx": vx, "density": np.ones((3, 2, 4, 4))})
    with open_trajectories(path) as store:
        with pytest.raises(DataError) as err:
            store.read(slice(None))
    assert str(path) in str(err.value) and "'Vx'" in str(err.value) and "sample 2" in str(err.value)


# ---------------------------------------------------------------------------------------------------- atomic writes


def test_exception_inside_writer_leaves_no_file(tmp_path):
    path = tmp_path / "partial.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with PDEBenchWriter(path, "tensor", 4, 3, (8,)) as writer:
            writer.write(0, np.zeros((2, 3, 8), np.float32))
            raise RuntimeError("boom")
    assert not path.exists() and _leftovers(tmp_path) == []


def test_incomplete_write_is_refused(tmp_path):
    path = tmp_path / "short.h5"
    with pytest.raises(ValueError, match="never written"):
        with PDEBenchWriter(path, "groups", 3, 2, (4, 4), 1) as writer:
            writer.write(0, np.zeros((2, 2, 4, 4, 1), np.float32))
    assert not path.exists() and _leftovers(tmp_path) == []


def test_interrupted_generation_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "gen.h5"
    generate_burgers_dataset(path, num_samples=2, resolution=32, t_end=0.02, progress=False)
    before = path.read_bytes()
    calls = {"n": 0}
    real_solve = generate_module._burgers.solve_burgers

    def failing_solve(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a long run
        return real_solve(*args, **kwargs)

    monkeypatch.setattr(generate_module._burgers, "solve_burgers", failing_solve)
    with pytest.raises(KeyboardInterrupt):
        generate_burgers_dataset(path, num_samples=6, resolution=32, t_end=0.02, batch=2, progress=False)
    assert calls["n"] == 2
    assert path.read_bytes() == before  # the old, complete file is untouched
    assert _leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        calls["n"] = 0
        generate_burgers_dataset(tmp_path / "new.h5", num_samples=6, resolution=32, t_end=0.02, batch=2,
                                 progress=False)
    assert not (tmp_path / "new.h5").exists() and _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------- generator


def test_generate_1d_is_independent_of_batching_and_matches_the_solver(tmp_path, capsys):
    from upt_keras.data.burgers import solve_burgers

    kwargs = dict(num_samples=5, resolution=64, solver_resolution=128, nu=0.02, t_end=0.05, dt_save=0.01, seed=3)
    a = generate_burgers_dataset(tmp_path / "a.h5", batch=2, progress=True, **kwargs)
    assert "generating 5 Burgers trajectories (1D, 64 points per axis): 5 trajectories in" in capsys.readouterr().out
    b = generate_burgers_dataset(tmp_path / "b.h5", batch=5, progress=False, **kwargs)
    with open_trajectories(a) as sa, open_trajectories(b) as sb:
        ua = sa.read(slice(None))
        np.testing.assert_array_equal(ua, sb.read(slice(None)))
        assert sa.layout == "tensor" and sa.num_frames == 6 and sa.grid_shape == (64,)
        assert sa.dt == pytest.approx(0.01) and sa.nu == pytest.approx(0.02)
        np.testing.assert_allclose(sa.coords[0], np.arange(64) / 64, atol=1e-7)
    # Without subsampling, re-solving the stored frame 0 reproduces the stored trajectories (up to float32 storage).
    c = generate_burgers_dataset(tmp_path / "c.h5", progress=False, **dict(kwargs, solver_resolution=None))
    with open_trajectories(c) as sc:
        uc = sc.read(slice(None))[..., 0].astype(np.float64)
    direct = solve_burgers(uc[:, 0], 0.02, 0.05, 0.01)
    assert np.abs(uc[:, -1] - uc[:, 0]).max() > 1e-2  # the fields evolve
    assert np.linalg.norm(direct - uc) / np.linalg.norm(uc) < 1e-6


def test_generate_2d_vector_and_sinusoid(tmp_path):
    path = generate_burgers_dataset(tmp_path / "v.h5", dim=2, equation="vector", num_samples=2, resolution=16,
                                    nu=0.05, t_end=0.02, dt_save=0.01, progress=False)
    with open_trajectories(path) as store:
        assert store.layout == "groups"
        assert (store.num_samples, store.num_frames, store.grid_shape, store.num_channels) == (2, 3, (16, 16), 2)
        assert np.all(np.isfinite(store.read([0, 1])))
    path = generate_burgers_dataset(tmp_path / "s.h5", ic="sinusoid", num_samples=3, resolution=64,
                                    t_end=0.02, dt_save=0.01, progress=False)
    with open_trajectories(path) as store:
        assert store.read(slice(None)).shape == (3, 3, 64, 1)


# ---------------------------------------------------------------------------------------------------- layout classes


def test_detection_order_and_names(tmp_path):
    assert [cls.name for cls in layouts_module.LAYOUTS] == ["tensor", "cfd", "data", "points", "groups"]
    data = _random((2, 3, 4, 1))
    for name, keys, expected in [("tc.h5", ["tensor", "Vx"], "tensor"), ("cd.h5", ["Vx", "data"], "cfd")]:
        with h5py.File(tmp_path / name, "w") as f:
            for key in keys:
                f[key] = data if key == "data" else data[..., 0]
            f["x-coordinate"] = np.arange(4) / 4
            f["t-coordinate"] = np.arange(3.0)
        with open_trajectories(tmp_path / name) as store:
            assert store.layout == expected


def test_array_layout_reads_contiguous_runs_as_single_slices(tmp_path, monkeypatch):
    path = tmp_path / "runs.h5"
    data = _random((10, 3, 8, 2))
    with h5py.File(path, "w") as f:
        f["data"] = data
    selections = []
    original = h5py.Dataset.__getitem__

    def spy(self, args, *rest, **kwargs):
        if self.name == "/data":
            selections.append(args[0])
        return original(self, args, *rest, **kwargs)

    with open_trajectories(path) as store:
        monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
        got = store.read([6, 1, 2, 5, 1, 3])
    np.testing.assert_array_equal(got, data[[6, 1, 2, 5, 1, 3]])
    assert selections == [slice(1, 4), slice(5, 7)]  # each sample read once, runs 1-3 and 5-6 in one slice each


@pytest.mark.parametrize("layout", ["tensor", "groups", "cfd", "data"])
def test_strided_reads_are_whole_boxes_in_bounded_blocks(tmp_path, monkeypatch, layout):
    """reduced_resolution / _t read the file as unstrided boxes of at most READ_BLOCK_BYTES, strided in memory."""
    s, t, x = 6, 11, 16
    data = _random((s, t, x, x, 2)) if layout in ("groups", "cfd", "data") else _random((s, t, x, 1))
    path = tmp_path / f"{layout}.h5"
    with h5py.File(path, "w") as f:
        if layout == "tensor":
            f["tensor"] = data[..., 0]
            f["x-coordinate"] = np.arange(x) / x
            f["t-coordinate"] = np.arange(t + 1) * 0.1
        elif layout == "groups":
            for i in range(s):
                f[f"{i:04d}/data"] = data[i]
        elif layout == "cfd":
            f["Vx"], f["Vy"] = data[..., 0], data[..., 1]
            f["x-coordinate"], f["y-coordinate"] = np.arange(x) / x, np.arange(x) / x
            f["t-coordinate"] = np.arange(t) * 0.1
        else:
            f["data"] = data
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, args, *rest, **kwargs):
        out = original(self, args, *rest, **kwargs)
        if self.ndim >= 3:
            reads.append((args, out.nbytes))
        return out

    block = 3 * x * x * 2 * 4  # room for three frames of a 2D sample: forces several blocks per read
    monkeypatch.setattr(layouts_module.base, "READ_BLOCK_BYTES", block)
    with open_trajectories(path, reduced_resolution=4, reduced_resolution_t=5) as store:
        monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
        got = store.read([4, 0, 1])
    expected = data[[4, 0, 1]][:, ::5, ::4]
    if layout != "tensor":
        expected = expected[:, :, :, ::4]
    np.testing.assert_array_equal(got, expected)
    # the box: 13 of the 16 points per axis (0..12 holds every 4th), all 11 frames (0..10 holds every 5th)
    point_bytes = 13 * 4 if layout == "tensor" else 13 * 13 * (2 if layout in ("groups", "data") else 1) * 4
    # a block is whole rows of the box's first axis: samples (at least one), or frames of a group (5 at least)
    bound = max(block, 5 * point_bytes) if layout == "groups" else max(block, 11 * point_bytes)
    assert len(reads) >= (6 if layout == "groups" else 2)  # several blocks per sample, or one per run of samples
    for args, nbytes in reads:
        args = args if isinstance(args, tuple) else (args,)
        assert all(not isinstance(a, slice) or a.step in (None, 1) for a in args), args  # no strided hyperslab
        assert nbytes <= bound, (args, nbytes, bound)


def test_a_new_layout_class_plugs_into_the_store(tmp_path, monkeypatch):
    class VelocityLayout(layouts_module.ChannelArraysLayout):
        name = "velocity"

        @classmethod
        def matches(cls, keys, file):
            return "velocity" in keys

        def inspect(self):
            ds = self.dataset("velocity")
            self.sources = [("velocity", ds)]
            grid = tuple(ds.shape[2:])
            return layouts_module.LayoutInfo(ds.shape[0], ds.shape[1], grid, 1, ["velocity"],
                                             ("x-coordinate",), "t-coordinate", False)

    path = tmp_path / "velocity.h5"
    data = _random((4, 3, 6))
    data[2, 1, 0] = np.nan
    with h5py.File(path, "w") as f:
        f["velocity"] = data
    _expect_error(path, "unknown layout", "velocity")
    monkeypatch.setattr(layouts_module, "LAYOUTS", layouts_module.LAYOUTS + (VelocityLayout,))
    with open_trajectories(path, reduced_resolution=2) as store:
        assert store.layout == "velocity" and store.channel_names == ["velocity"]
        assert (store.num_samples, store.num_frames, store.grid_shape, store.num_channels) == (4, 3, (3,), 1)
        np.testing.assert_array_equal(store.read([3, 0]), data[[3, 0], :, ::2, None])
        with pytest.raises(DataError) as err:
            store.read(slice(1, 4))
    assert "'velocity'" in str(err.value) and "sample 2" in str(err.value)
