"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NIPS 2012, Fig. 2) and the single-tower form of Krizhevsky's "One weird trick" (arXiv 1404.5997, 2014)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers import AdaptiveAveragePooling, LocalResponseNormalization
from keras_cnn.layers.conv import Conv2D
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(
    title="ImageNet Classification with Deep Convolutional Neural Networks",
    authors="Krizhevsky, Sutskever, Hinton",
    venue="NIPS",
    year=2012,
)
ONE_WEIRD_TRICK = Paper(
    title="One weird trick for parallelizing convolutional neural networks",
    authors="Krizhevsky",
    venue="arXiv:1404.5997",
    year=2014,
)


def _features(x, widths: Sequence[int], *, groups: Sequence[int], lrn: bool, conv1_pad: int):
    """conv1 11x11/4, conv2 5x5, conv3-5 3x3, max pooling 3/2 after conv1, conv2 and conv5 (Sec. 3.5)."""
    kernels = (11, 5, 3, 3, 3)
    pads = (conv1_pad, 2, 1, 1, 1)
    stages = []
    for i, (width, kernel, pad, g) in enumerate(zip(widths, kernels, pads, groups, strict=True), start=1):
        if pad:
            x = keras.layers.ZeroPadding2D(pad, name=f"conv{i}_pad")(x)
        x = Conv2D(width, kernel, strides=4 if i == 1 else 1, groups=g, name=f"conv{i}_conv")(x)
        x = keras.layers.Activation("relu", name=f"conv{i}_relu")(x)
        if lrn and i in (1, 2):
            x = LocalResponseNormalization(name=f"conv{i}_lrn")(x)
        if i in (1, 2, 5):
            stages.append(x)
            x = keras.layers.MaxPooling2D(3, strides=2, name=f"pool{i}")(x)
    return x, stages


def _alexnet(
    contract: Contract,
    widths: Sequence[int],
    *,
    groups: Sequence[int],
    lrn: bool,
    conv1_pad: int,
    default_size: int,
    min_size: int,
    dropout_rate: float,
    adaptive_pool: bool,
) -> keras.Model:
    img_input = contract.input(default_size=default_size, min_size=min_size, flatten_head=True)
    x, stages = _features(img_input, widths, groups=groups, lrn=lrn, conv1_pad=conv1_pad)

    def top(x, classes, classifier_activation):
        if adaptive_pool:
            x = AdaptiveAveragePooling(6, name="avgpool")(x)
        return applications.mlp_classifier(
            x, classes, classifier_activation, widths=(4096, 4096), dropout_rate=dropout_rate
        )

    return contract.finish(img_input, x, stages=stages, top=top)


@applications.builder(name="alexnet")
def AlexNet(contract: Contract, *, dropout_rate: float = 0.5) -> keras.Model:
    """Single-tower AlexNet, 64-192-384-256-256, no LRN (Krizhevsky 2014; torchvision's layout).

    61,100,840 trainable at 1000 classes. An adaptive 6x6 average pool before the classifier lets it run at
    any size from 63x63 up (as torchvision). Dropout 0.5 follows fc1 and fc2 as in the 2012 paper
    (torchvision places it before them; the weights are the same).
    """
    return _alexnet(
        contract,
        (64, 192, 384, 256, 256),
        groups=(1, 1, 1, 1, 1),
        lrn=False,
        conv1_pad=2,
        default_size=224,
        min_size=63,
        dropout_rate=dropout_rate,
        adaptive_pool=True,
    )


@applications.builder(name="alexnet_v1")
def AlexNetV1(contract: Contract, *, dropout_rate: float = 0.5) -> keras.Model:
    """The original two-GPU AlexNet, 96-256-384-384-256 (Krizhevsky et al. 2012, Fig. 2).

    conv2, conv4 and conv5 see only their own GPU's half of the maps (groups=2), conv3 sees both; local
    response normalization (k=2, n=5, alpha=1e-4, beta=0.75) follows ReLU in conv1 and conv2; max pooling
    3/2 overlaps. 60,965,224 trainable at 1000 classes ("60 million" in the paper). The input is 227x227:
    the paper's 224 does not divide out with an 11x11/4 first layer (the 227 of the Caffe reference models).
    """
    return _alexnet(
        contract,
        (96, 256, 384, 384, 256),
        groups=(1, 2, 1, 2, 2),
        lrn=True,
        conv1_pad=0,
        default_size=227,
        min_size=67,
        dropout_rate=dropout_rate,
        adaptive_pool=False,
    )


CARDS = (
    Card(
        name="alexnet",
        builder=AlexNet,
        paper=ONE_WEIRD_TRICK,
        params=61_100_840,
        macs=0.714e9,
        min_size=63,
        reported={"imagenet_top1_acc": 56.522, "imagenet_top5_acc": 79.066},
        source="torchvision AlexNet_Weights.IMAGENET1K_V1 [TV]",
        recipe="torchvision_imagenet",
    ),
    Card(
        name="alexnet_v1",
        builder=AlexNetV1,
        paper=PAPER,
        params=60_965_224,
        macs=0.72e9,
        min_size=67,
        reported={"ilsvrc2012_val_top1_err": 40.7, "ilsvrc2012_val_top5_err": 18.2},
        source="Krizhevsky et al. 2012, Table 2, 1 CNN [M]",
        recipe="alexnet",
        input_size=(227, 227, 3),
    ),
)
register_all(CARDS)
