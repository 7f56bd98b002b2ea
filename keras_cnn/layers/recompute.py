"""Memory-efficient dense connectivity (Pleiss et al., "Memory-Efficient Implementation of DenseNets",
arXiv 1707.06990, 2017): concat -> BN -> ReLU -> conv is recomputed in the backward pass."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_cnn")
class RecomputedConcatBNReLUConv(keras.layers.Layer):
    """Called on the list of a dense block's feature maps; returns conv(relu(BN(concat(features)))).

    In training, the concatenation, the BN output and the ReLU output are not kept for the backward pass
    (`keras.remat`), so memory grows with the number of new feature maps instead of their running
    concatenation. The BN batch statistics are computed inside the recomputed function and the moving
    statistics are updated once, outside it, so recomputation cannot update them twice (the Lua code saves
    and restores them for the same reason). Weights are created in the order of the plain layers (BN, then
    conv) under the same names, so `set_weights` moves weights between the two modes.
    """

    def __init__(self, filters: int, kernel_size: int, *, bn_name: str, conv_name: str, bn: dict, init: dict, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.bn_name, self.conv_name, self.bn, self.init = bn_name, conv_name, dict(bn), dict(init)
        self.norm = keras.layers.BatchNormalization(name=bn_name, **self.bn)
        self.conv = keras.layers.Conv2D(
            self.filters, self.kernel_size, padding="same", use_bias=False, name=conv_name, **self.init
        )

    def build(self, input_shapes):
        shape = (*input_shapes[0][:-1], sum(s[-1] for s in input_shapes))
        self.norm.build(shape)
        self.conv.build(shape)
        self.built = True

    def call(self, features, training=None):
        if not training:
            return self.conv(ops.relu(self.norm(ops.concatenate(features, axis=-1), training=False)))
        norm = self.norm

        def recomputed(*maps):
            x = ops.concatenate(maps, axis=-1)
            mean, variance = ops.moments(x, axes=[0, 1, 2])
            y = ops.batch_normalization(x, mean, variance, axis=-1, offset=norm.beta, scale=norm.gamma,
                                        epsilon=norm.epsilon)  # fmt: skip
            return self.conv(ops.relu(y)), mean, variance

        outputs, mean, variance = keras.remat(recomputed)(*features)
        momentum = norm.momentum
        norm.moving_mean.assign(norm.moving_mean * momentum + ops.stop_gradient(mean) * (1 - momentum))
        norm.moving_variance.assign(norm.moving_variance * momentum + ops.stop_gradient(variance) * (1 - momentum))
        return outputs

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
            "bn": self.bn,
            "init": {k: keras.saving.serialize_keras_object(v) for k, v in self.init.items()},
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["init"] = {k: keras.saving.deserialize_keras_object(v) for k, v in config["init"].items()}
        return cls(**config)
