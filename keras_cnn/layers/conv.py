"""Convolution: Keras' Conv2D, whose 1x1 kernel gradient TensorFlow computes as one matrix product on AMX CPUs.

For a 1x1 kernel with stride 1 the kernel gradient of a convolution is a matrix product over every position, dW =
X^T dY with X (N*H*W, C_in) and dY (N*H*W, C_out). In bfloat16 on a CPU with AMX units, oneDNN's matrix product ran
it 1.6-3.4x as fast as TensorFlow's `Conv2DBackpropFilter` on ResNet-50's 1x1 shapes at batch 16 (float32:
0.84-1.27x, so float32 keeps the op), and the bfloat16 training step of ResNet-50 v1.5 (torchvision's, without
biases) 1.11x as fast (benchmarks/README.md, "The 1x1 kernel gradient as a matrix product").
"""

from __future__ import annotations

import keras

from keras_cnn import onednn


def amx_rule(cpu_flags: frozenset[str]) -> bool:
    """`MATMUL_KERNEL_GRADIENT` on a CPU with these flags: on with AMX-bf16 units, where it was measured; off
    elsewhere (a GPU, or a CPU without them), where TensorFlow's gradient op stays."""
    return "amx_bf16" in cpu_flags


#: Whether a 1x1 stride-1 `Conv2D` traced for training in bfloat16 on TensorFlow's CPU takes its kernel gradient as
#: one matrix product. Read when a step is traced: set it before a model's first training step.
MATMUL_KERNEL_GRADIENT = amx_rule(onednn.cpu_flags())


@keras.saving.register_keras_serializable(package="keras_cnn")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`: the same arguments, variables, names and outputs. In training on TensorFlow, a 1x1
    stride-1 ungrouped kernel without bias in bfloat16 runs as `pointwise_conv` (where `MATMUL_KERNEL_GRADIENT` says
    so); inference and every other convolution run Keras' own. With a bias, oneDNN's weight gradient sums the bias
    gradient in the same pass, and a separate sum left keras.applications' ResNet-50 (biases on every convolution)
    within 3 % of TensorFlow's op, so those keep it."""

    def call(self, inputs, training=None):
        if not (training and self._pointwise(inputs)):
            return super().call(inputs)
        return self.activation(pointwise_conv(inputs, self.kernel))

    def _pointwise(self, inputs) -> bool:
        """Whether this call can run as `pointwise_conv`."""
        if not MATMUL_KERNEL_GRADIENT or keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        return (
            tuple(self.kernel_size) == (1, 1)
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and not self.use_bias
            and self.data_format == "channels_last"
            and len(inputs.shape) == 4
            and inputs.dtype == tf.bfloat16
            and not tf.config.list_logical_devices("GPU")
        )


def pointwise_conv(x, kernel):
    """The 1x1 stride-1 convolution of NHWC `x` with `kernel` (1, 1, C_in, C_out), whose kernel gradient is one
    matrix product, X^T dY over the N*H*W positions; its input gradient is TensorFlow's own op."""
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x, kernel):
        def gradient(dy):
            c_in, c_out = kernel.shape[-2:]
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, 1, 1, 1], padding="VALID"
            )
            dk = tf.matmul(tf.reshape(x, (-1, c_in)), tf.reshape(dy, (-1, c_out)), transpose_a=True)
            return dx, tf.reshape(dk, kernel.shape)

        return tf.nn.conv2d(x, kernel, strides=1, padding="VALID"), gradient

    return conv(x, tf.convert_to_tensor(kernel))
