"""MobileNet (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv 1704.04861, 2017, Table 1) and MobileNetV2 (Sandler et al., "MobileNetV2: Inverted
Residuals and Linear Bottlenecks", CVPR 2018, Table 2). Layer names and order are keras.applications', so its
weight files load and the outputs match."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers.conv import Conv2D
from keras_cnn.layers.norm import BatchNormalization
from keras_cnn.registry import Card, Paper, register_all

PAPER_V1 = Paper(
    title="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    authors="Howard et al.",
    venue="arXiv:1704.04861",
    year=2017,
)
PAPER_V2 = Paper(
    title="MobileNetV2: Inverted Residuals and Linear Bottlenecks", authors="Sandler et al.", venue="CVPR", year=2018
)

#: Table 1 of Howard et al.: (pointwise filters, stride) of the 13 depthwise-separable blocks.
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *((512, 1),) * 5, (1024, 2), (1024, 1))
#: Table 2 of Sandler et al.: expansion t, output channels c, repeats n, first stride s.
V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _divisible(v: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of 8, never more than 10 % below `v` (the reference TF code's rule)."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def _pad_for_stride(x, name: str):
    """TensorFlow's asymmetric 'same' padding for a 3x3/2 convolution, made explicit (keras.applications')."""
    even = [1 - (d % 2) if d is not None else 1 for d in x.shape[1:3]]
    return keras.layers.ZeroPadding2D(((1 - even[0], 1), (1 - even[1], 1)), name=name)(x)


def _pad_symmetric(x, name: str):
    """PyTorch's padding of 1 on every side for a 3x3/2 convolution (torchvision's)."""
    return keras.layers.ZeroPadding2D(1, name=name)(x)


#: MobileNetV2 layouts: BN constants and the padding before 3x3/2 convolutions.
V2_LAYOUTS = {
    "keras": ({"epsilon": 1e-3, "momentum": 0.999}, _pad_for_stride),
    "torchvision": ({"epsilon": 1e-5, "momentum": 0.9}, _pad_symmetric),
}


def _bn(x, name: str, **constants):
    return BatchNormalization(name=name, **constants)(x)


def depthwise_separable(x, filters: int, stride: int, depth_multiplier: int, block: int):
    """Fig. 3 (right): 3x3 depthwise conv, BN, ReLU6, then 1x1 pointwise conv, BN, ReLU6."""
    if stride == 2:
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block}")(x)
    x = keras.layers.DepthwiseConv2D(
        3,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        depth_multiplier=depth_multiplier,
        use_bias=False,
        name=f"conv_dw_{block}",
    )(x)
    x = keras.layers.ReLU(6.0, name=f"conv_dw_{block}_relu")(_bn(x, f"conv_dw_{block}_bn"))
    x = Conv2D(filters, 1, use_bias=False, name=f"conv_pw_{block}")(x)
    return keras.layers.ReLU(6.0, name=f"conv_pw_{block}_relu")(_bn(x, f"conv_pw_{block}_bn"))


@applications.builder(name="mobilenet")
def MobileNet(
    contract: Contract,
    *,
    alpha: float = 1.0,
    depth_multiplier: int = 1,
    dropout_rate: float = 1e-3,
) -> keras.Model:
    """MobileNet as in Table 1 of Howard et al. (2017): width multiplier `alpha`, resolution multiplier rho
    through `input_shape`. 4,231,976 trainable at alpha=1, 1000 classes. The classifier is a 1x1 convolution
    `conv_preds` after global pooling and dropout (keras.applications' layout, the same weights as a dense
    layer)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive; received alpha={alpha!r}.")
    img_input = contract.input(default_size=224, min_size=32)
    x = Conv2D(int(32 * alpha), 3, strides=2, padding="same", use_bias=False, name="conv1")(img_input)
    x = keras.layers.ReLU(6.0, name="conv1_relu")(_bn(x, "conv1_bn"))
    stages = []
    for block, (filters, stride) in enumerate(V1_BLOCKS, start=1):
        if stride == 2:
            stages.append(x)
        x = depthwise_separable(x, int(filters * alpha), stride, depth_multiplier, block)
    stages.append(x)

    def top(x, classes, classifier_activation):
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
        x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        x = Conv2D(classes, 1, name="conv_preds")(x)
        x = keras.layers.Reshape((classes,), name="reshape_2")(x)
        return keras.layers.Activation(classifier_activation, name="predictions", dtype=applications.head_dtype())(x)

    return contract.finish(img_input, x, stages=stages, top=top)


def inverted_residual(x, t: int, filters: int, stride: int, block: int, *, bn: dict, pad: Callable):
    """Fig. 3(b) / Table 1 of Sandler et al.: 1x1 expansion by t (BN, ReLU6), 3x3 depthwise (BN, ReLU6),
    linear 1x1 projection (BN), with a residual connection when shape is kept."""
    prefix = f"block_{block}_" if block else "expanded_conv_"
    inputs, channels = x, x.shape[-1]
    if block:
        x = Conv2D(t * channels, 1, use_bias=False, name=f"{prefix}expand")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(_bn(x, f"{prefix}expand_BN", **bn))
    if stride == 2:
        x = pad(x, f"{prefix}pad")
    x = keras.layers.DepthwiseConv2D(
        3, strides=stride, padding="same" if stride == 1 else "valid", use_bias=False, name=f"{prefix}depthwise"
    )(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(_bn(x, f"{prefix}depthwise_BN", **bn))
    x = Conv2D(filters, 1, use_bias=False, name=f"{prefix}project")(x)
    x = _bn(x, f"{prefix}project_BN", **bn)
    if stride == 1 and channels == filters:
        x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x


@applications.builder(name="mobilenet_v2")
def MobileNetV2(
    contract: Contract,
    *,
    alpha: float = 1.0,
    layout: Literal["keras", "torchvision"] = "keras",
) -> keras.Model:
    """MobileNetV2 as in Table 2 of Sandler et al. (CVPR 2018): width multiplier `alpha`, channels rounded
    to multiples of 8, the last 1x1 convolution kept at 1280 for alpha <= 1. 3,504,872 trainable at alpha=1, 1000
    classes. `layout="torchvision"` pads 3x3/2 convolutions symmetrically, uses PyTorch's BN epsilon and
    dropout 0.2 before the classifier, so torchvision's weights convert (same layer names, same count)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive; received alpha={alpha!r}.")
    if layout not in V2_LAYOUTS:
        raise ValueError(f"layout must be one of {tuple(V2_LAYOUTS)}; received layout={layout!r}.")
    img_input = contract.input(default_size=224, min_size=32)
    bn, pad = V2_LAYOUTS[layout]
    x = pad(img_input, "Conv1_pad")
    x = Conv2D(_divisible(32 * alpha), 3, strides=2, use_bias=False, name="Conv1")(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(_bn(x, "bn_Conv1", **bn))
    stages, block = [], 0
    for t, c, n, s in V2_BLOCKS:
        for i in range(n):
            if s == 2 and i == 0:
                stages.append(x)
            x = inverted_residual(x, t, _divisible(int(c * alpha)), s if i == 0 else 1, block, bn=bn, pad=pad)
            block += 1
    x = Conv2D(_divisible(1280 * alpha) if alpha > 1.0 else 1280, 1, use_bias=False, name="Conv_1")(x)
    x = keras.layers.ReLU(6.0, name="out_relu")(_bn(x, "Conv_1_bn", **bn))
    stages.append(x)

    def top(x, classes, classifier_activation):
        if layout == "torchvision":
            x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
            x = keras.layers.Dropout(0.2, name="dropout")(x)
            return keras.layers.Dense(
                classes, activation=classifier_activation, name="predictions", dtype=applications.head_dtype()
            )(x)
        return applications.pooled_classifier(x, classes, classifier_activation)

    return contract.finish(img_input, x, stages=stages, top=top)


CARDS = (
    Card(
        name="mobilenet",
        builder=MobileNet,
        min_size=32,
        paper=PAPER_V1,
        params=4_231_976,
        macs=569e6,
        reported={"imagenet_top1_acc": 70.6},
        source="Howard et al. 2017 Table 8 [P*]; Keras count [KC]",
        recipe="torchvision_imagenet",
        notes="The paper trains with asynchronous RMSprop as Inception-v3 and gives no schedule.",
    ),
    Card(
        name="mobilenet_v2",
        builder=MobileNetV2,
        min_size=32,
        paper=PAPER_V2,
        params=3_504_872,
        macs=300e6,
        reported={"imagenet_top1_acc": 72.0},
        source="Sandler et al. 2018 Table 4 [P*]; torchvision = Keras trainable count [TV][KC]",
        recipe="torchvision_imagenet",
        notes="Paper recipe: RMSprop (decay 0.9, momentum 0.9), lr 0.045 x 0.98 per epoch, weight decay 4e-5.",
    ),
)
register_all(CARDS)
