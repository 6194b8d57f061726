import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from upt_keras.data import PairDataset, compute_normalization, open_trajectories, split_indices, write_trajectories

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _coded(num_samples=8, num_frames=6, n=16, channels=2):
    """Trajectories whose every value encodes (sample, frame): u[s, t] = 100 s + t (+ 0.5 on channel 1)."""
    s = np.arange(num_samples)[:, None, None, None]
    t = np.arange(num_frames)[None, :, None, None]
    c = np.arange(channels)[None, None, None, :] * 0.5
    return np.broadcast_to(100.0 * s + t + c, (num_samples, num_frames, n, channels)).astype(np.float32)


def _decode(batch):
    """(sample, frame) of every item of a (B, n, C) batch, checking that each item is a constant coded field."""
    first = batch[:, 0, 0]
    assert np.all(batch[..., 0] == first[:, None])
    return np.round(first // 100).astype(int), np.round(first % 100).astype(int)


def test_importing_the_data_package_imports_no_framework():
    # Run with a bare parent package so that only the data package's own imports count.
    code = (
        "import sys, types; pkg = types.ModuleType('upt_keras'); pkg.__path__ = [sys.argv[1]]; "
        "sys.modules['upt_keras'] = pkg; import upt_keras.data; "
        "print(sorted(m for m in ('keras', 'torch', 'tensorflow', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "upt_keras")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_split_follows_pdebench_convention():
    split = split_indices(100)
    np.testing.assert_array_equal(split["test"], np.arange(0, 10))  # the FIRST 10% are the test set
    np.testing.assert_array_equal(split["val"], np.arange(10, 20))
    np.testing.assert_array_equal(split["train"], np.arange(20, 100))
    sizes = {k: v.size for k, v in split_indices(600).items()}
    assert sizes == {"train": 480, "val": 60, "test": 60}
    assert split_indices(100, test_fraction=0.29, val_fraction=0.0)["test"].size == 29
    assert split_indices(7)["test"].size == 0  # floor, as PDEBench
    with pytest.raises(ValueError):
        split_indices(10, test_fraction=0.6, val_fraction=0.4)


def test_normalization_uses_only_the_given_samples(tmp_path):
    rng = np.random.default_rng(0)
    data = np.empty((20, 5, 12, 2), np.float32)
    data[..., 0] = rng.normal(3.0, 2.0, size=data.shape[:-1])
    data[..., 1] = rng.normal(-1.0, 0.5, size=data.shape[:-1])
    data[:4] = 1e4  # test and validation samples: must not leak into the statistics
    train = split_indices(20)["train"]
    assert train.min() == 4
    expected_mean = data[train].astype(np.float64).mean(axis=(0, 1, 2))
    expected_std = data[train].astype(np.float64).std(axis=(0, 1, 2))
    stats = compute_normalization(data, train, chunk_size=3)  # several chunks: exercises the merge
    np.testing.assert_allclose(stats["mean"], expected_mean, rtol=1e-10)
    np.testing.assert_allclose(stats["std"], expected_std, rtol=1e-10)
    assert isinstance(stats["mean"], list) and len(stats["std"]) == 2

    write_trajectories(tmp_path / "n.h5", data)
    with open_trajectories(tmp_path / "n.h5") as store:
        from_file = compute_normalization(store, train)
        subset = compute_normalization(store, train, max_samples=4)
    np.testing.assert_allclose(from_file["mean"], expected_mean, rtol=1e-6)
    picked = train[[0, 5, 10, 15]]  # evenly spaced over the 16 training samples
    np.testing.assert_allclose(subset["mean"], data[picked].astype(np.float64).mean(axis=(0, 1, 2)), rtol=1e-6)


def test_normalization_reads_chunks_of_bounded_bytes(tmp_path):
    """The statistics pass reads as many samples at once as fit into `chunk_bytes` (its float64 work arrays are a
    few times that), from a store or an array; the result does not depend on the chunking."""
    data = np.random.default_rng(1).normal(size=(30, 4, 8, 2)).astype(np.float32)  # 256 bytes per sample
    write_trajectories(tmp_path / "c.h5", data)
    reads = []
    with open_trajectories(tmp_path / "c.h5") as store:
        original = store.read
        store.read = lambda idx, *a, **k: reads.append(len(idx)) or original(idx, *a, **k)
        small = compute_normalization(store, chunk_bytes=1024)
        assert reads and max(reads) == 4 and sum(reads) == 30  # 1024 bytes / 256 per sample
        reads.clear()
        one = compute_normalization(store, chunk_bytes=1)  # at least one sample per read
        assert set(reads) == {1}
        # no chunk cache: every read is a whole box
        assert store._file.id.get_access_plist().get_cache()[2] == 0
    whole = compute_normalization(data, chunk_size=30)
    for stats in (small, one):
        np.testing.assert_allclose(stats["mean"], whole["mean"], rtol=1e-6)
        np.testing.assert_allclose(stats["std"], whole["std"], rtol=1e-6)


@pytest.mark.parametrize("time_stride", [1, 2])
def test_pairs_are_frames_time_stride_apart(time_stride):
    data = _coded()
    indices = np.array([5, 2, 7])
    ds = PairDataset(data, indices, batch_size=4, time_stride=time_stride)
    assert ds.num_pairs == 3 * (6 - time_stride)
    assert len(ds) == int(np.ceil(ds.num_pairs / 4))
    seen = []
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert x.shape[1:] == (16, 2) and y.shape == x.shape
        sx, tx = _decode(x)
        sy, ty = _decode(y)
        np.testing.assert_array_equal(sx, sy)
        np.testing.assert_array_equal(ty, tx + time_stride)
        np.testing.assert_array_equal(x[..., 1] - x[..., 0], 0.5)  # channels kept, channels last
        seen += list(zip(sx.tolist(), tx.tolist()))
    expected = [(s, t) for s in (5, 2, 7) for t in range(6 - time_stride)]
    assert seen == expected  # unshuffled: trajectory by trajectory, in time order
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_shuffle_changes_between_epochs_and_covers_every_pair_once():
    ds = PairDataset(_coded(), batch_size=5, shuffle=True, seed=1)

    def epoch():
        items = []
        for i in range(len(ds)):
            s, t = _decode(ds[i][0])
            items += list(zip(s.tolist(), t.tolist()))
        return items

    first = epoch()
    ds.on_epoch_end()
    second = epoch()
    everything = sorted((s, t) for s in range(8) for t in range(5))
    assert sorted(first) == everything and sorted(second) == everything
    assert first != second
    again = PairDataset(_coded(), batch_size=5, shuffle=True, seed=1)  # same seed: same first epoch
    s, t = _decode(again[0][0])
    assert list(zip(s.tolist(), t.tolist())) == first[:5]


def test_rollout_targets():
    data = _coded(num_frames=7)
    ds = PairDataset(data, [1, 4], batch_size=3, rollout_steps=3, time_stride=2)
    # starts t with t + 3*2 <= 6: only t = 0 per trajectory
    assert ds.num_pairs == 2
    ds = PairDataset(data, [1, 4], batch_size=3, rollout_steps=3)
    assert ds.num_pairs == 2 * 4
    for i in range(len(ds)):
        x, y = ds[i]
        assert y.shape == (x.shape[0], 3, 16, 2)
        sx, tx = _decode(x)
        for k in range(3):
            sy, ty = _decode(y[:, k])
            np.testing.assert_array_equal(sy, sx)
            np.testing.assert_array_equal(ty, tx + k + 1)
    with pytest.raises(ValueError, match="frames"):
        PairDataset(data, rollout_steps=7)


def test_max_pairs_is_a_fixed_seeded_subset():
    a = PairDataset(_coded(), batch_size=4, max_pairs=10, seed=3)
    b = PairDataset(_coded(), batch_size=4, max_pairs=10, seed=3)
    assert a.num_pairs == 10 and len(a) == 3
    np.testing.assert_array_equal(a.pairs, b.pairs)
    assert len({tuple(p) for p in a.pairs}) == 10


def test_reads_a_store_once_and_fits_a_keras_model(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(10, 5, 16, 1)).astype(np.float32)
    write_trajectories(tmp_path / "fit.h5", data, times=np.arange(5) * 0.1)
    with open_trajectories(tmp_path / "fit.h5") as store:
        train = PairDataset(store, split_indices(10)["train"], batch_size=8, shuffle=True)
    # the store is closed: batches come from memory
    x, y = train[0]
    np.testing.assert_array_equal(train.trajectories, data[2:])
    assert isinstance(train, keras.utils.PyDataset)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 1))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(train, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))
    rollout = PairDataset(data, [0, 1], batch_size=4, rollout_steps=2)
    assert rollout[0][1].shape == (4, 2, 16, 1)
    assert model.predict(rollout, verbose=0).shape == (6, 16, 1)
