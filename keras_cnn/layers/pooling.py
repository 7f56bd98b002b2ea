"""Average pooling: adaptive, with PyTorch's window rule, so torchvision-layout heads run at any input size; and
fixed windows that pool before the 1x1 convolution feeding them in a traced graph (DenseNet's transitions)."""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_cnn.layers.norm import conv_op, feeding_conv

#: Whether a traced graph pools before the 1x1 convolution that feeds an `AveragePooling2D` (`pooled_first`). Same
#: outputs up to rounding; set it to False before a model's first trace to run the layers as built.
POOL_FIRST = True


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


@keras.saving.register_keras_serializable(package="keras_cnn")
class AveragePooling2D(keras.layers.AveragePooling2D):
    """`keras.layers.AveragePooling2D` (same arguments) that, where it alone reads a 1x1, stride-1 convolution
    without an activation, pools first in a traced TensorFlow graph (`pooled_first`)."""

    def call(self, inputs):
        if (pooled := pooled_first(self, inputs)) is not None:
            return pooled
        return super().call(inputs)


def pooled_first(pool: keras.layers.AveragePooling2D, inputs):
    """`pool(conv(x, W) + b)` computed as `conv(pool(x), W) + b` for a 1x1, stride-1 convolution op's output
    `inputs` in a traced TensorFlow graph, training or not. Both are linear maps on different axes, each window's
    weights sum to 1 (TensorFlow's "same" windows count their cells only), so they commute and the bias passes
    through; the convolution then runs on 1/(pool area) of the positions: DenseNet's transitions (Huang et al. 2017,
    https://arxiv.org/abs/1608.06993, BN-ReLU-1x1 conv-2x2 average pooling) do 4x fewer multiply-adds. The
    original convolution is left without a reader and pruned. None where this does not apply: `POOL_FIRST` off, eager
    execution, another backend or layout, or a convolution that Keras' graph (`feeding_conv`) or its op does not
    show as such.
    """
    if not POOL_FIRST or keras.backend.backend() != "tensorflow" or pool.data_format != "channels_last":
        return None
    import tensorflow as tf

    conv = feeding_conv(pool)
    if tf.executing_eagerly() or not isinstance(conv, keras.layers.Conv2D) or not (found := conv_op(inputs, conv)):
        return None
    op, bias = found
    one = (1, 1)
    if (conv.kernel_size, conv.strides, conv.dilation_rate, conv.groups) != (one, one, one, 1) or op.type != "Conv2D":
        return None
    x, kernel = op.inputs
    pooled = tf.nn.avg_pool2d(x, pool.pool_size, pool.strides, pool.padding.upper(), data_format="NHWC")
    y = tf.nn.conv2d(pooled, kernel, 1, "VALID", data_format="NHWC")
    return y if bias is None else y + bias
