import csv

import numpy as np
import pytest

from upt_keras.evaluation.plots import plot_frames_2d, plot_loss_curves, plot_rollout_error, plot_spacetime, read_history

pytest.importorskip("matplotlib", reason='the figures need the plot extra: pip install "upt-keras[plot]"')


def _read_png(path):
    import matplotlib.image as mpimg

    assert path.exists() and path.stat().st_size > 1000
    return mpimg.imread(str(path))


def _assert_size(img, min_px=300, max_px=3000):
    h, w = img.shape[:2]
    assert min_px <= h <= max_px and min_px <= w <= max_px, img.shape


def _history(epochs=8):
    e = np.arange(epochs)
    ramp = np.clip((e - 2) / 2, 0, 1) * 0.01
    return {
        "epoch": e.tolist(),
        "loss": (1.0 / (e + 1)).tolist(),
        "forward_loss": (0.9 / (e + 1)).tolist(),
        "inv_enc_loss": (0.5 / (e + 1)).tolist(),
        "inv_dec_loss": (0.2 / (e + 1)).tolist(),
        "val_loss": (1.1 / (e + 1)).tolist(),
        "val_forward_loss": (1.0 / (e + 1)).tolist(),
        "lambda_inv_enc": ramp.tolist(),
        "lambda_inv_dec": ramp.tolist(),
        "learning_rate": [1e-3] * epochs,  # not a plotted column: ignored
    }


def test_loss_curves_from_dict(tmp_path):
    out = tmp_path / "loss.png"
    assert plot_loss_curves(_history(), out) == str(out)
    _assert_size(_read_png(out))


def test_loss_curves_from_csv_with_missing_columns(tmp_path):
    # a CSVLogger-style file without inverse losses, validation or weights: those are skipped
    hist = _history()
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "loss", "forward_loss"])
        for row in zip(hist["epoch"], hist["loss"], hist["forward_loss"]):
            writer.writerow(row)
    assert set(read_history(path)) == {"epoch", "loss", "forward_loss"}
    out = tmp_path / "plots" / "loss.png"  # parent folder is created
    plot_loss_curves(path, out)
    _assert_size(_read_png(out))


def test_loss_curves_tolerate_zero_and_nan(tmp_path):
    hist = _history(5)
    hist["inv_enc_loss"] = [0.0, 0.0, 0.3, 0.2, float("nan")]  # switched off during warmup
    hist["lambda_inv_dec"] = ["", "", 0.01, 0.01, 0.01]  # empty cells read as nan
    out = tmp_path / "loss.png"
    plot_loss_curves(hist, out)
    _read_png(out)


def test_loss_curves_without_losses_raise(tmp_path):
    with pytest.raises(ValueError, match="learning_rate"):
        plot_loss_curves({"epoch": [0, 1], "learning_rate": [1e-3, 1e-3]}, tmp_path / "x.png")


def test_spacetime(tmp_path):
    t, x = np.linspace(0, 1, 21), np.linspace(0, 1, 64, endpoint=False)
    true = np.sin(2 * np.pi * (x[None] - 0.3 * t[:, None]))
    pred = true + 0.05 * np.cos(6 * np.pi * x)[None]
    out = tmp_path / "st.png"
    plot_spacetime(true, pred, out, x=x, t=t, title="Burgers")
    img = _read_png(out)
    _assert_size(img)
    assert img.shape[1] > img.shape[0]  # three panels side by side
    plot_spacetime(true[..., None], pred[..., None], tmp_path / "st_channel.png")  # trailing channel of size 1


def test_spacetime_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        plot_spacetime(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\(5, 8\).*\(5, 9\)"):
        plot_spacetime(np.zeros((5, 8)), np.zeros((5, 9)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="x and t"):
        plot_spacetime(np.zeros((5, 8)), np.zeros((5, 8)), tmp_path / "x.png", x=np.arange(7))


def test_frames_2d(tmp_path):
    rng = np.random.default_rng(0)
    true = rng.normal(size=(6, 16, 16))
    pred = true + 0.1 * rng.normal(size=true.shape)
    out = tmp_path / "frames.png"
    plot_frames_2d(true, pred, out)
    _assert_size(_read_png(out))
    out2 = tmp_path / "frames_steps.png"
    plot_frames_2d(true[..., None], pred[..., None], out2, steps=[0, -1])
    img = _read_png(out2)
    _assert_size(img, min_px=200)
    assert img.shape[0] > img.shape[1]  # 3 rows, 2 columns


def test_frames_2d_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"\(6, 16\)"):
        plot_frames_2d(np.zeros((6, 16)), np.zeros((6, 16)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="out of range"):
        plot_frames_2d(np.zeros((3, 4, 4)), np.zeros((3, 4, 4)), tmp_path / "x.png", steps=[5])


def test_rollout_error(tmp_path):
    k = np.arange(1, 21)
    out = tmp_path / "rollout.png"
    plot_rollout_error({"latent": 0.01 * k, "physical": 0.012 * k ** 1.1}, out)
    _assert_size(_read_png(out))


def test_rollout_error_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"'latent'.*\(2, 3\)"):
        plot_rollout_error({"latent": np.zeros((2, 3))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        plot_rollout_error({}, tmp_path / "x.png")


# -------------------------------------------------------------------------------- read at a glance


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, before they are written."""
    from upt_keras.evaluation import plots

    drawn = []
    original = plots._save

    def keep(fig, path):
        drawn.append(fig)
        return original(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return drawn


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_loss_curves_per_step_with_validation_nrmse_and_identity(tmp_path, figures):
    path = tmp_path / "history_steps.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "epoch", "loss", "forward_loss", "val_loss", "val_forward_loss", "val_nrmse",
                    "val_identity_nrmse"])
        for step in range(10, 110, 10):
            val = step % 50 == 0
            w.writerow([step, step / 40, 1 / step, 0.9 / step, "", 2 / step if val else "", 0.1 / step if val else "",
                        0.03 if val else ""])
    plot_loss_curves(str(path), tmp_path / "loss.png")
    fig = figures[-1]
    loss_ax, nrmse_ax = fig.axes[:2]
    assert "val_forward_loss" in _legend(loss_ax) and "val_loss" not in _legend(loss_ax)
    assert _legend(nrmse_ax) == ["validation nRMSE", "identity (u_t+1 = u_t)"]
    x, y = nrmse_ax.get_lines()[0].get_data()
    assert list(x) == [50, 100] and y[0] == pytest.approx(0.002)  # rows without validation are skipped
    assert fig.axes[-1].get_xlabel() == "training step"
    ticks = fig.axes[-1].get_xticks()
    assert np.allclose(ticks, np.round(ticks))  # integer steps


def test_loss_curves_per_epoch_count_from_one(tmp_path, figures):
    plot_loss_curves({"epoch": [0, 1], "loss": [1.0, 0.5], "val_forward_loss": [0.9, 0.4]}, tmp_path / "l.png")
    ax = figures[-1].axes[-1]
    assert ax.get_xlabel() == "epoch" and list(ax.get_lines()[0].get_xdata()) == [1, 2]
    assert np.allclose(ax.get_xticks(), np.round(ax.get_xticks()))


def test_colourbars_name_the_field_and_time_axes(tmp_path, figures):
    true = np.random.default_rng(0).normal(size=(5, 16))
    plot_spacetime(true, true + 0.1, tmp_path / "st.png", field="Vx")
    labels = [ax.get_ylabel() for ax in figures[-1].axes[3:]]
    assert labels == ["Vx", "Vx", "|error| of Vx"]
    assert figures[-1].axes[0].get_ylabel() == "step"
    plot_spacetime(true, true, tmp_path / "st2.png", t=np.linspace(0, 0.4, 5))
    assert figures[-1].axes[0].get_ylabel() == "t"
    frames = np.random.default_rng(1).normal(size=(3, 8, 8))
    plot_frames_2d(frames, frames, tmp_path / "f.png", field="density", times=[0.0, 0.05, 0.1])
    fig = figures[-1]
    assert [ax.get_title() for ax in fig.axes[:3]] == ["t = 0", "t = 0.05", "t = 0.1"]
    assert {ax.get_ylabel() for ax in fig.axes[9:]} == {"density", "|error| of density"}


def test_rollout_error_steps_are_integers_with_physical_time_on_top(tmp_path, figures):
    plot_rollout_error({"latent": [0.01, 0.02, 0.03]}, tmp_path / "r.png", dt=0.05)
    ax, top = figures[-1].axes[0], figures[-1].axes[0].child_axes[0]
    assert np.allclose(ax.get_xticks(), np.round(ax.get_xticks()))
    assert top.get_xlabel() == "time after the start (dt = 0.05)"
