"""UPT building blocks as Keras 3 layers."""

from upt_keras.layers.anypoint_decoder import AnyPointDecoder
from upt_keras.layers.approximator import Approximator
from upt_keras.layers.blocks import AdaLNBlock, Attention, MLP, TransformerBlock
from upt_keras.layers.embeddings import FourierFeatures
from upt_keras.layers.encoder import Encoder
from upt_keras.layers.grid_encoder import GridEncoder, grid_coordinates, interpolate_on_grid
from upt_keras.layers.point_encoder import PointCloudEncoder

__all__ = [
    "AdaLNBlock",
    "AnyPointDecoder",
    "Approximator",
    "Attention",
    "Encoder",
    "FourierFeatures",
    "GridEncoder",
    "MLP",
    "PointCloudEncoder",
    "TransformerBlock",
    "grid_coordinates",
    "interpolate_on_grid",
]
