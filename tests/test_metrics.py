import numpy as np
import pytest

from upt_keras.evaluation.metrics import (
    all_metrics,
    nrmse_per_channel,
    brmse,
    crmse,
    denormalize,
    frmse,
    max_error,
    normalize,
    nrmse,
    per_step_metrics,
    rmse,
)


def _field_1d(b=3, n=64, c=2, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(n) / n
    base = np.sin(2 * np.pi * x)[None, :, None] * rng.uniform(0.5, 2.0, size=(b, 1, c))
    return base + 0.1 * rng.normal(size=(b, n, c))


# ---------------------------------------------------------------------------------------------------------------------
# hand-computed tiny cases
# ---------------------------------------------------------------------------------------------------------------------


def test_rmse_and_nrmse_by_hand():
    true = np.array([[[3.0], [4.0]]])  # (B=1, X=2, C=1), ||true|| = 5
    pred = np.array([[[3.0], [2.0]]])  # error (0, -2): ||e|| = 2, RMSE = sqrt(4 / 2)
    assert rmse(pred, true) == pytest.approx(np.sqrt(2.0))
    assert nrmse(pred, true) == pytest.approx(2.0 / 5.0)
    assert max_error(pred, true) == pytest.approx(2.0)


def test_nrmse_is_per_sample_then_averaged():
    # sample 0: relative error 0.1, sample 1: relative error 0.5 -> mean 0.3 (not the pooled ratio)
    true = np.array([[[10.0], [0.0]], [[1.0], [0.0]]])
    pred = np.array([[[11.0], [0.0]], [[1.5], [0.0]]])
    assert nrmse(pred, true) == pytest.approx(0.3)


def test_crmse_by_hand():
    true = np.zeros((2, 4, 1))
    pred = np.zeros((2, 4, 1))
    pred[0, 0, 0] = 4.0  # sample 0: mean error 1
    pred[1, :, 0] = 3.0  # sample 1: mean error 3
    # RMS over samples of the mean error: sqrt((1 + 9) / 2)
    assert crmse(pred, true) == pytest.approx(np.sqrt(5.0))


def test_brmse_by_hand_1d():
    true = np.zeros((1, 5, 1))
    pred = np.zeros((1, 5, 1))
    pred[0, 0, 0] = 3.0
    pred[0, -1, 0] = 4.0
    pred[0, 2, 0] = 100.0  # interior: ignored
    assert brmse(pred, true) == pytest.approx(np.sqrt((9 + 16) / 2))


def test_brmse_by_hand_2d():
    true = np.zeros((1, 3, 4, 1))
    pred = np.zeros((1, 3, 4, 1))
    pred[0, 1, 1:3, 0] = 50.0  # interior of a 3 x 4 grid: ignored
    pred[0, 0, 1, 0] = 2.0  # one edge point (not a corner): counted once over 2H + 2W = 14 edge slots
    assert brmse(pred, true) == pytest.approx(np.sqrt(4.0 / 14.0))


def test_frmse_by_hand_1d():
    n = 32
    x = np.arange(n) / n
    true = np.zeros((1, n, 1))
    pred = (0.5 * np.cos(2 * np.pi * 2 * x))[None, :, None]  # all error in wavenumber 2
    # |rfft|_2 = 0.5 * n / 2, normalised by n -> 0.25; the low band averages k = 0..3 -> 0.25 / 4
    out = frmse(pred, true)
    assert out["low"] == pytest.approx(0.25 / 4)
    assert out["mid"] == pytest.approx(0.0, abs=1e-12)
    assert out["high"] == pytest.approx(0.0, abs=1e-12)


def test_frmse_by_hand_2d():
    h = w = 32
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    pred = np.cos(2 * np.pi * (3 * yy + 4 * xx))[None, :, :, None]  # |k| = 5: mid band
    true = np.zeros_like(pred)
    # fft amplitude at (3, 4) is H W / 2; its shell is floor(5) = 5; normalised by H W -> 0.5; mid band has 8 shells
    out = frmse(pred, true)
    assert out["mid"] == pytest.approx(0.5 / 8)
    assert out["low"] == pytest.approx(0.0, abs=1e-12)
    assert out["high"] == pytest.approx(0.0, abs=1e-12)


def test_frmse_empty_band_is_nan():
    p = np.zeros((1, 8, 1))
    assert np.isnan(frmse(p + 1.0, p)["high"])  # 8 points: wavenumbers 0..4 only


# ---------------------------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, time_axis", [((3, 64, 2), None), ((2, 5, 64, 1), 1), ((2, 32, 40, 2), None),
                                              ((2, 3, 32, 40, 2), 1)])
def test_identical_inputs_give_zero(shape, time_axis):
    true = np.random.default_rng(1).normal(size=shape)
    out = all_metrics(true, true.copy(), time_axis=time_axis)
    channels = {f"nrmse_c{c}" for c in range(shape[-1])} if shape[-1] > 1 else set()
    assert set(out) == {"rmse", "nrmse", "crmse", "brmse", "max_error", "frmse_low", "frmse_mid", "frmse_high"} | channels
    for key, value in out.items():
        assert isinstance(value, float)
        assert value == pytest.approx(0.0, abs=1e-12), key


def test_nrmse_scale_invariance():
    true = _field_1d()
    pred = true + 0.05 * np.random.default_rng(2).normal(size=true.shape)
    base = nrmse(pred, true)
    assert base > 0
    for scale in (1e-3, 7.0, 1e4):
        assert nrmse(scale * pred, scale * true) == pytest.approx(base, rel=1e-10)
    assert rmse(10 * pred, 10 * true) == pytest.approx(10 * rmse(pred, true))


def test_constant_offset_shows_in_crmse():
    true = _field_1d()
    pred = true + 0.3
    assert crmse(pred, true) == pytest.approx(0.3)
    assert rmse(pred, true) == pytest.approx(0.3)
    # an error with zero spatial mean leaves cRMSE at zero
    n = true.shape[1]
    wiggle = 0.3 * np.sin(2 * np.pi * 5 * np.arange(n) / n)[None, :, None]
    assert crmse(true + wiggle, true) == pytest.approx(0.0, abs=1e-12)
    assert rmse(true + wiggle, true) > 0.1


@pytest.mark.parametrize("dim", [1, 2])
def test_high_frequency_error_only_in_high_band(dim):
    if dim == 1:
        n = 128
        x = np.arange(n) / n
        true = _field_1d(n=n)
        noise = (0.2 * np.sin(2 * np.pi * 20 * x))[None, :, None]
    else:
        n = 48
        yy, xx = np.meshgrid(np.arange(n) / n, np.arange(n) / n, indexing="ij")
        true = np.sin(2 * np.pi * xx)[None, :, :, None] * np.ones((2, 1, 1, 1))
        noise = (0.2 * np.cos(2 * np.pi * (14 * xx + 9 * yy)))[None, :, :, None]  # |k| ~ 16.6: high band
    out = frmse(true + noise, true)
    assert out["high"] > 1e-3
    assert out["low"] == pytest.approx(0.0, abs=1e-12)
    assert out["mid"] == pytest.approx(0.0, abs=1e-12)
    # and a low-frequency error lands in the low band only
    low = 0.2 * np.ones_like(true)
    out = frmse(true + low, true)
    assert out["low"] > 1e-3 and out["mid"] == pytest.approx(0, abs=1e-12) and out["high"] == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("dim", [1, 2])
def test_boundary_only_error_shows_in_brmse(dim):
    rng = np.random.default_rng(3)
    shape = (2, 32, 1) if dim == 1 else (2, 20, 24, 1)
    true = rng.normal(size=shape)
    interior = (slice(None),) + (slice(1, -1),) * dim
    ring = np.ones(shape)
    ring[interior] = 0.0  # error 1 on every boundary point, 0 inside
    pred = true + ring
    assert np.allclose(pred[interior], true[interior])
    assert brmse(pred, true) == pytest.approx(1.0)
    assert brmse(pred, true) > 2 * rmse(pred, true)
    # an interior-only error leaves bRMSE at zero
    pred2 = true.copy()
    pred2[interior] += 1.0
    assert brmse(pred2, true) == pytest.approx(0.0, abs=1e-12)


def test_time_axis_and_per_step():
    rng = np.random.default_rng(4)
    true = rng.normal(size=(3, 5, 32, 2))  # (B, K, X, C)
    growth = np.arange(1, 6)[None, :, None, None] * 0.01
    pred = true * (1 + growth)  # relative error exactly 0.01 * step
    steps = per_step_metrics(pred, true)
    assert set(steps) == {"nrmse", "rmse", "nrmse_per_channel"}
    assert steps["nrmse"].shape == (5,) and steps["rmse"].shape == (5,)
    np.testing.assert_allclose(steps["nrmse"], 0.01 * np.arange(1, 6), rtol=1e-10)
    assert np.all(np.diff(steps["rmse"]) > 0)
    # the all-steps metric is the mean of the per-step curve
    assert nrmse(pred, true, time_axis=1) == pytest.approx(steps["nrmse"].mean())
    # each step on its own equals the one-step metric
    assert nrmse(pred[:, 2], true[:, 2]) == pytest.approx(steps["nrmse"][2])
    assert rmse(pred[:, 4], true[:, 4]) == pytest.approx(steps["rmse"][4])


def test_zero_norm_guard():
    z = np.zeros((1, 8, 1))
    assert nrmse(z, z) == 0.0
    value = nrmse(z + 1e-3, z)
    assert np.isfinite(value) and value > 1e6


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(2, 8, 1\).*\(2, 9, 1\)"):
        rmse(np.zeros((2, 8, 1)), np.zeros((2, 9, 1)))
    with pytest.raises(ValueError, match=r"\(8, 1\)"):
        rmse(np.zeros((8, 1)), np.zeros((8, 1)))
    with pytest.raises(ValueError, match="spatial dims"):
        brmse(np.zeros((1, 4, 4, 4, 1)), np.zeros((1, 4, 4, 4, 1)))
    with pytest.raises(ValueError, match="at least 4"):
        per_step_metrics(np.zeros((2, 8, 1)), np.zeros((2, 8, 1)))


def test_all_metrics_on_point_cloud_3d_skips_grid_metrics():
    p = np.ones((1, 4, 4, 4, 1))
    out = all_metrics(p, 2 * p)
    assert set(out) == {"rmse", "nrmse", "crmse", "max_error"}
    assert out["nrmse"] == pytest.approx(0.5)


def test_normalize_round_trip():
    rng = np.random.default_rng(5)
    x = rng.normal(loc=[1.0, -3.0], scale=[2.0, 0.5], size=(4, 16, 2)).astype(np.float32)
    mean, std = [1.0, -3.0], [2.0, 0.5]
    z = normalize(x, mean, std)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[..., 1], (x[..., 1] + 3.0) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(denormalize(z, mean, std), x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalize(x, 0.0, 2.0), x / 2.0, rtol=1e-6)  # scalars broadcast
    with pytest.raises(ValueError, match=r"2 per-channel values .* got \[0.0, 0.0, 0.0\]"):
        normalize(x, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="non-zero"):
        normalize(x, [0.0, 0.0], [1.0, 0.0])


def test_nrmse_per_channel_reports_each_channel_and_averages_to_nrmse():
    rng = np.random.default_rng(7)
    true = rng.normal(size=(3, 4, 16, 16, 2))
    pred = true.copy()
    pred[..., 1] += 0.1 * rng.normal(size=pred[..., 1].shape)  # only channel 1 is off
    per = nrmse_per_channel(pred, true, time_axis=1)
    assert per.shape == (2,)
    assert per[0] == pytest.approx(0.0, abs=1e-12) and per[1] > 0.05
    out = all_metrics(pred, true, time_axis=1)
    assert out["nrmse_c0"] == pytest.approx(per[0]) and out["nrmse_c1"] == pytest.approx(per[1])
    assert out["nrmse"] == pytest.approx(per.mean())
    steps = per_step_metrics(pred, true, time_axis=1)["nrmse_per_channel"]
    assert steps.shape == (4, 2) and np.allclose(steps.mean(axis=0), per)
