"""Configs shipped with the package: `DEFAULT_CONFIG`, the CPU default (1D Burgers, the `b1d` preset, a 5-minute
budget), which `upt-keras train` and `examples/train.py` use when no config is given. `configs/train_burgers1d.yaml`
in the repository is the same file."""

import os

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_burgers1d.yaml")

__all__ = ["DEFAULT_CONFIG"]
