"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017, Fig. 5).
Layer names and order are keras.applications', so its weight files load and the outputs match."""

from __future__ import annotations

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers.conv import Conv2D
from keras_cnn.layers.norm import BatchNormalization
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(
    title="Xception: Deep Learning with Depthwise Separable Convolutions", authors="Chollet", venue="CVPR", year=2017
)

#: Fig. 5: the strided entry-flow blocks (filters of both separable convolutions) and the exit block.
ENTRY = {2: (128, 128), 3: (256, 256), 4: (728, 728)}
EXIT = (728, 1024)
MIDDLE_REPEATS = 8  # blocks 5-12


def _sepconv(x, filters: int, name: str, *, relu_first: bool):
    """(ReLU,) 3x3 separable convolution, BN: one step of Fig. 5."""
    if relu_first:
        x = keras.layers.Activation("relu", name=f"{name}_act")(x)
    x = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
    return BatchNormalization(name=f"{name}_bn")(x)


def downsampling_block(x, filters: tuple[int, int], block: int):
    """Two separable convolutions and a 3x3/2 max pool, added to a strided 1x1 projection of the input.
    The projection layers are unnamed, as in keras.applications: Keras numbers them (`conv2d`,
    `batch_normalization`, ... in a fresh session, keras.applications' names) and never reuses a taken name."""
    residual = Conv2D(filters[1], 1, strides=2, padding="same", use_bias=False)(x)
    residual = BatchNormalization()(residual)
    for i, width in enumerate(filters, start=1):
        x = _sepconv(x, width, f"block{block}_sepconv{i}", relu_first=block > 2 or i > 1)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
    return keras.layers.Add(name=f"block{block}_add")([x, residual])


def middle_block(x, block: int):
    """Three ReLU-separable-conv-BN steps at 728 channels with an identity shortcut."""
    residual = x
    for i in range(1, 4):
        x = _sepconv(x, 728, f"block{block}_sepconv{i}", relu_first=True)
    return keras.layers.Add(name=f"block{block}_add")([x, residual])


@applications.builder(name="xception")
def Xception(
    contract: Contract,
) -> keras.Model:
    """Xception as in Fig. 5 of Chollet (CVPR 2017): entry flow, 8 middle-flow blocks, exit flow, 299x299.
    22,855,952 trainable at 1000 classes (= the paper). Like keras.applications, no dropout before the logits
    (the paper trained with 0.5)."""
    img_input = contract.input(default_size=299, min_size=71)
    x = img_input
    for i, (filters, stride) in enumerate(((32, 2), (64, 1)), start=1):
        x = Conv2D(filters, 3, strides=stride, use_bias=False, name=f"block1_conv{i}")(x)
        x = BatchNormalization(name=f"block1_conv{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block1_conv{i}_act")(x)
    stages = [x]
    for block, filters in ENTRY.items():
        x = downsampling_block(x, filters, block)
        stages.append(x)
    for block in range(5, 5 + MIDDLE_REPEATS):
        x = middle_block(x, block)
    x = downsampling_block(x, EXIT, 5 + MIDDLE_REPEATS)
    for i, filters in enumerate((1536, 2048), start=1):
        x = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"block14_sepconv{i}")(x)
        x = BatchNormalization(name=f"block14_sepconv{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block14_sepconv{i}_act")(x)
    stages.append(x)
    return contract.finish(img_input, x, stages=stages)


CARDS = (
    Card(
        name="xception",
        builder=Xception,
        min_size=71,
        paper=PAPER,
        params=22_855_952,
        macs=8.36e9,
        input_size=(299, 299, 3),
        reported={"imagenet_top1_acc": 79.0, "imagenet_top5_acc": 94.5},
        source="Chollet 2017 Tables 1-3 [P*]; Keras [K][KC]",
        recipe="torchvision_imagenet",
        notes="Paper recipe: SGD momentum 0.9, lr 0.045 x 0.94 every 2 epochs, Polyak averaging; dropout 0.5 "
        "before the logits.",
    ),
)
register_all(CARDS)
