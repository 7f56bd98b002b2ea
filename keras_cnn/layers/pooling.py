"""Adaptive average pooling with PyTorch's window rule, so torchvision-layout heads run at any input size."""

from __future__ import annotations

import math

import keras
from keras import ops


def _windows(size: int, out: int) -> list[tuple[int, int]]:
    """Output cell i averages input rows floor(i*size/out) .. ceil((i+1)*size/out) - 1 (replicates when size < out)."""
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


@keras.saving.register_keras_serializable(package="keras_cnn")
class AdaptiveAveragePooling(keras.layers.Layer):
    """Average-pool a static H x W map to `output_size` cells, as `torch.nn.AdaptiveAvgPool2d` does.

    Unlike `keras.layers.AdaptiveAveragePooling2D` it also enlarges maps smaller than the output (AlexNet's
    6x6 head on inputs from 63x63 up).
    """

    def __init__(self, output_size: int | tuple[int, int], **kwargs):  # pragma: no mutate block
        super().__init__(**kwargs)
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.output_size = tuple(int(s) for s in size)

    def call(self, x):
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            raise ValueError(f"{self.name} needs a static spatial size; received {tuple(x.shape)}.")
        rows = [ops.mean(x[:, a:b], axis=1, keepdims=True) for a, b in _windows(height, self.output_size[0])]
        x = ops.concatenate(rows, axis=1)
        cols = [ops.mean(x[:, :, a:b], axis=2, keepdims=True) for a, b in _windows(width, self.output_size[1])]
        return ops.concatenate(cols, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}
