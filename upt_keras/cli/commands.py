"""The `upt-keras` command line.

```
upt-keras train [--config C] [--set training.epochs=5 ...] [--run-dir runs/x] [--overwrite]
upt-keras evaluate --model runs/x/model.keras [--config C] [--set ...] [--out-dir D]
upt-keras rollout --model runs/x/model.keras --steps 20 --mode latent|physical|both
upt-keras generate-data --out data/b1d.h5 --dim 1 --num-samples 200 --resolution 256 --nu 0.01 [--ic grf|sinusoid]
```

`train` without `--config` trains the CPU default (`upt_keras.configs.DEFAULT_CONFIG`, the same as
`examples/train.py`). The backend is `KERAS_BACKEND` (torch, tensorflow or jax); unset, the first of them that is
installed (`upt_keras.cli.runtime.choose_backend`). The command prints which one it uses, and imports no other
framework. Parsing the arguments and checking the config import none: `--help` and a config error answer at once. An
invalid configuration, data file, model file, folder or argument ends the command with exit status 2 and a one-line
message, and leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import os
import sys

from upt_keras.cli import run_dirs, runtime
from upt_keras.config import ConfigError
from upt_keras.tuning.search_space import OBJECTIVES, TUNERS

PROG = "upt-keras"


class UsageError(Exception):
    """A bad command-line argument (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _fraction(text):
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def _add_config_args(p, config_required=False, config_help=None, set_help=None):
    p.add_argument("--config", "-c", required=config_required,
                   help=config_help or "YAML config (keys left out take their defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=set_help or "override one config value, e.g. --set training.epochs=5 (repeatable)")


def add_train_arguments(p):
    """The arguments that choose a training run, `upt-keras train`'s and the examples': --config (default: the CPU
    default), --set, --run-dir and --epochs. `train_overrides(args)` folds --epochs into the --set list."""
    _add_config_args(p, config_help="YAML config (default: the CPU default, 1D Burgers with a 5-minute budget, "
                     "configs/train_burgers1d.yaml); keys left out take their defaults")
    p.add_argument("--run-dir", help="output folder (default: output.run_dir of the config)")
    p.add_argument("--epochs", type=_positive_int, help="shortcut for --set training.epochs=N")


def train_overrides(args):
    """The config overrides of `add_train_arguments`' arguments: the --set values, then --epochs."""
    return list(args.overrides) + ([] if args.epochs is None else [f"training.epochs={args.epochs}"])


def _add_verbose(p):
    p.add_argument("--verbose", "-v", type=int, choices=(0, 1, 2), default=None,
                   help="Keras progress output: 1 progress bars, 2 one line per epoch, 0 silent (default: 1 on a "
                   "terminal, 2 when the output goes to a file or pipe)")


def _verbosity(value):
    """The --verbose value, or its default: progress bars on a terminal, one line per epoch in a log file."""
    if value is not None:
        return value
    return 1 if sys.stdout.isatty() else 2


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Universal Physics Transformer (UPT) surrogates for PDEs, on Keras 3. "
                     "The backend comes from KERAS_BACKEND (torch, tensorflow or jax).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("train", help="train a model as configured, then evaluate it on the test split",
                       description="Train, evaluate on the test split (physical units, with the identity baseline), "
                       "and write config, checkpoints, history, metrics and figures into the run directory. "
                       "Rerunning an interrupted command resumes it; a run directory in use by another training, "
                       "or holding a finished run, is refused (--overwrite replaces a finished run).")
    add_train_arguments(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace the finished or interrupted run in the run directory (its model, metrics, history, "
                   "figures, evaluation and rollout folders) instead of refusing or resuming")
    _add_verbose(p)

    p = sub.add_parser("evaluate", help="test metrics and figures of a saved model",
                       description="One-step and rollout test metrics of a saved model in physical units, beside "
                       "the identity baseline; writes metrics.json and figures into evaluation/ next to the model (or "
                       "--out-dir), never over a training run's results unless --overwrite.")
    p.add_argument("--model", "-m", required=True, help="a saved model, e.g. runs/x/model.keras")
    _add_config_args(p, config_help="config of the data (default: config.yaml next to the model)")
    p.add_argument("--out-dir", help="where to write metrics and figures (default: evaluation/ in the model's "
                   "folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --out-dir to be a folder that holds a training run's metrics and figures")
    p.add_argument("--starts", choices=("initial", "all"), default="initial",
                   help="rollout start frames: the first frame of each test trajectory (default) or every frame")
    _add_verbose(p)

    p = sub.add_parser("rollout", help="autoregressive rollout of a saved model on the test trajectories",
                       description="Roll a saved model out for --steps steps from the first frame of every test "
                       "trajectory; writes rollout.json and figures into rollout_<mode>_<steps>steps/ next to the "
                       "model (or --out-dir).")
    p.add_argument("--model", "-m", required=True, help="a saved model, e.g. runs/x/model.keras")
    p.add_argument("--steps", type=_positive_int, default=20, help="rollout steps (default 20)")
    p.add_argument("--mode", choices=("latent", "physical", "both"), default="latent",
                   help="latent: encode once and step in latent space (default); physical: decode and re-encode "
                   "every step; both")
    _add_config_args(p, config_help="config of the data (default: config.yaml next to the model)")
    p.add_argument("--out-dir", help="where to write metrics and figures (default: rollout_<mode>_<steps>steps/ "
                   "in the model's folder)")
    p.add_argument("--starts", choices=("initial", "all"), default="initial",
                   help="rollout start frames (default: the first frame of each test trajectory)")

    p = sub.add_parser("generate-data", help="solve a PDE (Burgers by default) and write an HDF5 trajectory file",
                       description="Generate trajectories of a periodic PDE (pseudo-spectral ETDRK4) and write them in "
                       "a PDEBench layout readable by data.source=hdf5: viscous Burgers (1D/2D, scalar or velocity), "
                       "Kuramoto-Sivashinsky (1D), Fisher-KPP (1D/2D) or 2D Navier-Stokes vorticity (FNO forcing). "
                       "Settings left out take the equation's defaults (upt_keras.data.generate.PDE_DEFAULTS).")
    p.add_argument("--out", "-o", required=True, help="output HDF5 file")
    p.add_argument("--pde", choices=("burgers", "ks", "fisher", "navier-stokes"), default="burgers",
                   help="equation (default burgers)")
    p.add_argument("--dim", type=int, choices=(1, 2), default=None,
                   help="1 or 2 space dimensions (default 1; navier-stokes: 2)")
    p.add_argument("--num-samples", type=_positive_int, default=100, help="trajectories (default 100)")
    p.add_argument("--resolution", type=_positive_int, default=None,
                   help="stored points per direction (default 256; navier-stokes: 64)")
    p.add_argument("--solver-resolution", type=_positive_int, default=None,
                   help="solver grid, a multiple of --resolution (default: --resolution)")
    p.add_argument("--nu", type=_positive_float, default=None,
                   help="viscosity or diffusion coefficient (default: burgers 0.01, fisher 0.005, navier-stokes 1e-3)")
    p.add_argument("--rate", type=_positive_float, default=None, help="fisher: reaction rate (default 2)")
    p.add_argument("--length", type=_positive_float, default=None, help="domain length (default 1; ks: 64)")
    p.add_argument("--t-burn", type=float, default=None,
                   help="ks: time solved before the first stored frame (default 100)")
    p.add_argument("--ic", choices=("grf", "sinusoid"), default=None,
                   help="burgers: initial conditions (default grf; the other equations use grf)")
    p.add_argument("--equation", choices=("scalar", "vector"), default=None,
                   help="burgers, 2D only: scalar Burgers or the two-component velocity form (default scalar)")
    p.add_argument("--t-end", type=_positive_float, default=None,
                   help="final time (default: burgers 0.4, ks 20, fisher 1, navier-stokes 20)")
    p.add_argument("--dt-save", type=_positive_float, default=None,
                   help="time between frames (default: burgers 0.01, ks 0.5, fisher 0.05, navier-stokes 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--points-fraction", type=_fraction, default=None,
                   help="write scattered points instead (the 'points' layout, see docs/data.md): every trajectory "
                   "keeps its own random subset of this fraction of the grid points (seeded), beside its full grid "
                   "for evaluation; in (0, 1], e.g. 0.25")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    add_tune_parser(sub)
    return parser


def add_tune_parser(subparsers):
    """Add the `tune` subcommand (handled by `upt_keras.tuning.run_tune`) to an argparse subparsers object; returns
    its parser."""
    p = subparsers.add_parser(
        "tune", help="search the inverse-loss weights, the number of queries and the inverse-loss frequency",
        description="KerasTuner search starting from a training config. Minimises an unweighted validation metric "
        "(val_forward_loss or val_nrmse), prints a table of the trials and writes summary.md, summary.csv and "
        "best_config.yaml into DIRECTORY/PROJECT_NAME. Rerunning the same command resumes an interrupted search.",
    )
    _add_config_args(p, config_help="base training YAML config (keys left out take their defaults)",
                     set_help="override one value of the training config, e.g. --set training.epochs=5 "
                     "(repeatable)")
    p.add_argument("--tuning-config", "-t", help="YAML file with a 'tuning:' section (default: the built-in space)")
    p.add_argument("--tuner", choices=TUNERS, default="random", help="search algorithm (default random)")
    p.add_argument("--max-trials", type=_positive_int, default=10,
                   help="total number of trials, finished ones of a resumed search included (default 10)")
    p.add_argument("--objective", choices=tuple(OBJECTIVES), help="overrides tuning.objective")
    p.add_argument("--epochs", type=_positive_int, help="shortcut for --set training.epochs=N (epochs per trial)")
    p.add_argument("--directory", "-d", default="tuning", help="folder of the searches (default: tuning)")
    p.add_argument("--project-name", "-p", default="upt", help="name of this search in the folder (default: upt)")
    p.add_argument("--overwrite", action="store_true", help="delete an earlier search of that name and start afresh")
    p.add_argument("--seed", type=int, help="seed of the tuner (default: the config's seed)")
    p.add_argument("--verbose", "-v", type=int, choices=(0, 1, 2), default=1,
                   help="KerasTuner and Keras output: 1 progress bars (default), 2 one line per epoch, 0 silent")
    return p


# --------------------------------------------------------------------------------------------------------------------


def _start_backend(keep=()):
    """Import Keras on the chosen backend (no other framework; see `runtime`) and say which one it is."""
    backend, why = runtime.choose_backend()
    keras, device = runtime.import_keras(keep=keep)
    if why == "KERAS_BACKEND":
        how = "set KERAS_BACKEND to change it"
    elif why == "keras.json":
        how = "from keras.json; set KERAS_BACKEND to change it"
    else:
        how = (f"KERAS_BACKEND is unset: the first installed of {', '.join(runtime.BACKENDS)}; set KERAS_BACKEND "
               "to change it")
    print(f"{PROG}: Keras {keras.__version__}, backend {backend} on {device} ({how})", flush=True)
    return backend


def _frameworks_needed(cfg):
    """Frameworks a config needs beside the backend: TensorBoard logs are written with TensorFlow."""
    return ("tensorflow",) if cfg.output.tensorboard else ()


def _load_cfg(config, overrides):
    from upt_keras.config import load_config

    return load_config(config, overrides)


def _cmd_train(args):
    from upt_keras.configs import DEFAULT_CONFIG

    cfg = _load_cfg(args.config or DEFAULT_CONFIG, train_overrides(args))  # checked before any framework is imported
    run_dir = args.run_dir or cfg.output.run_dir
    created = run_dirs.make_folder(run_dir, "run directory")
    try:
        with run_dirs.locked(run_dir):
            return _train_in(run_dir, cfg, args)
    except BaseException:
        run_dirs.remove_unused(run_dir, created)  # a run that failed before its first epoch leaves nothing
        raise


def _train_in(run_dir, cfg, args):
    finished = run_dirs.finished_files(run_dir)
    if finished and not args.overwrite:
        raise run_dirs.RunDirError(
            f"{run_dir} holds a finished run ({', '.join(finished)}); pass --overwrite to replace it, or choose "
            "another --run-dir")
    if args.overwrite:
        run_dirs.clear(run_dir)
    _start_backend(keep=_frameworks_needed(cfg))
    from upt_keras import evaluation, training

    resume = training.backup_epoch(run_dir)
    if resume is not None:
        print(f"{PROG}: resuming the interrupted run in {run_dir} at epoch {resume + 1} (--overwrite starts afresh)",
              flush=True)
    print(f"{PROG}: run directory {os.path.abspath(run_dir)}", flush=True)
    _, _, metrics = training.train(cfg, run_dir=run_dir, verbose=_verbosity(args.verbose))
    print(evaluation.format_summary(metrics))
    print(f"{PROG}: wrote {os.path.join(run_dir, evaluation.METRICS_FILE)}")
    return 0


def _model_config(args):
    import zipfile

    if not os.path.isfile(args.model):
        raise UsageError(f"{PROG}: model file not found: {args.model}")
    if not zipfile.is_zipfile(args.model):
        raise UsageError(f"{PROG}: {args.model} is not a .keras model file (not a zip archive)")
    config = args.config
    if config is None:
        config = os.path.join(os.path.dirname(os.path.abspath(args.model)), "config.yaml")
        if not os.path.exists(config):
            raise ConfigError(f"no config.yaml next to {args.model}; pass --config")
    return _load_cfg(config, args.overrides)


def _load_model(path):
    import keras

    from upt_keras.models.upt import UPT

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001  (a file of another kind or model: Keras raises many kinds of errors)
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        if len(first) > 200:
            first = first[:200] + "..."
        raise UsageError(f"{PROG}: cannot load {path} as a upt-keras model: {first}") from None
    if not isinstance(model, UPT):
        raise UsageError(f"{PROG}: {path} holds a {type(model).__name__}, not a upt-keras UPT model")
    return model


def _check_model_matches(model, data):
    if tuple(model.grid_shape) != tuple(data.grid_shape) or model.num_fields != data.num_channels:
        raise ConfigError(
            f"the model was built for grid {tuple(model.grid_shape)} with {model.num_fields} field(s), the data has "
            f"grid {tuple(data.grid_shape)} with {data.num_channels}"
        )


def _training_record(model_dir):
    """What training recorded about itself in `model_dir/metrics.json`, or None."""
    import json

    try:
        with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as fh:
            metrics = json.load(fh)
    except (OSError, ValueError):
        return None
    return metrics.get("training") if isinstance(metrics, dict) else None


def _cmd_evaluate(args):
    cfg = _model_config(args)
    model_dir = os.path.dirname(os.path.abspath(args.model))
    out_dir = args.out_dir or os.path.join(model_dir, "evaluation")
    if run_dirs.holds_training_results(out_dir) and not args.overwrite:
        raise UsageError(f"{PROG}: {out_dir} holds a training run's results (metrics.json); choose another --out-dir "
                         "or pass --overwrite to write over them")
    _start_backend()
    from upt_keras import evaluation, training

    data = training.prepare_data(cfg, splits=("test", "rollout"))
    model = _load_model(args.model)
    _check_model_matches(model, data)
    extra = {"model_file": os.path.abspath(args.model)}
    record = _training_record(model_dir)
    if record is not None:
        extra["training"] = record
    history = os.path.join(model_dir, training.HISTORY_FILE)
    created = run_dirs.make_folder(out_dir, "output folder")
    try:
        metrics = evaluation.evaluate(model, data, run_dir=out_dir, plots=cfg.output.plots,
                                      history=history if os.path.exists(history) else None, starts=args.starts,
                                      extra=extra, verbose=_verbosity(args.verbose))
    except BaseException:
        run_dirs.remove_unused(out_dir, created)
        raise
    print(evaluation.format_summary(metrics))
    print(f"{PROG}: wrote {metrics['files']['metrics']}")
    return 0


def _cmd_rollout(args):
    cfg = _model_config(args)
    from upt_keras.config import config_from_dict, config_to_dict

    d = config_to_dict(cfg)
    d["data"]["rollout_steps"] = args.steps
    cfg = config_from_dict(d)
    backend = _start_backend()
    from upt_keras import evaluation, training

    out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(args.model)),
                                           f"rollout_{args.mode}_{args.steps}steps")
    data = training.prepare_data(cfg, splits=("rollout",))
    model = _load_model(args.model)
    _check_model_matches(model, data)
    modes = ("latent", "physical") if args.mode == "both" else (args.mode,)
    result, preds = evaluation.rollout_metrics(model, data.rollout, modes=modes, starts=args.starts,
                                               return_predictions=True)
    result["backend"] = backend
    result["model_file"] = os.path.abspath(args.model)
    run_dirs.make_folder(out_dir, "output folder")
    files = evaluation.write_plots(out_dir, result, preds, data) if cfg.output.plots else {}
    path = os.path.join(out_dir, "rollout.json")
    files["metrics"] = path
    result["files"] = files
    evaluation.write_metrics(path, result)
    print(evaluation.format_summary({"rollout": result}))
    print(f"{PROG}: wrote {path}")
    return 0


def _cmd_generate(args):
    from upt_keras.data import DataError, generate_dataset, open_trajectories

    settings = {key: getattr(args, key) for key in ("dim", "resolution", "solver_resolution", "nu", "rate", "length",
                                                    "t_burn", "ic", "equation", "t_end", "dt_save")
                if getattr(args, key) is not None}
    if settings.get("equation") == "vector" and settings.get("dim") != 2:
        raise UsageError(f"{PROG} generate-data: --equation vector needs --dim 2")
    resolution = settings.get("resolution", 64 if args.pde == "navier-stokes" else 256)
    if args.solver_resolution is not None and args.solver_resolution % resolution:
        raise UsageError(f"{PROG} generate-data: --solver-resolution {args.solver_resolution} is not a multiple "
                         f"of --resolution {resolution}")
    if os.path.isdir(args.out):
        raise UsageError(f"{PROG} generate-data: --out {args.out} is a folder; name the file to write")
    parent = os.path.dirname(os.path.abspath(args.out))
    created = run_dirs.make_folder(parent, "folder")
    try:
        generate_dataset(args.out, args.pde, num_samples=args.num_samples, seed=args.seed, progress=not args.quiet,
                         points_fraction=args.points_fraction, **settings)
    except BaseException as err:
        run_dirs.remove_unused(parent, created)  # the writer removes its own temporary file
        if isinstance(err, ValueError) and not isinstance(err, DataError):  # invalid combination of settings
            message = str(err)
            for key in settings:  # name the command-line option, not the keyword
                if f"setting {key!r}" in message:
                    message = f"--pde {args.pde} does not take --{key.replace('_', '-')}"
            raise UsageError(f"{PROG} generate-data: {message}") from None
        if isinstance(err, OSError):
            raise UsageError(f"{PROG} generate-data: cannot write {args.out}: {err.strerror or err}") from None
        raise
    with open_trajectories(args.out) as store:
        points = f" ({store.points.num_points} scattered points each)" if store.points is not None else ""
        print(f"{PROG}: wrote {args.out}: {store.num_samples} trajectories{points}, {store.num_frames} frames, "
              f"grid {store.grid_shape}, {store.num_channels} channel(s), dt {store.dt}")
    return 0


def _cmd_tune(args):
    from upt_keras._optional import check
    from upt_keras.tuning.search_space import load_tuning_config

    overrides = list(args.overrides) + ([f"training.epochs={args.epochs}"] if args.epochs is not None else [])
    cfg = _load_cfg(args.config, overrides)  # both configs checked before any framework is imported
    load_tuning_config(args.tuning_config)
    check("keras_tuner")  # before a framework starts (KerasTuner imports Keras)
    _start_backend(keep=_frameworks_needed(cfg))
    from upt_keras.tuning import run_tune  # KerasTuner is imported only for this command

    return run_tune(args)


_COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "rollout": _cmd_rollout,
             "generate-data": _cmd_generate, "tune": _cmd_tune}


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 invalid config / data / arguments / files, or an
    optional package that the command needs is not installed)."""
    from upt_keras._optional import MissingExtra
    from upt_keras.data import DataError

    try:
        args = build_parser().parse_args(argv)
        return _COMMANDS[args.command](args)
    except UsageError as err:
        print(str(err), file=sys.stderr)
        return 2
    except (ConfigError, DataError, run_dirs.RunDirError, runtime.BackendError, MissingExtra) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
