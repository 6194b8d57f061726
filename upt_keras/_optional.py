"""Optional packages: what only some features need, installed with an extra of upt-keras.

| extra  | packages                   | needed by                                                          |
|--------|----------------------------|--------------------------------------------------------------------|
| `tune` | keras-tuner, scikit-learn  | the hyper-parameter search (`upt_keras.tuning`, `upt-keras tune`)  |
| `plot` | matplotlib                 | the figures of a run (`upt_keras.evaluation.plots`)                |

`require(module)` imports `module`, or raises `MissingExtra` naming what needs it and the extra to install;
`check(module)` does the same check without importing it (for a command that must start a framework first).
"""

import importlib
import importlib.util

#: import name -> (package name, the extra of upt-keras that installs it, what needs it)
PACKAGES = {"keras_tuner": ("keras-tuner", "tune", "the hyper-parameter search (upt-keras tune)"),
            "sklearn": ("scikit-learn", "tune", "the bayesian tuner"),
            "matplotlib": ("matplotlib", "plot", "drawing the figures of a run")}


class MissingExtra(ImportError):
    """An optional package is not installed; the message names the extra of upt-keras that installs it."""


def _missing(module: str) -> MissingExtra:
    package, extra, purpose = PACKAGES[module]
    return MissingExtra(f"{purpose} needs {package}, which is not installed: pip install \"upt-keras[{extra}]\"",
                        name=module)


def require(module: str):
    """The module `module` (a key of `PACKAGES`), imported."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(module) from exc


def check(module: str) -> None:
    """Raise `MissingExtra` unless `module` (a key of `PACKAGES`) can be imported; it is not imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise _missing(module)
