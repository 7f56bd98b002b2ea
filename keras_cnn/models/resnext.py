"""ResNeXt (Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017, Table 1 and
Fig. 3(c)): ResNet bottlenecks whose 3x3 convolution is split into C groups (cardinality) of width d."""

from __future__ import annotations

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers import HE_FAN_OUT, TORCH_BN, Style, block_survival, residual_join
from keras_cnn.models.resnet import IMAGENET_DEPTHS, _stages
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(
    title="Aggregated Residual Transformations for Deep Neural Networks", authors="Xie et al.", venue="CVPR", year=2017
)


def aggregated_block(x, planes: int, stride: int, style: Style, *, C: int, d: int, p: float, name: str):
    """Fig. 3(c): 1x1 to C·d·planes/64 channels, 3x3 grouped convolution (C groups, the stride here as in
    torchvision and the CIFAR reference code), 1x1 to 4·planes; projection shortcut when the shape changes."""
    width = C * int(d * planes / 64)
    out = 4 * planes

    def branch(t):
        t = style.norm_act(style.conv(t, width, 1, 1, f"{name}_1"), f"{name}_1")
        t = style.norm_act(style.conv(t, width, 3, stride, f"{name}_2", groups=C), f"{name}_2")
        return style.norm_act(style.conv(t, out, 1, 1, f"{name}_3"), f"{name}_3", act=False)

    skip = x
    if stride > 1 or x.shape[-1] != out:
        skip = style.norm_act(style.conv(x, out, 1, stride, f"{name}_0"), f"{name}_0", act=False)
    y = residual_join(x, skip, branch, block=name, survival_probability=p)
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


@applications.builder()
def ResNeXt(
    contract: Contract,
    *,
    depth: int = 50,
    C: int = 32,
    d: int = 4,
) -> keras.Model:
    """ImageNet ResNeXt-`depth` (50, 101, 152) with cardinality `C` and bottleneck width `d` (Table 1: 32x4d),
    torchvision's layout (no convolution biases), so its weights convert. ResNeXt-50 32x4d: 25,028,904
    trainable."""
    if depth not in (50, 101, 152):
        raise ValueError(f"ImageNet ResNeXt depth must be 50, 101 or 152; received depth={depth!r}.")
    img_input = contract.input(default_size=224, min_size=32)
    style = Style(bn=TORCH_BN, init=HE_FAN_OUT)
    stem, x = style.imagenet_stem(img_input, pool_name="pool1_pool")
    depths = IMAGENET_DEPTHS[depth]
    x, outputs = _stages(
        x,
        depths,
        (64, 128, 256, 512),
        (1, 2, 2, 2),
        aggregated_block,
        block_survival(depths, 1.0, "linear"),
        style,
        C=C,
        d=d,
    )
    return contract.finish(img_input, x, stages=[stem, *outputs], name=f"resnext{depth}_{C}x{d}d")


@applications.builder(classes=10)
def CifarResNeXt(
    contract: Contract,
    *,
    depth: int = 29,
    C: int = 8,
    d: int = 64,
) -> keras.Model:
    """CIFAR ResNeXt-`depth` (Sec. 5.3): a 3x3 stem of 64, three stages of (depth - 2) / 9 blocks with 256,
    512, 1024 outputs, cardinality `C`, width `d`, as the CIFAR reference code (hysts) builds it.
    ResNeXt-29 8x64d: 34,426,698 trainable at 10 classes, 5.39 G MACs. (Counts
    of 4.98 G and 9.88 G are what the same network costs with the stride on the first 1x1 instead of the 3x3: 2 x
    201 M less for 8x64d. The reference code strides the 3x3, so we do.)"""
    if (depth - 2) % 9:
        raise ValueError(f"CIFAR ResNeXt depth must be 9n + 2 (29 in the paper); received depth={depth!r}.")
    img_input = contract.input(default_size=32, min_size=4)
    style = Style(bn=TORCH_BN, init=HE_FAN_OUT)
    stem = style.norm_act(style.conv(img_input, 64, 3, 1, "conv1"), "conv1")
    depths = ((depth - 2) // 9,) * 3
    x, outputs = _stages(
        stem,
        depths,
        (64, 128, 256),
        (1, 2, 2),
        aggregated_block,
        block_survival(depths, 1.0, "linear"),
        style,
        C=C,
        d=d,
    )
    return contract.finish(img_input, x, stages=[stem, *outputs], name=f"resnext{depth}_{C}x{d}d")


# Trainable counts and MACs: torchvision's weights [TV] for ImageNet; for CIFAR the count of the reference code
# [R:hysts] at 10 classes and its layout's MACs [C], CIFAR-10+ test error from Table 7 [M].
CIFAR_SOURCE = "Xie et al. 2017 Table 7 [M]; count of the CIFAR reference code [R:hysts]"
CARDS = (
    Card(
        name="resnext50_32x4d",
        label="ResNeXt50_32x4d",
        title="ResNeXt-50 32x4d (Table 1)",
        builder=ResNeXt,
        arguments={"depth": 50, "C": 32, "d": 4},
        paper=PAPER,
        params=25_028_904,
        macs=4.23e9,
        min_size=32,
        reported={"imagenet_top1_acc": 77.618},
        source="torchvision weights [TV]",
        recipe="resnext_imagenet",
    ),
    Card(
        name="resnext101_32x8d",
        label="ResNeXt101_32x8d",
        title="ResNeXt-101 32x8d (torchvision's)",
        builder=ResNeXt,
        arguments={"depth": 101, "C": 32, "d": 8},
        paper=PAPER,
        params=88_791_336,
        macs=16.41e9,
        min_size=32,
        reported={"imagenet_top1_acc": 79.312},
        source="torchvision weights [TV]",
        recipe="resnext_imagenet",
    ),
    Card(
        name="resnext29_8x64d",
        label="ResNeXt29_8x64d",
        title="ResNeXt-29 8x64d on CIFAR (Sec. 5.3)",
        builder=CifarResNeXt,
        arguments={"depth": 29, "C": 8, "d": 64},
        paper=PAPER,
        params=34_426_698,
        macs=5.387e9,
        min_size=4,
        reported={"cifar10+_test_error": 3.65},
        source=CIFAR_SOURCE,
        recipe="resnext_cifar",
        input_size=(32, 32, 3),
        classes=10,
    ),
    Card(
        name="resnext29_16x64d",
        label="ResNeXt29_16x64d",
        title="ResNeXt-29 16x64d on CIFAR (Sec. 5.3)",
        builder=CifarResNeXt,
        arguments={"depth": 29, "C": 16, "d": 64},
        paper=PAPER,
        params=68_155_210,
        macs=10.689e9,
        min_size=4,
        reported={"cifar10+_test_error": 3.58},
        source=CIFAR_SOURCE,
        recipe="resnext_cifar",
        input_size=(32, 32, 3),
        classes=10,
    ),
)
NAMED = register_all(CARDS)
ResNeXt50_32x4d, ResNeXt101_32x8d = NAMED["ResNeXt50_32x4d"], NAMED["ResNeXt101_32x8d"]
ResNeXt29_8x64d, ResNeXt29_16x64d = NAMED["ResNeXt29_8x64d"], NAMED["ResNeXt29_16x64d"]
