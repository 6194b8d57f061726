"""upt-keras: the Universal Physics Transformer for Keras 3 (torch, TensorFlow, JAX).

`import upt_keras` imports no deep-learning framework: the names below are loaded when first used
(`from upt_keras import UPT` imports Keras and its backend). Its classes are registered with Keras as soon as Keras
is imported (at once if it already is), so that `keras.saving.load_model("model.keras")` works after
`import upt_keras`, whichever of the two is imported first.
"""

from upt_keras._lazy import lazy_exports
from upt_keras._registration import register_when_keras_loads

__version__ = "0.1.0"

#: Public names and the modules that define them.
_EXPORTS = {
    "AnyPointDecoder": "upt_keras.layers",
    "Approximator": "upt_keras.layers",
    "Encoder": "upt_keras.layers",
    "FourierFeatures": "upt_keras.layers",
    "GridEncoder": "upt_keras.layers",
    "PointCloudEncoder": "upt_keras.layers",
    "grid_coordinates": "upt_keras.layers",
    "PRESETS": "upt_keras.models.presets",
    "UPT": "upt_keras.models.upt",
    "QuerySampler": "upt_keras.objectives",
    "UPTObjective": "upt_keras.objectives",
    "InverseLossCurriculum": "upt_keras.training.callbacks",
    "curriculum_weight": "upt_keras.training.callbacks",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

register_when_keras_loads()
