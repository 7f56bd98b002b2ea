"""GoogLeNet / Inception-v1 (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, Table 1 and Fig. 3)."""

from __future__ import annotations

from typing import Literal

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers import AdaptiveAveragePooling, LocalResponseNormalization
from keras_cnn.layers.conv import Conv2D
from keras_cnn.layers.norm import BatchNormalization
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(title="Going Deeper with Convolutions", authors="Szegedy et al.", venue="CVPR", year=2015)

#: Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj of every inception module.
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
AUX_AFTER = ("4a", "4d")  # the two auxiliary classifiers (Sec. 5)


def _conv(x, filters: int, kernel: int, name: str, *, stride: int = 1, batch_norm: bool):
    """Conv (padded by kernel // 2 on every side, as Caffe and PyTorch) + ReLU, with BN between them when
    `batch_norm` (not in the paper)."""
    if stride > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = Conv2D(
        filters, kernel, strides=stride, padding="same" if stride == 1 else "valid", use_bias=not batch_norm, name=name
    )(x)
    if batch_norm:
        x = BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def inception(x, widths, name: str, *, batch_norm: bool, kernel5: int = 5):
    """Fig. 3(b): 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated along channels
    (`kernel5=3`: torchvision's 3x3 in place of the 5x5)."""
    n1, r3, n3, r5, n5, proj = widths

    def reduced(filters_in: int, filters: int, kernel: int, label: str):
        t = _conv(x, filters_in, 1, f"{name}_{label}_reduce", batch_norm=batch_norm)
        return _conv(t, filters, kernel, f"{name}_{label}", batch_norm=batch_norm)

    b1 = _conv(x, n1, 1, f"{name}_1x1", batch_norm=batch_norm)
    b3, b5 = reduced(r3, n3, 3, "3x3"), reduced(r5, n5, kernel5, "5x5")
    pool = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = _conv(pool, proj, 1, f"{name}_pool_proj", batch_norm=batch_norm)
    return keras.layers.Concatenate(name=f"{name}_output")([b1, b3, b5, bp])


def auxiliary_classifier(x, classes: int, classifier_activation, name: str, *, batch_norm: bool, adaptive: bool):
    """Sec. 5: 5x5/3 average pool (`adaptive`: torchvision's adaptive pool to 4x4), 1x1 conv 128 + ReLU,
    FC 1024 + ReLU, dropout 0.7, FC `classes`."""
    if adaptive:
        x = AdaptiveAveragePooling(4, name=f"{name}_pool")(x)
    else:
        x = keras.layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = _conv(x, 128, 1, f"{name}_conv", batch_norm=batch_norm)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = keras.layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return keras.layers.Dense(
        classes, activation=classifier_activation, name=f"{name}_predictions", dtype=applications.head_dtype()
    )(x)


def _max_pool(x, name: str, size: int = 3):
    """size x size / 2 max pooling rounded up as Caffe's (224 -> 112 -> 56 -> 28 -> 14 -> 7)."""
    return keras.layers.MaxPooling2D(size, strides=2, padding="same", name=name)(x)


@applications.builder(name="googlenet")
def GoogLeNet(
    contract: Contract,
    *,
    aux_logits: bool = False,
    layout: Literal["paper", "torchvision"] = "paper",
    batch_norm: bool | None = None,
) -> keras.Model:
    """GoogLeNet as in Table 1 of Szegedy et al. (CVPR 2015): 5x5 branches (torchvision has 3x3), LRN after
    the first pooling and the second convolution, dropout 0.4 before the classifier.

    6,998,552 trainable at 1000 classes (the paper's Table 1 sums to ~6.8 M; ours counts every bias). With
    `aux_logits=True` the model also returns the two auxiliary classifiers of Sec. 5 (after 4a and 4d, outputs
    `aux1_predictions`, `aux2_predictions`, 13,378,280 trainable in all) for training, where
    `keras_cnn.training` weighs their losses 0.3 (the recipe's `aux_weight`); `without_aux(model)` gives the
    inference model.

    `layout="torchvision"` builds torchvision's variant, so its weights convert (`keras_cnn.convert`): BN after
    every convolution, no LRN, 3x3 in the 5x5 branches, 2x2 pooling before 5a, dropout 0.2, and auxiliary
    heads that pool adaptively to 4x4 (6,624,904 trainable; 13,004,888 with them).

    `batch_norm` (default: the layout's, False for "paper") puts BN between every convolution and its ReLU and
    drops the convolution biases, the later BN-Inception practice (Ioffe & Szegedy 2015); the rest of the layout
    stays (7,005,832 trainable for the paper layout).
    """
    if layout not in ("paper", "torchvision"):
        raise ValueError(f"layout must be 'paper' or 'torchvision'; received layout={layout!r}.")
    torchvision = layout == "torchvision"
    batch_norm = torchvision if batch_norm is None else batch_norm
    lrn, dropout_rate = not torchvision, 0.2 if torchvision else 0.4
    if aux_logits and not contract.include_top:
        raise ValueError("aux_logits=True needs include_top=True (the auxiliary heads are classifiers).")
    img_input = contract.input(
        default_size=224,
        min_size=80 if aux_logits and not torchvision else 16,
        flatten_head=aux_logits and not torchvision,
    )
    x = _conv(img_input, 64, 7, "conv1", stride=2, batch_norm=batch_norm)
    stages = [x]
    x = _max_pool(x, "pool1")
    if lrn:
        x = LocalResponseNormalization(name="lrn1")(x)
    x = _conv(x, 64, 1, "conv2_reduce", batch_norm=batch_norm)
    x = _conv(x, 192, 3, "conv2", batch_norm=batch_norm)
    if lrn:
        x = LocalResponseNormalization(name="lrn2")(x)
    stages.append(x)
    x = _max_pool(x, "pool2")
    aux = []
    for module, widths in MODULES.items():
        if module in ("4a", "5a"):
            stages.append(x)
            x = _max_pool(x, f"pool{module[0]}", size=2 if torchvision and module == "5a" else 3)
        x = inception(x, widths, f"inception_{module}", batch_norm=batch_norm, kernel5=3 if torchvision else 5)
        if aux_logits and module in AUX_AFTER:
            label = f"aux{AUX_AFTER.index(module) + 1}"
            head = auxiliary_classifier(
                x, contract.classes, contract.classifier_activation, label, batch_norm=batch_norm, adaptive=torchvision
            )
            aux.append(head)
    stages.append(x)

    def top(x, classes, classifier_activation):
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        return keras.layers.Dense(
            classes, activation=classifier_activation, name="predictions", dtype=applications.head_dtype()
        )(x)

    return contract.finish(img_input, x, stages=stages, top=top, aux_outputs=aux)


CARDS = (
    Card(
        name="googlenet",
        builder=GoogLeNet,
        min_size=16,
        paper=PAPER,
        params=6_998_552,
        macs=1.58e9,
        reported={"imagenet_top5_err_1crop": 10.07, "imagenet_top5_err_10crop": 9.15},
        source="Szegedy et al. 2015 Table 3 [M]; Caffe-style count [C]",
        recipe="torchvision_imagenet",
        notes="6,998,552 without the auxiliary heads; 13,378,280 with them (aux1 3,188,840, aux2 3,190,888).",
    ),
)
register_all(CARDS)
