"""Parameter-free shortcut used by the CIFAR ResNets (He et al., CVPR 2016, Sec. 4.2, option A)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_cnn")
class ZeroChannelPad(keras.layers.Layer):
    """Append zero feature maps so the shortcut has `channels` maps (option A, as in fb.resnet.torch)."""

    def __init__(self, channels: int, **kwargs):  # pragma: no mutate block
        super().__init__(**kwargs)
        self.channels = int(channels)

    def call(self, x):
        extra = self.channels - x.shape[-1]
        if extra < 0:
            raise ValueError(f"ZeroChannelPad cannot shrink {x.shape[-1]} channels to {self.channels}.")
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def option_a_shortcut(x, channels: int, stride: int, name: str):
    """Identity when shapes agree; otherwise `x[:, ::s, ::s]` followed by zero channels (no parameters)."""
    if stride > 1:
        x = keras.layers.MaxPooling2D(pool_size=1, strides=stride, name=f"{name}_0_pool")(x)
    if x.shape[-1] != channels:
        x = ZeroChannelPad(channels, name=f"{name}_0_pad")(x)
    return x
