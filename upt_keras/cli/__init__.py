"""The `upt-keras` command line (`train`, `evaluate`, `rollout`, `generate`, `tune`); see `upt_keras.cli.commands`."""

from upt_keras.cli.commands import PROG, UsageError, build_parser, main

__all__ = ["PROG", "UsageError", "build_parser", "main"]
