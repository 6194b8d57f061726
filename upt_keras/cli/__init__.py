"""The `upt-keras` command line (`train`, `evaluate`, `rollout`, `generate`, `tune`); see `upt_keras.cli.commands`."""

from upt_keras.cli.commands import PROG, UsageError, add_train_arguments, build_parser, main, train_overrides

__all__ = ["PROG", "UsageError", "add_train_arguments", "build_parser", "main", "train_overrides"]
