"""UPT building blocks as Keras 3 layers."""

from upt_keras.layers.anypoint_decoder import AnyPointDecoder
from upt_keras.layers.approximator import Approximator
from upt_keras.layers.blocks import AdaLNBlock, Attention, MLP, TransformerBlock
from upt_keras.layers.embeddings import FourierFeatures
from upt_keras.layers.grid_encoder import GridEncoder, grid_coordinates

__all__ = [
    "AdaLNBlock",
    "AnyPointDecoder",
    "Approximator",
    "Attention",
    "FourierFeatures",
    "GridEncoder",
    "MLP",
    "TransformerBlock",
    "grid_coordinates",
]
