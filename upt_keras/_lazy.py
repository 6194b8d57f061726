"""The one way a package of upt_keras exports names without importing them up front.

`__getattr__, __dir__ = lazy_exports(__name__, {"Name": "upt_keras.module", ...})` in a package's `__init__`: a name
is imported from its module when it is first used, then kept. A package whose modules need Keras (and with it a
backend framework) is imported at no cost that way, and so are the framework-free modules beside them (the config,
the sizes, the objective's settings, the search space).
"""

import importlib
import sys


def lazy_exports(package, exports):
    """(`__getattr__`, `__dir__`) for the package `package` that load each name of `exports` from its module."""

    def __getattr__(name):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # Keras first, outside any module of the package: its import registers every class of the package
        # (`upt_keras._registration`); every lazy name needs it anyway.
        importlib.import_module("keras")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
