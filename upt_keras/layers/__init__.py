"""UPT building blocks as Keras 3 layers, one public class per file, named like it."""

from upt_keras.layers.adaln_block import AdaLNBlock
from upt_keras.layers.anypoint_decoder import AnyPointDecoder
from upt_keras.layers.approximator import Approximator
from upt_keras.layers.attention import Attention
from upt_keras.layers.dense import Dense
from upt_keras.layers.encoder import Encoder
from upt_keras.layers.fourier_features import FourierFeatures
from upt_keras.layers.grid_encoder import GridEncoder, grid_coordinates, interpolate_on_grid
from upt_keras.layers.mlp import MLP
from upt_keras.layers.point_cloud_encoder import PointCloudEncoder, interpolate_from_points
from upt_keras.layers.transformer_block import TransformerBlock

__all__ = [
    "AdaLNBlock",
    "AnyPointDecoder",
    "Approximator",
    "Attention",
    "Dense",
    "Encoder",
    "FourierFeatures",
    "GridEncoder",
    "MLP",
    "PointCloudEncoder",
    "TransformerBlock",
    "grid_coordinates",
    "interpolate_from_points",
    "interpolate_on_grid",
]
