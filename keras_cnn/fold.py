"""Batch normalization folded into the convolution before it, for inference and serving.

In inference a batch norm is an affine map per channel, `y = (x - mean) * a + beta` with
`a = gamma / sqrt(variance + epsilon)` (Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167, Alg. 2). When `x`
is a convolution's output `conv(z, W) + b` and nothing else reads it, the pair is one convolution with kernel
`W * a` (per output channel) and bias `beta + (b - mean) * a`. The folded graph skips a pass over every such map and
lets TensorFlow fuse convolution, bias and ReLU into one kernel (benchmarks/README.md has the speed-up).
"""

from __future__ import annotations

import keras
import numpy as np
from keras.src.models.functional import Functional  # Keras exports no public name for a graph model

from keras_cnn.layers.norm import conv_feeding


@keras.saving.register_keras_serializable(package="keras_cnn")
class Folded(keras.layers.Layer):
    """Where a batch norm was before it was folded into the convolution that feeds it: passes its input on."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def foldable_pairs(model: keras.Model) -> dict[str, str]:
    """{convolution name: batch-norm name} for each batch norm of `model` that can fold into the convolution
    before it (`keras_cnn.layers.norm.conv_feeding`), where that convolution is `model`'s and its output is not
    one of `model`'s outputs."""
    outputs = {id(tensor) for tensor in model.outputs}
    pairs = {}
    for layer in model.layers:
        conv = conv_feeding(layer) if isinstance(layer, keras.layers.BatchNormalization) else None
        if conv is not None and id(conv.output) not in outputs and any(conv is own for own in model.layers):
            pairs[conv.name] = layer.name
    return pairs


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """A copy of `model` for inference in which each batch norm that directly follows a convolution (and is its
    only reader) is folded into it: the convolution gains a bias, the batch norm becomes a `Folded` layer of
    the same name, and every other layer is copied with its weights. In inference the copy computes what `model`
    computes, up to rounding; it is not for training (the folded layers have no batch statistics to move).
    Batch norms that follow something else (a pre-activation network's concatenation or sum) stay as they are.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"fold_batchnorm takes a keras.Model; received a {type(model).__name__}.")
    if not isinstance(model, (Functional, keras.Sequential)):
        raise TypeError(
            f"fold_batchnorm takes a functional or Sequential model; {model.name!r} is a subclassed "
            f"{type(model).__name__}, whose graph it cannot see."
        )
    pairs = foldable_pairs(model)
    norms = set(pairs.values())

    def clone(layer):
        config = layer.get_config()
        if layer.name in pairs:
            return layer.__class__.from_config({**config, "use_bias": True})
        if layer.name in norms:
            return Folded(name=layer.name, dtype=layer.dtype_policy.name)
        return layer.__class__.from_config(config)

    if isinstance(model, keras.Sequential):
        folded = keras.models.clone_model(model, clone_function=clone)
    else:
        inputs = keras.tree.map_structure(  # named as the model's own, which clone_model would rename
            lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name),
            model.input,
        )
        folded = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
    for layer in model.layers:
        if layer.name in norms or not layer.weights:
            continue
        target = folded.get_layer(layer.name)
        if layer.name in pairs:
            target.set_weights(_folded_weights(layer, model.get_layer(pairs[layer.name])))
        else:
            target.set_weights(layer.get_weights())
    return folded


def _folded_weights(conv, norm) -> list[np.ndarray]:
    """The convolution's weights with `norm` folded in, computed in float64."""

    def array(variable) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)

    weights = [np.asarray(w, np.float64) for w in conv.get_weights()]
    channels = conv.output.shape[-1]
    gamma = array(norm.gamma) if norm.scale else np.ones(channels)
    beta = array(norm.beta) if norm.center else np.zeros(channels)
    a = gamma / np.sqrt(array(norm.moving_variance) + norm.epsilon)
    bias = weights.pop() if conv.use_bias else np.zeros(channels)
    kernel = weights[-1]  # Conv2D's kernel, DepthwiseConv2D's, or SeparableConv2D's pointwise one
    weights[-1] = kernel * a.reshape(kernel.shape[-2:] if isinstance(conv, keras.layers.DepthwiseConv2D) else -1)
    new_bias = beta + (bias - array(norm.moving_mean)) * a
    dtype = conv.variable_dtype
    return [w.astype(dtype) for w in (*weights, new_bias)]
