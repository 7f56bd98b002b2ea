"""Memory-efficient dense connectivity (Pleiss et al., "Memory-Efficient Implementation of DenseNets",
arXiv 1707.06990, 2017): concat -> BN -> ReLU -> conv (-> BN -> ReLU) is recomputed in the backward pass."""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_cnn.layers.norm import BatchNormalization


@keras.saving.register_keras_serializable(package="keras_cnn")
class RecomputedBottleneck(keras.layers.Layer):
    """Called on the list of a dense block's feature maps; returns conv(relu(BN(concat(features)))), followed
    by relu(BN(.)) when `post_bn_name` names that second BN (the bottleneck's, Lua `optMemory=4`).

    In training, none of the intermediate maps (the concatenation, the BN and ReLU outputs, the 1x1 conv
    output) is kept for the backward pass (`keras.remat`), so memory grows with the number of new feature
    maps instead of their running concatenation. BN batch statistics are computed inside the recomputed
    function and the moving statistics are updated once, outside it, so recomputation cannot update them
    twice (the Lua code saves and restores them for the same reason). Weights are created in the order of
    the plain layers (BN, conv, BN) under the same names, so `set_weights` moves weights between the modes.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        *,
        bn_name: str,
        conv_name: str,
        bn: dict,
        init: dict,
        post_bn_name: str | None = None,
        **kwargs,
    ):  # pragma: no mutate block
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.bn_name, self.conv_name, self.post_bn_name = bn_name, conv_name, post_bn_name
        self.bn, self.init = dict(bn), dict(init)
        self.norm = BatchNormalization(name=bn_name, **self.bn)
        self.conv = keras.layers.Conv2D(
            self.filters, self.kernel_size, padding="same", use_bias=False, name=conv_name, **self.init
        )
        self.post_norm = BatchNormalization(name=post_bn_name, **self.bn) if post_bn_name else None

    def build(self, input_shapes):
        shape = (*input_shapes[0][:-1], sum(s[-1] for s in input_shapes))
        self.norm.build(shape)
        self.conv.build(shape)
        if self.post_norm:
            self.post_norm.build((*shape[:-1], self.filters))
        self.built = True

    @property
    def _norms(self) -> list[BatchNormalization]:
        return [self.norm, self.post_norm] if self.post_norm else [self.norm]

    def call(self, features, training=None):
        if not training:
            y = self.conv(ops.relu(self.norm(ops.concatenate(features, axis=-1), training=False)))
            return ops.relu(self.post_norm(y, training=False)) if self.post_norm else y

        def bn_relu(x, norm):
            mean, variance = ops.moments(x, axes=[0, 1, 2])
            y = ops.batch_normalization(
                x, mean, variance, axis=-1, offset=norm.beta, scale=norm.gamma, epsilon=norm.epsilon
            )
            return ops.relu(y), mean, variance

        def recomputed(*maps):
            y, *moments = bn_relu(ops.concatenate(maps, axis=-1), self.norm)
            y = self.conv(y)
            if self.post_norm:
                y, *post_moments = bn_relu(y, self.post_norm)
                moments += post_moments
            return y, *moments

        y, *moments = keras.remat(recomputed)(*features)
        for norm, mean, variance in zip(self._norms, moments[::2], moments[1::2], strict=True):
            m = norm.momentum
            norm.moving_mean.assign(norm.moving_mean * m + ops.stop_gradient(mean) * (1 - m))
            norm.moving_variance.assign(norm.moving_variance * m + ops.stop_gradient(variance) * (1 - m))
        return y

    def macs(self, input_shapes, output_shape) -> int:
        return math.prod(output_shape[1:3]) * math.prod(self.conv.kernel.shape)

    def compute_output_shape(self, input_shapes):
        return (*input_shapes[0][:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "bn_name": self.bn_name,
            "conv_name": self.conv_name,
            "post_bn_name": self.post_bn_name,
            "bn": self.bn,
            "init": {k: keras.initializers.serialize(keras.initializers.get(v)) for k, v in self.init.items()},
        }
