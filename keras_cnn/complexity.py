"""Parameter and multiply-accumulate counts in the papers' convention (trainable parameters; multiply-accumulates of
convolutions and dense layers), and the cumulative cost of every exit of a multi-exit network (MSDNet) in that
convention and in MSDNet's op-counter convention."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras


def trainable_params(model: keras.Model) -> int:
    """Trainable weights + biases + norm scales/offsets: the number papers and torchvision report."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)


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


def call_ops(layer: keras.layers.Layer, input_shape, output_shape) -> int:
    """Ops of one call for one image in the op counter of MSDNet's reference code (kalviny/MSDNet-PyTorch
    `op_counter.py`): conv multiply-adds as `call_macs`, one op per ReLU output element,
    C * H_out * W_out * k_h * k_w per pooling window layer, weights + biases per dense layer; BN, concatenation
    and flattening are free."""
    relu = isinstance(layer, keras.layers.ReLU) or getattr(layer, "activation", None) is keras.activations.relu
    relu_ops = math.prod(output_shape[1:]) if relu else 0
    if isinstance(layer, keras.layers.Dense):
        return sum(math.prod(w.shape) for w in layer.trainable_weights) + relu_ops
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return math.prod(output_shape[1:]) * math.prod(layer.pool_size)
    return call_macs(layer, input_shape, output_shape) + relu_ops


def _node_shapes(node) -> tuple:
    inputs = [t.shape for t in node.input_tensors]
    return inputs[0] if len(inputs) == 1 else inputs, node.output_tensors[0].shape


def _ancestor_nodes(tensor, seen: dict) -> dict:
    """Add every graph node that `tensor` depends on (its own included) to `seen` (id -> node); returns it."""
    stack = [tensor]
    while stack:
        operation, node_index, _ = stack.pop()._keras_history
        node = operation._inbound_nodes[node_index]
        if id(node) not in seen:
            seen[id(node)] = node
            stack.extend(node.input_tensors)
    return seen


def nodes_by_output(model: keras.Model, computed_before: Sequence[Sequence] | None = None) -> list[list]:
    """For each output of `model` in order, the graph nodes it needs (with the tensors `computed_before[k]`)
    that no earlier output needed: what reaching exit k adds to the exits before it."""
    if computed_before is not None and len(computed_before) != len(model.outputs):
        raise ValueError(
            f"computed_before needs one list of tensors per output ({len(model.outputs)}); "
            f"received {len(computed_before)}."
        )
    seen: dict[int, object] = {}
    added = []
    for k, output in enumerate(model.outputs):
        start = len(seen)
        for tensor in [output, *(computed_before[k] if computed_before is not None else ())]:
            _ancestor_nodes(tensor, seen)
        added.append(list(seen.values())[start:])  # dicts keep insertion order: the nodes this output added
    return added


def _node_macs(node) -> int:
    """MACs of one call in a graph; a nested model (a stochastic-depth branch, a model used as a layer) counts
    its whole graph."""
    operation = node.operation
    if isinstance(operation, keras.Model):
        return count_macs(operation)
    if not isinstance(operation, keras.layers.Layer):  # a bare op in the graph, e.g. slicing (x[..., :half])
        return 0
    nested = [c for c in operation._flatten_layers(include_self=False, recursive=False) if isinstance(c, keras.Model)]
    return call_macs(operation, *_node_shapes(node)) + sum(count_macs(m) for m in nested)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of conv and dense layers for one image (BN, activations, adds and pooling ignored),
    over the calls in `model`'s graph (a layer shared between calls counts once per call).

    Layers nested in sub-models (e.g. stochastic-depth branches) are counted with every gate open.
    """
    return sum(_node_macs(node) for added in nodes_by_output(model) for node in added)


@dataclass(frozen=True)
class ExitCost:
    """Cumulative cost of one exit of a multi-exit model, for one image: conv and dense `macs`, `ops` in
    MSDNet's op-counter convention (`call_ops`) and trainable `params`."""

    macs: int
    ops: int
    params: int


def exit_costs(model: keras.Model, computed_before: Sequence[Sequence] | None = None) -> list[ExitCost]:
    """The cost of reaching each output of `model`, in output order, counting each computation once: exit k
    costs everything its output depends on, the earlier exits' classifiers included (MSDNet's convention,
    "without lazy prediction pruning").

    `computed_before[k]` are further tensors computed before exit k is: a reference forward pass runs whole
    blocks, so `msdnet.block_outputs(model)` here gives the reference's per-exit figures. Without it
    an exit costs only what it depends on, which is what `keras_cnn.early_exit.EarlyExit` runs.
    """
    macs = ops = 0
    weights: dict[int, object] = {}
    costs = []
    for added in nodes_by_output(model, computed_before):
        macs += sum(_node_macs(node) for node in added)
        ops += sum(call_ops(node.operation, *_node_shapes(node)) for node in added)
        weights.update((id(w), w) for node in added for w in getattr(node.operation, "trainable_weights", []))
        costs.append(ExitCost(macs=macs, ops=ops, params=sum(math.prod(w.shape) for w in weights.values())))
    return costs
