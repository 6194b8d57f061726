"""upt-keras: the Universal Physics Transformer for Keras 3 (torch, TensorFlow, JAX).

Names are imported lazily, so that `upt_keras.config` and the command line
start without loading a deep-learning backend.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "UPT": "upt_keras.model",
    "InverseLossCurriculum": "upt_keras.callbacks",
    "curriculum_weight": "upt_keras.callbacks",
    "QuerySampler": "upt_keras.sampling",
    "AnyPointDecoder": "upt_keras.layers",
    "Approximator": "upt_keras.layers",
    "FourierFeatures": "upt_keras.layers",
    "GridEncoder": "upt_keras.layers",
    "grid_coordinates": "upt_keras.layers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'upt_keras' has no attribute {name!r}")
