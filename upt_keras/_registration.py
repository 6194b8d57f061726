"""Registering upt_keras's Keras classes without importing Keras before it is needed.

Keras finds the classes of a saved model by their registered names (`upt_keras>UPT`, ...), which exist once the modules
that define them have been imported; it never imports a third-party module by itself. `register_when_keras_loads`
imports those modules right after Keras has been imported (at once if it already is): `import upt_keras` stays
free of any deep-learning framework, and `keras.saving.load_model` finds the classes in either import order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import warnings

#: The modules whose import registers every serialisable class of the package (the model imports every layer and
#: the objective).
MODULES = ("upt_keras.models.upt",)


def register() -> None:
    """Import the modules that register the package's classes with Keras (imports Keras)."""
    for name in MODULES:
        importlib.import_module(name)


def _importing_upt_keras() -> bool:
    """Whether a module of the package is being imported right now (it is the one importing Keras)."""
    return any(name.startswith("upt_keras.") and getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items()))


def _register_quietly() -> None:
    # Runs inside `import keras`: an error here must not make that import fail (Keras would be half-imported).
    # The same error comes back, with its traceback, as soon as one of these modules is imported directly.
    # When a module of the package imports Keras itself, the modules it imports register their own classes:
    # importing the model from inside that import would meet half-initialised modules. The package's lazy names
    # import Keras first (`upt_keras._lazy`), so that path registers everything.
    if _importing_upt_keras():
        return
    try:
        register()
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"upt_keras could not register its classes with Keras: {type(err).__name__}: {err}",
                      RuntimeWarning, stacklevel=2)


class _RegisteringLoader(importlib.abc.Loader):
    """Keras's own loader; registers the package's classes once Keras's `__init__` has run."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _remove_hook()
        _register_quietly()

    def __getattr__(self, name):  # resources, source, file name: Keras's loader answers
        return getattr(self._loader, name)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for `keras` it wraps the loader the other finders return (a look-up that imports
    nothing, such as `importlib.util.find_spec("keras")`, leaves the hook in place)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _KerasImportHook)]


def register_when_keras_loads() -> None:
    """Register the package's classes now if Keras is imported, else right after Keras is first imported."""
    if "keras" in sys.modules:
        _register_quietly()
    elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())
