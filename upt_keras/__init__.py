"""upt-keras: the Universal Physics Transformer for Keras 3 (torch, TensorFlow, JAX).

Importing the package registers every layer and the model with Keras, so that
`keras.saving.load_model("model.keras")` works after `import upt_keras`.
"""

from upt_keras.layers import (AnyPointDecoder, Approximator, Encoder, FourierFeatures, GridEncoder, PointCloudEncoder,
                              grid_coordinates)
from upt_keras.models import PRESETS, UPT
from upt_keras.objectives import QuerySampler, UPTObjective
from upt_keras.training.callbacks import InverseLossCurriculum, curriculum_weight

__version__ = "0.1.0"

__all__ = [
    "AnyPointDecoder",
    "Approximator",
    "Encoder",
    "FourierFeatures",
    "GridEncoder",
    "InverseLossCurriculum",
    "PRESETS",
    "PointCloudEncoder",
    "QuerySampler",
    "UPT",
    "UPTObjective",
    "curriculum_weight",
    "grid_coordinates",
]
