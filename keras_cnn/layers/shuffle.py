"""Channel shuffle (Zhang et al., "ShuffleNet", CVPR 2018, Sec. 3.1 and Fig. 1)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_cnn")
class ChannelShuffle(keras.layers.Layer):
    """Split the channels into `groups` groups of n and interleave them (reshape to (groups, n), transpose to
    (n, groups), flatten), so that the next grouped convolution sees channels of every group."""

    def __init__(self, groups: int, **kwargs):  # pragma: no mutate block
        super().__init__(**kwargs)
        if groups < 1:
            raise ValueError(f"ChannelShuffle needs groups >= 1; received groups={groups!r}.")
        self.groups = int(groups)

    def call(self, x):
        channels = x.shape[-1]
        if channels % self.groups:
            raise ValueError(f"ChannelShuffle: {channels} channels do not split into {self.groups} groups.")
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        x = ops.reshape(x, (-1, h, w, self.groups, channels // self.groups))
        return ops.reshape(ops.transpose(x, (0, 1, 2, 4, 3)), (-1, h, w, channels))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}
