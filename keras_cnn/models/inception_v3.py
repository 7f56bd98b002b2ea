"""Inception-v3 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016,
Table 1 and Figs. 5-7) in keras.applications' layout, so its weight files load and the outputs match."""

from __future__ import annotations

import itertools

import keras

from keras_cnn import applications
from keras_cnn.registry import Paper, register

PAPER = Paper(title="Rethinking the Inception Architecture for Computer Vision", authors="Szegedy et al.",
              venue="CVPR", year=2016)  # fmt: skip


class _KerasNames:
    """keras.applications' Inception-v3 leaves its convolutions, BNs and ReLUs unnamed, so Keras numbers them
    in creation order (`conv2d`, `conv2d_1`, ...); ours take the same names in the same order, which is what
    its `.weights.h5` files are keyed by."""

    def __init__(self):
        self.count = itertools.count()

    def suffix(self) -> str:
        """ "" for the first layer of a kind, then "_1", "_2", ..."""
        n = next(self.count)
        return f"_{n}" if n else ""


def _conv_bn(x, filters: int, kernel: tuple[int, int], names: _KerasNames, *, stride: int = 1, padding="same"):
    """Convolution without bias, BN without scale (the ReLU follows), ReLU."""
    suffix = names.suffix()  # one index for the three layers
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                            name=f"conv2d{suffix}")(x)  # fmt: skip
    x = keras.layers.BatchNormalization(scale=False, name=f"batch_normalization{suffix}")(x)
    return keras.layers.Activation("relu", name=f"activation{suffix}")(x)


def _avg_pool_branch(x, filters: int, names: _KerasNames):
    x = keras.layers.AveragePooling2D(3, strides=1, padding="same")(x)
    return _conv_bn(x, filters, (1, 1), names)


def module_a(x, pool_filters: int, names: _KerasNames, name: str):
    """Fig. 5 (the 5x5 kept as in the released model): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1; 35x35."""
    b1 = _conv_bn(x, 64, (1, 1), names)
    b5 = _conv_bn(_conv_bn(x, 48, (1, 1), names), 64, (5, 5), names)
    b3 = _conv_bn(_conv_bn(_conv_bn(x, 64, (1, 1), names), 96, (3, 3), names), 96, (3, 3), names)
    return keras.layers.Concatenate(name=name)([b1, b5, b3, _avg_pool_branch(x, pool_filters, names)])


def reduction_a(x, names: _KerasNames):
    """Fig. 10: 3x3/2 | 1x1-3x3-3x3/2 | max pool/2; 35x35 -> 17x17."""
    b3 = _conv_bn(x, 384, (3, 3), names, stride=2, padding="valid")
    bd = _conv_bn(_conv_bn(x, 64, (1, 1), names), 96, (3, 3), names)
    bd = _conv_bn(bd, 96, (3, 3), names, stride=2, padding="valid")
    pool = keras.layers.MaxPooling2D(3, strides=2)(x)
    return keras.layers.Concatenate(name="mixed3")([b3, bd, pool])


def module_c(x, c7: int, names: _KerasNames, name: str):
    """Fig. 6: 7x7 factorized into 1x7 and 7x1 with `c7` inner channels; 17x17."""
    b1 = _conv_bn(x, 192, (1, 1), names)
    b7 = _conv_bn(x, c7, (1, 1), names)
    b7 = _conv_bn(_conv_bn(b7, c7, (1, 7), names), 192, (7, 1), names)
    bd = _conv_bn(x, c7, (1, 1), names)
    for kernel in ((7, 1), (1, 7), (7, 1)):
        bd = _conv_bn(bd, c7, kernel, names)
    bd = _conv_bn(bd, 192, (1, 7), names)
    return keras.layers.Concatenate(name=name)([b1, b7, bd, _avg_pool_branch(x, 192, names)])


def reduction_b(x, names: _KerasNames):
    """17x17 -> 8x8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2."""
    b3 = _conv_bn(_conv_bn(x, 192, (1, 1), names), 320, (3, 3), names, stride=2, padding="valid")
    b7 = _conv_bn(x, 192, (1, 1), names)
    b7 = _conv_bn(_conv_bn(b7, 192, (1, 7), names), 192, (7, 1), names)
    b7 = _conv_bn(b7, 192, (3, 3), names, stride=2, padding="valid")
    pool = keras.layers.MaxPooling2D(3, strides=2)(x)
    return keras.layers.Concatenate(name="mixed8")([b3, b7, pool])


def module_e(x, names: _KerasNames, index: int):
    """Fig. 7: the 3x3s split into parallel 1x3 and 3x1 (expanded filter bank); 8x8."""
    b1 = _conv_bn(x, 320, (1, 1), names)
    b3 = _conv_bn(x, 384, (1, 1), names)
    b3 = keras.layers.Concatenate(name=f"mixed9_{index}")(
        [_conv_bn(b3, 384, (1, 3), names), _conv_bn(b3, 384, (3, 1), names)]
    )
    bd = _conv_bn(_conv_bn(x, 448, (1, 1), names), 384, (3, 3), names)
    bd = keras.layers.Concatenate()([_conv_bn(bd, 384, (1, 3), names), _conv_bn(bd, 384, (3, 1), names)])
    return keras.layers.Concatenate(name=f"mixed{9 + index}")([b1, b3, bd, _avg_pool_branch(x, 192, names)])


@register(
    "inception_v3",
    paper=PAPER,
    params=23_817_352,
    macs=5.713e9,
    input_size=(299, 299, 3),
    reported={"imagenet_top1_acc": 77.9, "imagenet_top5_acc": 93.7},
    source="keras.applications [K][KC]",
    recipe="torchvision_imagenet",
    notes="Paper recipe: RMSprop (decay 0.9, epsilon 1.0), lr 0.045 x 0.94 every 2 epochs, label smoothing 0.1, "
    "an auxiliary classifier on the last 17x17 layer (not in keras.applications, hence not here).",
)
def InceptionV3(
    *,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "inception_v3",
) -> keras.Model:
    """Inception-v3 (Szegedy et al., CVPR 2016, Table 1) as keras.applications builds it: 299x299, no
    auxiliary classifier, BN without scale. 23,817,352 trainable at 1000 classes (23,851,784 in all)."""
    img_input = applications.model_input(
        input_tensor, input_shape, include_top=include_top, weights=weights, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, default_size=299, min_size=75,
    )  # fmt: skip
    names = _KerasNames()
    x = _conv_bn(img_input, 32, (3, 3), names, stride=2, padding="valid")
    x = _conv_bn(x, 32, (3, 3), names, padding="valid")
    x = _conv_bn(x, 64, (3, 3), names)
    stages = [x]
    x = keras.layers.MaxPooling2D(3, strides=2)(x)
    x = _conv_bn(x, 80, (1, 1), names, padding="valid")
    x = _conv_bn(x, 192, (3, 3), names, padding="valid")
    stages.append(x)
    x = keras.layers.MaxPooling2D(3, strides=2)(x)
    for i, pool_filters in enumerate((32, 64, 64)):
        x = module_a(x, pool_filters, names, f"mixed{i}")
    stages.append(x)
    x = reduction_a(x, names)
    for i, c7 in enumerate((128, 160, 160, 192), start=4):
        x = module_c(x, c7, names, f"mixed{i}")
    stages.append(x)
    x = reduction_b(x, names)
    for i in range(2):
        x = module_e(x, names, i)
    stages.append(x)
    return applications.finish(
        img_input, x, input_tensor=input_tensor, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, weights=weights, name=name, stages=stages,
    )  # fmt: skip
