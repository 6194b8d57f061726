"""Search the inverse-loss weights, the number of queries and the inverse-loss frequency of a UPT with KerasTuner.

    KERAS_BACKEND=torch python examples/tune.py                # 3 trials of 3 epochs: several minutes on a CPU
    KERAS_BACKEND=jax python examples/tune.py --full --tuner bayesian --max-trials 12 --epochs 10

Starts from configs/train_burgers1d.yaml (on 10 training and 6 validation trajectories unless --full) and the
space in configs/tune_burgers1d.yaml, minimises the unweighted validation forward loss, prints the trials as a table
and writes summary.md, summary.csv and best_config.yaml into DIRECTORY/PROJECT. Rerunning the command resumes the
search; then train the winner with `upt-keras train --config DIRECTORY/PROJECT/best_config.yaml`.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.normpath(os.path.join(HERE, os.pardir, "configs"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(CONFIGS, "train_burgers1d.yaml"))
    parser.add_argument("--tuning-config", default=os.path.join(CONFIGS, "tune_burgers1d.yaml"))
    parser.add_argument("--tuner", choices=("random", "bayesian", "hyperband"), default="random")
    parser.add_argument("--max-trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    parser.add_argument("--full", action="store_true", help="use the whole training and validation splits")
    parser.add_argument("--directory", default="tuning")
    parser.add_argument("--project-name", default="burgers1d")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the training config, e.g. --set data.max_train_samples=50")
    args = parser.parse_args(argv)

    from upt_keras import tuning
    from upt_keras.config import ConfigError, load_config

    try:
        # Short trials: the inverse terms start after one epoch and ramp in over one more.
        overrides = [f"training.epochs={args.epochs}", "training.inverse_loss_warmup_epochs=1",
                     "training.inverse_loss_ramp_epochs=1", "output.plots=false"]
        if not args.full:
            overrides += ["data.max_train_samples=10", "data.val_fraction=0.01"]
        cfg = load_config(args.config, overrides + args.overrides)
        space = tuning.load_tuning_config(args.tuning_config)
        result = tuning.tune(cfg, space, tuner=args.tuner, max_trials=args.max_trials, directory=args.directory,
                             project_name=args.project_name, verbose=2)
    except (ConfigError, ImportError) as err:  # ImportError: KerasTuner missing (the tune extra)
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(tuning.format_table(result.rows, result.objective, result.tuner.hypermodel.num_points))
    for path in result.files.values():
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
