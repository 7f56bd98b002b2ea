"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015, Table 1 configurations A, B, D, E)."""

from __future__ import annotations

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers.conv import Conv2D
from keras_cnn.layers.norm import BatchNormalization
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(
    title="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    authors="Simonyan, Zisserman",
    venue="ICLR",
    year=2015,
)

#: Table 1: 3x3 convolutions per block for configurations A (11), B (13), D (16) and E (19).
CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)


@applications.builder()
def VGG(
    contract: Contract,
    *,
    depth: int = 16,
    batch_norm: bool = False,
    dropout_rate: float = 0.5,
) -> keras.Model:
    """VGG-`depth` (11, 13, 16, 19) as in Table 1 of Simonyan & Zisserman (ICLR 2015).

    Layer names and order follow keras.applications (`block{b}_conv{i}`, `block{b}_pool`, `fc1`, `fc2`,
    `predictions`), so its VGG16/VGG19 weight files load; dropout 0.5 after fc1/fc2 (the paper's, absent
    from keras.applications) adds no weights and is inactive at inference; `dropout_rate=0` removes it.
    `batch_norm=True` inserts BN between each conv (biases kept) and its ReLU as torchvision's `vgg*_bn`
    (not in the paper).
    """
    if depth not in CONFIGS:
        raise ValueError(f"VGG depth must be one of {tuple(CONFIGS)}; received depth={depth!r}.")
    img_input = contract.input(default_size=224, min_size=32, flatten_head=True)
    x, stages = img_input, []
    for b, (convs, width) in enumerate(zip(CONFIGS[depth], WIDTHS, strict=True), start=1):
        for i in range(1, convs + 1):
            label = f"block{b}_conv{i}"
            if batch_norm:
                x = Conv2D(width, 3, padding="same", name=label)(x)
                x = BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{label}_bn")(x)
                x = keras.layers.Activation("relu", name=f"{label}_relu")(x)
            else:
                x = Conv2D(width, 3, padding="same", activation="relu", name=label)(x)
        stages.append(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)

    def top(x, classes, classifier_activation):
        return applications.mlp_classifier(
            x, classes, classifier_activation, widths=(4096, 4096), dropout_rate=dropout_rate
        )

    return contract.finish(img_input, x, stages=stages, top=top, name=f"vgg{depth}{'_bn' if batch_norm else ''}")


# Trainable counts and top-1 accuracy from torchvision's weight cards [TV]; MACs computed [C]. BN is not in the paper.
TV, TV_BN = "torchvision weights [TV]", "torchvision weights [TV]; BN is not in the paper"
CARDS = (
    Card(
        name="vgg11",
        label="VGG11",
        title="VGG-11, configuration A (Table 1)",
        builder=VGG,
        arguments={"depth": 11},
        paper=PAPER,
        params=132_863_336,
        macs=7.61e9,
        min_size=32,
        reported={"imagenet_top1_acc": 69.02},
        source=TV,
        recipe="vgg",
    ),
    Card(
        name="vgg13",
        label="VGG13",
        title="VGG-13, configuration B (Table 1)",
        builder=VGG,
        arguments={"depth": 13},
        paper=PAPER,
        params=133_047_848,
        macs=11.31e9,
        min_size=32,
        reported={"imagenet_top1_acc": 69.93},
        source=TV,
        recipe="vgg",
    ),
    Card(
        name="vgg16",
        label="VGG16",
        title="VGG-16, configuration D (Table 1)",
        builder=VGG,
        arguments={"depth": 16},
        paper=PAPER,
        params=138_357_544,
        macs=15.47e9,
        min_size=32,
        reported={"imagenet_top1_acc": 71.59},
        source=TV,
        recipe="vgg",
    ),
    Card(
        name="vgg19",
        label="VGG19",
        title="VGG-19, configuration E (Table 1)",
        builder=VGG,
        arguments={"depth": 19},
        paper=PAPER,
        params=143_667_240,
        macs=19.63e9,
        min_size=32,
        reported={"imagenet_top1_acc": 72.38},
        source=TV,
        recipe="vgg",
    ),
    Card(
        name="vgg11_bn",
        builder=VGG,
        arguments={"depth": 11, "batch_norm": True},
        paper=PAPER,
        params=132_868_840,
        macs=7.61e9,
        min_size=32,
        reported={"imagenet_top1_acc": 70.37},
        source=TV_BN,
        recipe="torchvision_imagenet",
    ),
    Card(
        name="vgg13_bn",
        builder=VGG,
        arguments={"depth": 13, "batch_norm": True},
        paper=PAPER,
        params=133_053_736,
        macs=11.31e9,
        min_size=32,
        reported={"imagenet_top1_acc": 71.59},
        source=TV_BN,
        recipe="torchvision_imagenet",
    ),
    Card(
        name="vgg16_bn",
        builder=VGG,
        arguments={"depth": 16, "batch_norm": True},
        paper=PAPER,
        params=138_365_992,
        macs=15.47e9,
        min_size=32,
        reported={"imagenet_top1_acc": 73.36},
        source=TV_BN,
        recipe="torchvision_imagenet",
    ),
    Card(
        name="vgg19_bn",
        builder=VGG,
        arguments={"depth": 19, "batch_norm": True},
        paper=PAPER,
        params=143_678_248,
        macs=19.63e9,
        min_size=32,
        reported={"imagenet_top1_acc": 74.22},
        source=TV_BN,
        recipe="torchvision_imagenet",
    ),
)
NAMED = register_all(CARDS)
VGG11, VGG13, VGG16, VGG19 = NAMED["VGG11"], NAMED["VGG13"], NAMED["VGG16"], NAMED["VGG19"]
