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


def layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of one conv/dense layer for one image (0 for every other layer).

    Custom layers report their own count through a `macs()` method.
    """
    if hasattr(layer, "macs"):
        return int(layer.macs())
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _spatial(layer.output.shape) * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.SeparableConv2D):
        out = layer.output.shape
        return _spatial(out) * (math.prod(layer.depthwise_kernel.shape) + math.prod(layer.pointwise_kernel.shape))
    if isinstance(layer, keras.layers.Conv2D):
        return _spatial(layer.output.shape) * math.prod(layer.kernel.shape)
    return 0


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of conv and dense layers for one image (BN, activations, adds and pooling ignored).

    Layers nested in sub-models (e.g. stochastic-depth branches) are counted with every gate open.
    """
    return sum(layer_macs(layer) for layer in _sublayers(model) if layer is not model)
