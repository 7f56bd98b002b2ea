"""Normalization: one place that decides batch norm vs group norm for every family, and the fused batch norm.

`BatchNormalization` is Keras' layer (same arguments, variables, names and moving-statistics update) computed
by TensorFlow's fused kernel (`FusedBatchNormV3`, oneDNN on CPU, cuDNN on GPU) when the backend is TensorFlow:
one op instead of Keras 3's separate moments, normalization and casts, about twice as fast for small CIFAR
networks on CPU. Other backends, masks, renorm, synchronized statistics and inputs that are not 4-D
channels-last, and float64 (which the kernel does not take) fall back to Keras' own computation, and so does
float32 and float16 inference on `WIDE` channels or more on a CPU without AVX-512: there Keras' multiply-add with
the moving statistics measured faster (docs/training.md, "Speed defaults"). Inputs whose channel count is not a
multiple of `BLOCK` go through the kernel as a view of g times fewer positions and g times more channels
(`groups`, `fused_batch_norm`), with the statistics of each true channel. In a traced inference graph, a batch
norm that alone reads a convolution's output is folded into that convolution (`folded_into_conv`).
"""

from __future__ import annotations

import math
from typing import Literal

import keras
from keras import ops

from keras_cnn import onednn
from keras_cnn.layers.conv import Conv2D

Norm = Literal["batch", "group"]
NORMS = ("batch", "group")

#: Torch-style constants (momentum 0.1 there = 0.9 here): used by the families ported from Torch/PyTorch code.
TORCH_BN = {"momentum": 0.9, "epsilon": 1e-5}
#: keras.applications constants: used by the families that must load keras.applications weight files.
KERAS_BN = {"momentum": 0.99, "epsilon": 1.001e-5}


def wide_rule(cpu_flags: frozenset[str]) -> int | None:
    """`WIDE` on a CPU with these flags: 128 without AVX-512, where it was measured (2-core AVX2 CPU with oneDNN:
    ResNet-50 1.27x and DenseNet-BC-100-12 1.09x faster with it; Keras' path on every layer made the CIFAR ResNets,
    16-64 channels, 0.87x as fast, so narrow layers stay fused). None with AVX-512: there the fused kernel, with its
    ReLU and on whole `BLOCK`s, normalized 1.8-2.5x faster than the multiply-add on 16-1024 channels (equal on 2048 at
    7x7; 2-core AVX-512 CPU)."""
    return None if "avx512f" in cpu_flags else 128


#: From this many channels, float32 and float16 inference normalizes with Keras' multiply-add instead of the fused
#: kernel (None: never); bfloat16 stays fused at every width, its kernel ran 1.5-2.5x faster on 128-2048 channels.
WIDE = wide_rule(onednn.cpu_flags())
#: oneDNN's batch-norm kernels are fast on channel counts that are a multiple of this (the AVX-512 block of 16) and
#: slow on others, so inputs of other widths are regrouped to a multiple of it (`groups`). 2-core AVX-512-BF16 CPU,
#: batch 64: bfloat16 ran 2-6x slower than the float32 kernel on 120, 200, 300 channels, and forward and gradient of
#: a 204-channel layer at 32x32 took 42.5 ms regrouped against 61.0 ms in float32 with casts; in float32 itself,
#: forward and gradient took 18.9 against 29.9 ms on 132 channels and 29.5 against 46.6 ms on 204
#: (benchmarks/batchnorm_groups.py).
BLOCK = 16
#: The convolution layers whose last kernel axis indexes the output channel (SeparableConv2D: its pointwise kernel),
#: and TensorFlow's ops for them that a traced inference graph folds a batch norm into.
FOLDABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
#: Whether a traced inference graph folds a batch norm into the convolution before it (`folded_into_conv`). Same
#: outputs up to rounding; set it to False before a model's first trace to keep each batch norm as its own op.
FOLD_IN_GRAPH = True


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
        dtype = self.compute_dtype
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        if not step and FOLD_IN_GRAPH and (folded := folded_into_conv(self, inputs)) is not None:
            return ops.cast(folded, dtype)
        if dtype != "bfloat16" and not step and WIDE is not None and channels >= WIDE:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        scale, offset = _gamma_beta(self, channels)
        g = groups(inputs.shape)
        if g is None:  # positions do not split into whole groups: the input as it is (bfloat16: in float32, as Keras)
            dtype, g = ("float32" if dtype == "bfloat16" else dtype), 1
        x = tf.cast(inputs, dtype) if inputs.dtype != dtype else inputs
        if not step:
            y = fused_batch_norm(x, scale, offset, self.epsilon, g, self.moving_mean, self.moving_variance)
            return ops.cast(y, self.compute_dtype)
        y, mean, variance = fused_batch_norm(x, scale, offset, self.epsilon, g)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + tf.stop_gradient(variance) * (1.0 - m))
        return ops.cast(y, self.compute_dtype)


def _gamma_beta(norm: keras.layers.BatchNormalization, channels: int):
    """`norm`'s gamma and beta as float32 tensors: ones without `scale`, zeros without `center`."""
    import tensorflow as tf

    gamma = tf.convert_to_tensor(norm.gamma) if norm.scale else tf.ones((channels,), "float32")
    beta = tf.convert_to_tensor(norm.beta) if norm.center else tf.zeros((channels,), "float32")
    return gamma, beta


def feeding_conv(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """The convolution whose output only `layer` (called once, on one input) reads: a channels-last `FOLDABLE`
    without an activation of its own, called once; else None. Keras' graph says who reads a tensor, so a rewrite of
    the convolution in `layer` never leaves it to run again for another layer."""
    if len(layer._inbound_nodes) != 1 or len(layer._inbound_nodes[0].input_tensors) != 1:
        return None
    (tensor,) = layer._inbound_nodes[0].input_tensors
    conv = tensor._keras_history.operation
    if (
        not isinstance(conv, FOLDABLE)
        or len(conv._inbound_nodes) != 1
        or len(conv._outbound_nodes) != 1
        or conv.data_format != "channels_last"
        or conv.activation is not keras.activations.linear  # relu(conv) * a is not conv(W * a)
    ):
        return None
    return conv


def conv_feeding(norm: keras.layers.BatchNormalization) -> keras.layers.Layer | None:
    """The convolution layer that `norm` can fold into: the `feeding_conv` of a batch norm on the channel axis
    whose output is not `_summed_for_two`; else None. The graph fold (`folded_into_conv`) and the weight fold
    (`keras_cnn.fold_batchnorm`) both ask it."""
    conv = feeding_conv(norm)
    if conv is None or norm.axis not in (-1, len(conv.output.shape) - 1) or _summed_for_two(norm):
        return None
    return conv


def conv_op(tensor, layer: keras.layers.Layer):
    """(op, bias) where `tensor`, the output of the convolution `layer` in a traced TensorFlow graph, is the output
    of an NHWC Conv2D or DepthwiseConv2dNative op, plus `bias` (Keras adds a convolution's bias as conv + reshape(b,
    (1, 1, 1, C)); None without one); else None. A `keras_cnn.layers.Conv2D` in training may have run as
    `pointwise_conv`: then its op is under the IdentityN that `tf.custom_gradient` puts over the output."""
    if tensor.op.type == "IdentityN" and isinstance(layer, Conv2D):
        tensor = tensor.op.inputs[tensor.value_index]
    op, channels, bias = tensor.op, tensor.shape[-1], None
    if op.type in ("AddV2", "BiasAdd"):
        convs = [t for t in op.inputs if t.op.type in CONV_OPS]
        others = [t for t in op.inputs if t.op.type not in CONV_OPS]
        if len(convs) != 1 or len(others) != 1 or not _per_channel(op, others[0], channels):
            return None
        op, bias = convs[0].op, others[0]
    if op.type not in CONV_OPS or op.get_attr("data_format") != b"NHWC":
        return None
    return op, bias


def folded_into_conv(norm: BatchNormalization, inputs):
    """Inference batch norm of `inputs = conv(x, W) (+ b)`, a convolution op's output in a traced TensorFlow graph,
    computed as one convolution: `conv(x, W * a) + beta + (b - mean) * a` with `a = gamma / sqrt(variance +
    epsilon)` per output channel (Ioffe & Szegedy 2015, Alg. 2), from the float32 variables: a few element-wise ops
    on weights in place of a pass over the maps (two fused-kernel calls on the weights instead made ResNet-20's
    bfloat16 inference 0.95x as fast: oneDNN's per-call cost outweighs C values of work). TensorFlow then fuses
    convolution, bias and ReLU (or sum and ReLU) into one oneDNN kernel, which its own remapper does for a batch
    norm in float32 but not in bfloat16. The original convolution is left without a reader and pruned from the
    graph. None where this does not apply: eager execution, a `conv_feeding` that Keras' graph does not show, or an
    input that is not such an op's output.
    """
    import tensorflow as tf

    if tf.executing_eagerly() or (conv := conv_feeding(norm)) is None or not (found := conv_op(inputs, conv)):
        return None
    (op, bias), channels = found, inputs.shape[-1]
    x, kernel = op.inputs
    source = kernel.op.inputs[0] if kernel.op.type == "Cast" else kernel  # mixed precision: the float32 variable
    gamma, beta = _gamma_beta(norm, channels)
    a = gamma * tf.math.rsqrt(tf.convert_to_tensor(norm.moving_variance) + norm.epsilon)
    shift = beta - tf.convert_to_tensor(norm.moving_mean) * a
    if bias is not None:
        shift += tf.reshape(tf.cast(bias, tf.float32), (channels,)) * a
    scaled = tf.reshape(tf.reshape(tf.cast(source, tf.float32), (-1, channels)) * a, kernel.shape)  # output axis last
    attrs = {key: op.get_attr(key) for key in ("strides", "padding", "explicit_paddings", "dilations")}
    conv = getattr(tf.raw_ops, op.type)(input=x, filter=tf.cast(scaled, kernel.dtype), data_format="NHWC", **attrs)
    return tf.nn.bias_add(conv, tf.cast(shift, conv.dtype))


def _summed_for_two(norm: keras.layers.BatchNormalization) -> bool:
    """Whether `norm`'s output is summed into a tensor that an activation and another layer read (Xception's
    residual sums). TensorFlow's remapper fuses convolution, bias, sum and activation into one op even then, fails
    ("Mutation::Apply error: fanout ... exist for missing node") and drops its whole pass for the graph, which made
    Xception's bf16 inference 0.91x as fast with the fold in the graph, and did the same to a weight-folded Xception;
    such a batch norm stays as it is."""
    for node in norm._outbound_nodes:
        readers = [later.operation for later in node.operation._outbound_nodes]
        activated = any(isinstance(reader, (keras.layers.ReLU, keras.layers.Activation)) for reader in readers)
        if isinstance(node.operation, keras.layers.Add) and len(readers) > 1 and activated:
            return True
    return False


def _per_channel(add, bias, channels: int) -> bool:
    """Whether `add` (AddV2 or BiasAdd) adds `bias` along the last axis only: C values, shaped (C,) or (1, ..., C)."""
    shape = bias.shape
    on_last = add.type == "AddV2" or add.get_attr("data_format") == b"NHWC"
    return on_last and shape.num_elements() == channels and shape[-1] == channels


def groups(shape) -> int | None:
    """g, the fewest positions whose channels together fill whole `BLOCK`s, for an NHWC input of `shape`: 1 on a
    multiple of the block, None when the H*W positions do not split into groups of g."""
    g = BLOCK // math.gcd(shape[-1], BLOCK)
    height, width = shape[1:3]
    if g > 1 and (height is None or width is None or height * width % g):
        return None
    return g


def _kernel(x, scale, offset, epsilon: float, mean=None, variance=None):
    """One `FusedBatchNormV3` on NHWC `x`: training (batch statistics) when `mean` is None, else inference.
    Returns y, the batch mean, the batch variance (unbiased, as the kernel reports it) and the kernel's reserve."""
    import tensorflow as tf

    empty = tf.constant([], tf.float32)
    y, mean_out, variance_out, _, _, reserve = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=scale,
        offset=offset,
        mean=empty if mean is None else mean,
        variance=empty if variance is None else variance,
        epsilon=epsilon,
        exponential_avg_factor=1.0,
        data_format="NHWC",
        is_training=mean is None,
    )
    return y, mean_out, variance_out, reserve


def fused_batch_norm(x, gamma, beta, epsilon: float, g: int = 1, moving_mean=None, moving_variance=None):
    """Batch norm of NHWC `x` by the fused kernel: with the moving statistics (inference; returns y), or with the
    batch's (training; returns y, mean and biased variance). g > 1 runs the kernel on the (N, H*W/g, 1, g*C) view
    of `x`: position p of channel c becomes view channel (p mod g)*C + c, so each channel is g view channels of
    equal count. Inference tiles the statistics g times; training pools the g view channels' statistics into the
    channel's (law of total variance) and normalizes with those (`_grouped_training`)."""
    import tensorflow as tf

    shape = tf.shape(x)
    if g > 1:
        height, width, channels = x.shape[1:]
        x = tf.reshape(x, (shape[0], height * width // g, 1, g * channels))
    if moving_mean is not None:
        tile = lambda v: tf.tile(tf.convert_to_tensor(v), [g]) if g > 1 else tf.convert_to_tensor(v)  # noqa: E731
        y = _kernel(x, tile(gamma), tile(beta), epsilon, tile(moving_mean), tile(moving_variance))[0]
        return tf.reshape(y, shape) if g > 1 else y
    if g > 1:
        y, mean, variance = _grouped_training(x, gamma, beta, epsilon, g)
        return tf.reshape(y, shape), mean, variance
    y, mean, unbiased, _ = _kernel(x, gamma, beta, epsilon)
    return y, mean, _biased(unbiased, tf.size(x) // x.shape[-1])


def _biased(unbiased, count):
    """The biased variance Keras moves by, from the kernel's unbiased one over `count` values (0 for one value)."""
    import tensorflow as tf

    n = tf.cast(count, tf.float32)
    return tf.where(n > 1, unbiased * (n - 1) / tf.maximum(n, 1), tf.zeros_like(unbiased))


def _grouped_training(view, gamma, beta, epsilon: float, g: int):
    """Training batch norm of a grouped view (see `fused_batch_norm`) with each channel's own batch statistics.
    Forward: the training kernel gives the view channels' statistics, pooled per channel, and the inference kernel
    normalizes with them. Gradient (Ioffe & Szegedy 2015, Sec. 3): the inference kernel's gradient gives
    gamma/sigma * dy and, pooled per channel, dbeta = sum(dy) and dgamma = sum(dy * xhat); the batch statistics'
    share, -gamma/(sigma M) * (dbeta + xhat * dgamma), is one more inference-kernel pass, added."""
    import tensorflow as tf

    channels = view.shape[-1] // g
    tile = lambda v: tf.tile(v, [g])  # noqa: E731
    per_channel = lambda v: tf.reshape(v, (g, channels))  # noqa: E731
    count = tf.size(view) // view.shape[-1]  # positions per view channel

    @tf.custom_gradient
    def normalize(view, gamma, beta):
        ones, zeros = tf.ones((g * channels,)), tf.zeros((g * channels,))
        _, view_mean, view_unbiased, _ = _kernel(view, ones, zeros, epsilon)
        view_mean = per_channel(view_mean)
        view_variance = per_channel(_biased(view_unbiased, count))
        mean = tf.reduce_mean(view_mean, 0)
        variance = tf.reduce_mean(view_variance, 0) + tf.reduce_mean(tf.square(view_mean - mean), 0)
        stats, scale = (tile(mean), tile(variance)), tile(gamma)
        y, _, _, reserve = _kernel(view, scale, tile(beta), epsilon, *stats)

        def grad(dy, _dmean, _dvariance):  # the statistics leave with stop_gradient semantics (moving averages)
            dx, dgamma, dbeta, *_ = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=dy,
                x=view,
                scale=scale,
                reserve_space_1=stats[0],
                reserve_space_2=stats[1],
                reserve_space_3=reserve,
                epsilon=epsilon,
                data_format="NHWC",
                is_training=False,
            )
            dgamma, dbeta = tf.reduce_sum(per_channel(dgamma), 0), tf.reduce_sum(per_channel(dbeta), 0)
            share = -gamma * tf.math.rsqrt(variance + epsilon) / tf.cast(count * g, tf.float32)
            dx += _kernel(view, tile(share * dgamma), tile(share * dbeta), epsilon, *stats)[0]
            return dx, dgamma, dbeta

        return (y, mean, variance), grad

    return normalize(view, gamma, beta)


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
