"""Where a trained model's one-step error lies in wavenumber, against the change it has to predict.

For each run directory (one written by `upt-keras train` or `bench_accuracy.py`: `config.yaml` and `model.keras`),
the one-step predictions on the first test pairs are split into bands of the radial wavenumber |k| (in cycles per
domain) by a discrete Fourier transform over the spatial axes, and the script prints per band:

- `change share`: the band's share of the power of the true change `u_t+1 - u_t`;
- `error share`: the band's share of the power of the error `prediction - u_t+1`;
- `error / change`: the error's power over the change's in the band (1: no better than predicting no change there);
- `reconstruction / field`: the power of `decode(encode(u_t)) - u_t` over that of `u_t` in the band.

Usage (the printed table is Markdown):

    KERAS_BACKEND=torch python benchmarks/error_spectrum.py RUN_DIR [RUN_DIR ...] [--pairs 160] [--labels NAME ...]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BANDS = ((0, 4), (4, 8), (8, 16), (16, 33), (33, np.inf))


def band_powers(fields):
    """Power of (B, *grid, C) fields in each band of `BANDS` (|k| in cycles per domain), summed over B and C."""
    axes = tuple(range(1, fields.ndim - 1))
    power = (np.abs(np.fft.fftn(fields, axes=axes)) ** 2).sum(axis=(0, fields.ndim - 1))
    freqs = np.meshgrid(*[np.fft.fftfreq(n) * n for n in fields.shape[1:-1]], indexing="ij")
    radius = np.sqrt(sum(f ** 2 for f in freqs))
    return np.array([power[(radius >= lo) & (radius < hi)].sum() for lo, hi in BANDS])


def ratio(num, den):
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def spectrum(run_dir, num_pairs):
    """The four rows of the table for one run, and its one-step nRMSE on those pairs (`metrics.nrmse`)."""
    import keras

    from upt_keras.config import load_config
    from upt_keras.evaluation.metrics import nrmse
    from upt_keras.evaluation.protocol import collect_pairs, predict
    from upt_keras.training.data import prepare_data

    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    data = prepare_data(cfg, splits=("test",), progress=False)
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    x, y = collect_pairs(data.test)
    if isinstance(x, dict):
        raise SystemExit(f"{run_dir}: a point-cloud run; this script takes runs on a grid")
    x, y = x[:num_pairs], y[:num_pairs]
    pred = predict(model, x, 16)
    change, error = y - x, pred - y
    recon = np.concatenate([np.asarray(keras.ops.convert_to_numpy(model.decode(model.encode(x[i:i + 16]))))
                            for i in range(0, len(x), 16)])
    p_change, p_error = band_powers(change), band_powers(error)
    rows = {
        "change share": p_change / p_change.sum(),
        "error share": p_error / p_error.sum(),
        "error / change": ratio(p_error, p_change),
        "reconstruction / field": ratio(band_powers(recon - x), band_powers(x)),
    }
    return rows, nrmse(pred, y), len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories (config.yaml, model.keras)")
    parser.add_argument("--pairs", type=int, default=160, help="test pairs to use (the first ones)")
    parser.add_argument("--labels", nargs="+", help="a name per run for the table (default: the run's folder)")
    args = parser.parse_args()
    if args.labels is not None and len(args.labels) != len(args.runs):
        parser.error(f"--labels takes one name per run: {len(args.runs)} runs, {len(args.labels)} labels")
    names = [f"[{lo}, {hi})" if np.isfinite(hi) else f">= {lo}" for lo, hi in BANDS]
    print("| run | pairs | one-step nRMSE | quantity | " + " | ".join(f"|k| {n}" for n in names) + " |")
    print("|---|---|---|---|" + "---|" * len(BANDS))
    for i, run in enumerate(args.runs):
        rows, nrmse, n = spectrum(run, args.pairs)
        label = os.path.basename(os.path.normpath(run))
        if label == "upt":  # bench_accuracy.py's layout: RUN_ROOT/<set>_<variant>_<budget>s/upt
            label = os.path.basename(os.path.dirname(os.path.normpath(run)))
        label = args.labels[i] if args.labels else label
        for name, values in rows.items():
            print(f"| {label} | {n} | {nrmse:.4f} | {name} | "
                  + " | ".join(f"{v:.3g}" for v in values) + " |")


if __name__ == "__main__":
    main()
