"""Normalization: one place that decides batch norm vs group norm for every family, and the fused batch norm.

`BatchNormalization` is Keras' layer (same arguments, variables, names and moving-statistics update) computed
by TensorFlow's fused kernel (`FusedBatchNormV3`, oneDNN on CPU, cuDNN on GPU) when the backend is TensorFlow:
one op instead of Keras 3's separate moments, normalization and casts, about twice as fast for small CIFAR
networks on CPU. Other backends, masks, renorm, synchronized statistics and inputs that are not 4-D
channels-last, and float64 (which the kernel does not take) fall back to Keras' own computation, and so does
inference on `WIDE` channels or more: there Keras' multiply-add with the moving statistics measured faster
(docs/training.md, "Speed defaults"). bfloat16 inputs whose channel count is not a multiple of `BF16_BLOCK` are
normalized by the float32 kernel, as Keras' own layer normalizes bfloat16 in float32.
"""

from __future__ import annotations

import math
from typing import Literal

import keras
from keras import ops

Norm = Literal["batch", "group"]
NORMS = ("batch", "group")

#: Torch-style constants (momentum 0.1 there = 0.9 here): used by the families ported from Torch/PyTorch code.
TORCH_BN = {"momentum": 0.9, "epsilon": 1e-5}
#: keras.applications constants: used by the families that must load keras.applications weight files.
KERAS_BN = {"momentum": 0.99, "epsilon": 1.001e-5}
#: From this many channels, inference normalizes with Keras' multiply-add instead of the fused kernel. Measured on a
#: 2-core AVX2 CPU with oneDNN: ResNet-50 1.27x and DenseNet-BC-100-12 1.09x faster with this rule; Keras' path on
#: every layer made the CIFAR ResNets (16-64 channels) 0.87x as fast, so narrow layers stay fused.
WIDE = 128
#: oneDNN's bfloat16 batch-norm kernel is fast on channel counts that are a multiple of this (its AVX-512 block) and
#: ran 2-6x slower than the float32 kernel on others (120, 200, 300 channels; 2-core AVX-512-BF16 CPU), so bfloat16
#: inputs of other widths are cast to float32 and back: DenseNet-BC-100-12 (growth 12) trained 1.47x faster.
BF16_BLOCK = 16


@keras.saving.register_keras_serializable(package="keras_cnn")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` through TensorFlow's fused kernel (Ioffe & Szegedy 2015,
    https://arxiv.org/abs/1502.03167).

    Training normalizes with the batch's mean and biased variance and moves the statistics as Keras does,
    `moving = momentum * moving + (1 - momentum) * batch` with the biased variance (the kernel reports the
    unbiased one, which is converted back); inference uses the moving statistics. `epsilon` is used as given
    (the raw kernel, not `tf.nn.fused_batch_norm`, which raises it to 1.001e-5)."""

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.compute_dtype in ("float32", "float16", "bfloat16")
            and self.variable_dtype == "float32"
        )

    def call(self, inputs, training=None, mask=None):
        step = bool(training and self.trainable)  # normalize by the batch and move the statistics
        channels = inputs.shape[-1]
        if not self._fusable(inputs, mask) or (not step and channels >= WIDE):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        scale = self.gamma if self.scale else tf.ones((channels,), "float32")
        offset = self.beta if self.center else tf.zeros((channels,), "float32")
        dtype = self.compute_dtype
        if dtype == "bfloat16" and channels % BF16_BLOCK:
            dtype = "float32"
        x = tf.cast(inputs, dtype) if inputs.dtype != dtype else inputs
        if step:
            empty = tf.constant([], tf.float32)
            y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=tf.convert_to_tensor(scale),
                offset=tf.convert_to_tensor(offset),
                mean=empty,
                variance=empty,
                epsilon=self.epsilon,
                exponential_avg_factor=1.0,
                data_format="NHWC",
                is_training=True,
            )
            n = tf.cast(tf.size(x) // channels, tf.float32)
            variance = tf.where(n > 1, unbiased * (n - 1) / tf.maximum(n, 1), tf.zeros_like(unbiased))
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + tf.stop_gradient(variance) * (1.0 - m))
        else:
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=tf.convert_to_tensor(scale),
                offset=tf.convert_to_tensor(offset),
                mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )
        return ops.cast(y, self.compute_dtype)


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"Unknown norm={norm!r}; allowed values are {NORMS}.")


def norm_layer(norm: Norm, name: str, channels: int, *, groups: int = 32, **bn_kwargs) -> keras.layers.Layer:
    """A `BatchNormalization` (keyword constants passed through) or a GroupNormalization (Wu & He, ECCV 2018).

    Group norm uses G = `groups` (the paper's default 32), reduced to the largest divisor of `channels` when a
    layer has fewer channels than that (e.g. 16 groups for the 16-channel CIFAR stages).
    """
    check_norm(norm)
    if norm == "batch":
        return BatchNormalization(name=name, **bn_kwargs)
    regularizers = {key: bn_kwargs[key] for key in ("gamma_regularizer", "beta_regularizer") if key in bn_kwargs}
    return keras.layers.GroupNormalization(
        groups=math.gcd(groups, channels), epsilon=bn_kwargs.get("epsilon", 1e-5), name=name, **regularizers
    )
