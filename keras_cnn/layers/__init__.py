"""Blocks shared by several model families."""

from keras_cnn.layers.conv import Conv2D
from keras_cnn.layers.init import HE_FAN_OUT, TORCH_LINEAR
from keras_cnn.layers.lrn import LocalResponseNormalization
from keras_cnn.layers.norm import KERAS_BN, NORMS, TORCH_BN, BatchNormalization, check_norm, norm_layer
from keras_cnn.layers.pooling import AdaptiveAveragePooling, AveragePooling2D
from keras_cnn.layers.shortcut import ZeroChannelPad, option_a_shortcut
from keras_cnn.layers.shuffle import ChannelShuffle
from keras_cnn.layers.stochastic_depth import (
    StochasticDepth,
    block_survival,
    residual_join,
    survival_probabilities,
)
from keras_cnn.layers.style import Style

__all__ = [
    "HE_FAN_OUT",
    "KERAS_BN",
    "NORMS",
    "TORCH_BN",
    "TORCH_LINEAR",
    "AdaptiveAveragePooling",
    "AveragePooling2D",
    "BatchNormalization",
    "ChannelShuffle",
    "Conv2D",
    "LocalResponseNormalization",
    "StochasticDepth",
    "Style",
    "ZeroChannelPad",
    "block_survival",
    "check_norm",
    "norm_layer",
    "option_a_shortcut",
    "residual_join",
    "survival_probabilities",
]
