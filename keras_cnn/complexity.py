"""Parameter and multiply-accumulate counts, in the convention of reference-figures.md §0."""

from __future__ import annotations

import math

import keras


def trainable_params(model: keras.Model) -> int:
    """Trainable weights + biases + norm scales/offsets: the number papers and torchvision report."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def _sublayers(layer: keras.layers.Layer):
    yield layer
    for child in layer._flatten_layers(include_self=False, recursive=False):
        yield from _sublayers(child)


def _spatial(shape) -> int:
    return math.prod(int(d) for d in shape[1:-1])


def call_macs(layer: keras.layers.Layer, input_shape, output_shape) -> int:
    """MACs of one call of a conv/dense layer for one image (0 for every other layer).

    Custom layers report their own count through a `macs(input_shape, output_shape)` method.
    """
    if hasattr(layer, "macs"):
        return int(layer.macs(input_shape, output_shape))
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _spatial(output_shape) * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.SeparableConv2D):
        kernels = math.prod(layer.depthwise_kernel.shape) + math.prod(layer.pointwise_kernel.shape)
        return _spatial(output_shape) * kernels
    if isinstance(layer, keras.layers.Conv2D):
        return _spatial(output_shape) * math.prod(layer.kernel.shape)
    return 0


def layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of every call of one layer in its graph (a layer shared between calls counts once per call)."""
    total = 0
    for node in layer._inbound_nodes:
        inputs = [t.shape for t in node.input_tensors]
        total += call_macs(layer, inputs[0] if len(inputs) == 1 else inputs, node.output_tensors[0].shape)
    return total


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of conv and dense layers for one image (BN, activations, adds and pooling ignored).

    Layers nested in sub-models (e.g. stochastic-depth branches) are counted with every gate open.
    """
    return sum(layer_macs(layer) for layer in _sublayers(model) if layer is not model)
