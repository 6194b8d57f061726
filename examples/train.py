"""Train a UPT on the built-in 1D Burgers set and report test errors in physical units.

    KERAS_BACKEND=torch python examples/train.py
    KERAS_BACKEND=jax python examples/train.py --epochs 2 --run-dir runs/quick
    python examples/train.py --config configs/train_burgers2d_64.yaml --set data.path=data/b2d.h5

The default config (`configs/train_burgers1d.yaml`, shipped in the package as `upt_keras.configs.DEFAULT_CONFIG`; the
same as `upt-keras train` without `--config`) is sized for a CPU. The data set is
generated on first use and cached (no download). Test metrics are printed beside the identity baseline
(`u_{t+1} = u_t`), and the run directory receives the config, the best model (`model.keras`), the history, the
metrics (`metrics.json`) and figures. If the run is interrupted, the same command resumes it.
"""

import argparse
import os
import sys

from upt_keras.cli import add_train_arguments, train_overrides
from upt_keras.configs import DEFAULT_CONFIG


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)  # the same --config, --set, --run-dir and --epochs as `upt-keras train`
    args = parser.parse_args(argv)
    args.config = args.config or DEFAULT_CONFIG
    return args


def main(argv=None):
    args = parse_args(argv)
    from upt_keras.config import ConfigError, load_config
    from upt_keras.data import DataError

    try:
        cfg = load_config(args.config, train_overrides(args))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from upt_keras.cli import runtime

    try:  # the backend as `upt-keras train` picks it, without the other frameworks' start-up lines
        runtime.choose_backend()
    except runtime.BackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    keras, _ = runtime.import_keras()

    from upt_keras import evaluation, training

    run_dir = os.path.abspath(args.run_dir or cfg.output.run_dir)
    print(f"Keras {keras.__version__} on {keras.backend.backend()}; run directory: {run_dir}")
    if training.backup_epoch(run_dir) is not None:
        print(f"resuming the interrupted run at epoch {training.backup_epoch(run_dir) + 1}")
    try:
        model, history, metrics = training.train(cfg, run_dir=run_dir)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print()
    print(evaluation.format_summary(metrics))
    print()
    print(f"artifacts in {run_dir}:")
    for name in sorted(os.listdir(run_dir)):
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
