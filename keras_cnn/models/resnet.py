"""Residual networks and their relatives, one family in one file.

* CIFAR ResNets and plain nets: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
  CVPR 2016, Sec. 4.2 (6n+2 layers, options A/B, plain counterparts of Fig. 6).
* ImageNet ResNet-18...152: the same paper, Table 1.
* Pre-activation: He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016, Fig. 4(e)
  (CIFAR bottleneck ResNet-164/1001 as in KaimingHe/resnet-1k-layers; ImageNet V2 as keras.applications).
* Stochastic depth: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016: any builder takes
  p_L (survival of the last block) and a schedule; p_L = 1 keeps every block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers import (
    HE_FAN_OUT,
    KERAS_BN,
    TORCH_BN,
    Conv2D,
    Style,
    block_survival,
    option_a_shortcut,
    residual_join,
)
from keras_cnn.layers.norm import Norm
from keras_cnn.layers.stochastic_depth import Schedule
from keras_cnn.registry import Card, Paper, register_all

RESNET = Paper(
    title="Deep Residual Learning for Image Recognition", authors="He, Zhang, Ren, Sun", venue="CVPR", year=2016
)
PREACT = Paper(
    title="Identity Mappings in Deep Residual Networks", authors="He, Zhang, Ren, Sun", venue="ECCV", year=2016
)
SD = Paper(
    title="Deep Networks with Stochastic Depth", authors="Huang, Sun, Liu, Sedra, Weinberger", venue="ECCV", year=2016
)

KERAS_INIT: dict = {}


def basic_block(x, filters: int, stride: int, style: Style, *, shortcut: str, residual: bool, p: float, name: str):
    """Two 3x3 convolutions (Fig. 5 left). shortcut "A": zero-padding identity, "B": 1x1 projection + BN
    when the shape changes. residual=False gives the plain block of the degradation experiment."""

    def branch(t):
        t = style.norm_act(style.conv(t, filters, 3, stride, f"{name}_1"), f"{name}_1")
        return style.norm_act(style.conv(t, filters, 3, 1, f"{name}_2"), f"{name}_2", act=False)

    if not residual:
        y = branch(x)
    else:
        if shortcut == "A":
            skip = option_a_shortcut(x, filters, stride, name)
        elif stride > 1 or x.shape[-1] != filters:
            skip = style.norm_act(style.conv(x, filters, 1, stride, f"{name}_0"), f"{name}_0", act=False)
        else:
            skip = x
        y = residual_join(x, skip, branch, block=name, survival_probability=p)
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def bottleneck_block(x, filters: int, stride: int, style: Style, *, p: float, name: str):
    """1x1-3x3-1x1 bottleneck (Fig. 5 right) in keras.applications' layout: stride on the first 1x1,
    biases on every convolution, projection shortcut on each stage's first block."""

    def branch(t):
        t = style.norm_act(style.conv(t, filters, 1, stride, f"{name}_1", use_bias=True), f"{name}_1")
        t = style.norm_act(style.conv(t, filters, 3, 1, f"{name}_2", use_bias=True), f"{name}_2")
        return style.norm_act(style.conv(t, 4 * filters, 1, 1, f"{name}_3", use_bias=True), f"{name}_3", act=False)

    skip = x
    if stride > 1 or x.shape[-1] != 4 * filters:
        skip = style.conv(x, 4 * filters, 1, stride, f"{name}_0", use_bias=True)
        skip = style.norm_act(skip, f"{name}_0", act=False)
    y = residual_join(x, skip, branch, block=name, survival_probability=p)
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def preact_bottleneck_block(
    x, filters: int, stride: int, style: Style, *, layout: Literal["cifar", "keras"], p: float, name: str
):
    """Pre-activation bottleneck, BN-ReLU before each convolution (Identity Mappings, Fig. 4(e)).

    layout "cifar" (resnet-1k-layers): stride on the first 1x1, no biases, and when the shape changes the
    BN-ReLU is shared with a 1x1 projection shortcut. layout "keras" (keras.applications ResNetV2): stride on
    the 3x3 of each stage's last block, a 1x1 max-pool shortcut there, and biases on the 1x1 convs around it.
    """
    keras_layout = layout == "keras"
    out_filters = 4 * filters
    project = x.shape[-1] != out_filters

    def preact(t):
        return style.norm_act(t, f"{name}_preact")

    def convs(t):
        s1, s2 = (1, stride) if keras_layout else (stride, 1)
        t = style.norm_act(style.conv(t, filters, 1, s1, f"{name}_1"), f"{name}_1")
        if keras_layout:
            t = keras.layers.ZeroPadding2D(1, name=f"{name}_2_pad")(t)
            t = Conv2D(filters, 3, strides=s2, use_bias=False, name=f"{name}_2_conv", **style.init)(t)
        else:
            t = style.conv(t, filters, 3, s2, f"{name}_2")
        t = style.norm_act(t, f"{name}_2")
        return style.conv(t, out_filters, 1, 1, f"{name}_3", use_bias=keras_layout)

    if project:
        shared = preact(x)
        shortcut_stride = 1 if keras_layout else stride
        skip = style.conv(shared, out_filters, 1, shortcut_stride, f"{name}_0", use_bias=keras_layout)
        return residual_join(shared, skip, convs, block=name, join="out", survival_probability=p)
    skip = x
    if stride > 1:
        skip = keras.layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
    return residual_join(x, skip, lambda t: convs(preact(t)), block=name, join="out", survival_probability=p)


def _stages(x, depths, widths, strides, block: Callable, survival, style: Style, *, downsample="first", **kwargs):
    """Stack blocks stage by stage (`conv{s}_block{b}`); each stage's stride goes to its first block (v1)
    or its last block (keras.applications ResNetV2). Returns the output and the stage tensors."""
    outputs = []
    for s, (depth, width, stride) in enumerate(zip(depths, widths, strides, strict=True), start=2):
        strided = 1 if downsample == "first" else depth
        for b in range(1, depth + 1):
            x = block(
                x,
                width,
                stride if b == strided else 1,
                style,
                p=survival[s - 2][b - 1],
                name=f"conv{s}_block{b}",
                **kwargs,
            )
        outputs.append(x)
    return x, outputs


@applications.builder(classes=10)
def CifarResNet(
    contract: Contract,
    *,
    depth: int = 20,
    shortcut: Literal["A", "B"] = "A",
    residual: bool = True,
    p_L: float = 1.0,
    schedule: Schedule = "linear",
    norm: Norm = "batch",
) -> keras.Model:
    """The 6n+2-layer CIFAR ResNet (He et al., CVPR 2016, Sec. 4.2): a 3x3 conv with 16 maps, three stages
    of n basic blocks at 16/32/64 maps (32x32, 16x16, 8x8), global average pooling and a dense classifier.

    shortcut "A" pads zeros (no parameters; 269,722 trainable for ResNet-20), "B" projects with 1x1 conv + BN
    (+2,752). residual=False gives the plain net of Fig. 6. p_L < 1 drops blocks as in stochastic depth.
    Untrained, the BN moving statistics are the identity, so inference-mode outputs of the deepest nets
    (ResNet-1202) overflow float32 until a few training steps have set them.
    """
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' (zero padding) or 'B' (projection); received {shortcut!r}.")
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, 1202); got {depth!r}.")
    n = (depth - 2) // 6
    img_input = contract.input(default_size=32, min_size=4)
    style = Style(norm=norm, bn=TORCH_BN, init=HE_FAN_OUT)
    stem = style.norm_act(style.conv(img_input, 16, 3, 1, "conv1"), "conv1")
    survival = block_survival((n, n, n), p_L, schedule)
    x, outputs = _stages(
        stem, (n, n, n), (16, 32, 64), (1, 2, 2), basic_block, survival, style, shortcut=shortcut, residual=residual
    )
    return contract.finish(img_input, x, stages=[stem, *outputs], name=f"{'resnet' if residual else 'plain'}{depth}")


IMAGENET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


@applications.builder()
def ResNet(
    contract: Contract,
    *,
    depth: int = 50,
    p_L: float = 1.0,
    schedule: Schedule = "linear",
    norm: Norm = "batch",
) -> keras.Model:
    """ImageNet ResNet-18/34/50/101/152 (He et al., CVPR 2016, Table 1).

    18/34 use basic blocks without conv biases as torchvision (11,689,512 / 21,797,672 trainable), so
    torchvision weights convert exactly. 50/101/152 keep keras.applications' ResNet layer names, order,
    conv biases and stride-on-1x1 (v1), so its weight files load (25,583,592 trainable for ResNet-50;
    torchvision's v1.5 has 25,557,032 without biases).
    """
    if depth not in IMAGENET_DEPTHS:
        raise ValueError(f"ImageNet ResNet depth must be one of {tuple(IMAGENET_DEPTHS)}; received depth={depth!r}.")
    img_input = contract.input(default_size=224, min_size=32)
    bottleneck = depth >= 50
    style = Style(norm=norm, bn=KERAS_BN if bottleneck else TORCH_BN, init=KERAS_INIT if bottleneck else HE_FAN_OUT)
    stem, x = style.imagenet_stem(img_input, use_bias=bottleneck, pool_name="pool1_pool")
    depths = IMAGENET_DEPTHS[depth]
    block, kwargs = (bottleneck_block, {}) if bottleneck else (basic_block, {"shortcut": "B", "residual": True})
    survival = block_survival(depths, p_L, schedule)
    x, outputs = _stages(x, depths, (64, 128, 256, 512), (1, 2, 2, 2), block, survival, style, **kwargs)
    return contract.finish(img_input, x, stages=[stem, *outputs], name=f"resnet{depth}")


@applications.builder()
def ResNetV2(
    contract: Contract,
    *,
    depth: int = 50,
    p_L: float = 1.0,
    schedule: Schedule = "linear",
    norm: Norm = "batch",
) -> keras.Model:
    """Pre-activation ImageNet ResNet-50/101/152 (He et al., ECCV 2016) in keras.applications' ResNetV2
    layout (names, order, biases, downsampling in each stage's last block), so its weight files load."""
    if depth not in (50, 101, 152):
        raise ValueError(f"ResNetV2 depth must be one of (50, 101, 152); received depth={depth!r}.")
    img_input = contract.input(default_size=224, min_size=32)
    style = Style(norm=norm, bn=KERAS_BN, init=KERAS_INIT)
    stem, x = style.imagenet_stem(img_input, use_bias=True, preact=True, pool_name="pool1_pool")
    depths = IMAGENET_DEPTHS[depth]
    survival = block_survival(depths, p_L, schedule)
    x, outputs = _stages(
        x,
        depths,
        (64, 128, 256, 512),
        (2, 2, 2, 1),
        preact_bottleneck_block,
        survival,
        style,
        downsample="last",
        layout="keras",
    )
    x = style.norm_act(x, "post")
    return contract.finish(img_input, x, stages=[stem, *outputs[:-1], x], name=f"resnet{depth}_v2")


@applications.builder(classes=10)
def PreActResNet(
    contract: Contract,
    *,
    depth: int = 164,
    p_L: float = 1.0,
    schedule: Schedule = "linear",
    norm: Norm = "batch",
) -> keras.Model:
    """The 9n+2-layer CIFAR pre-activation bottleneck ResNet (He et al., ECCV 2016; ResNet-164/1001 as in
    KaimingHe/resnet-1k-layers): a 3x3 conv with 16 maps, three stages of n bottleneck blocks with 64/128/256
    output maps, final BN-ReLU, global average pooling, dense classifier. 1,703,258 trainable for 164.
    As for CifarResNet, inference before any training overflows for ResNet-1001 (identity BN statistics)."""
    if not isinstance(depth, int) or depth < 11 or (depth - 2) % 9:
        raise ValueError(f"Pre-activation CIFAR ResNet depth must be 9n+2 (164, 1001); received depth={depth!r}.")
    n = (depth - 2) // 9
    img_input = contract.input(default_size=32, min_size=4)
    style = Style(norm=norm, bn=TORCH_BN, init=HE_FAN_OUT)
    stem = style.conv(img_input, 16, 3, 1, "conv1")
    survival = block_survival((n, n, n), p_L, schedule)
    x, outputs = _stages(
        stem, (n, n, n), (16, 32, 64), (1, 2, 2), preact_bottleneck_block, survival, style, layout="cifar"
    )
    x = style.norm_act(x, "post")
    return contract.finish(img_input, x, stages=[stem, *outputs[:-1], x], name=f"preact_resnet{depth}")


# --- one card per registered name: the published figures (He et al. 2016, Table 6 and Table 1) ---------------------
CIFAR = {"input_size": (32, 32, 3), "classes": 10, "min_size": 4}
IMAGENET = {"min_size": 32, "recipe": "resnet_imagenet"}
TABLE_6 = "He et al. 2016, Table 6 [P*][R:akamaster]"
SD_SOURCE = "Huang et al. 2016 [R:yueatsprograms][P*]"
SD_NOTES = "He et al.'s CIFAR ResNet without conv biases (the SD Torch code adds 4,048 to ResNet-110)."
PREACT_SOURCE = "[R:KaimingHe/resnet-1k-layers][R:wide-residual-networks][R:hysts]"
# Keras-layout ImageNet models: the trainable counts are the keras.io totals [K] (44,707,176 / 60,419,944;
# V2: 25,613,800, the others [KC]) less the BN moving statistics (trainable counts, as papers and torchvision count).
TV, KERAS_IO = "torchvision weights [TV]", "keras.io applications table [K]"


def _cifar10(error: float) -> dict[str, float]:
    return {"cifar10+_test_error": error}


def _imagenet(top1: float, top5: float) -> dict[str, float]:
    return {"imagenet_top1_acc": top1, "imagenet_top5_acc": top5}


CARDS = (
    Card(
        name="resnet20",
        label="ResNet20",
        title="ResNet-20 for CIFAR",
        builder=CifarResNet,
        arguments={"depth": 20},
        paper=RESNET,
        params=269_722,
        macs=40.6e6,
        reported=_cifar10(8.75),
        source=TABLE_6,
        recipe="resnet_cifar",
        **CIFAR,
    ),
    Card(
        name="resnet32",
        label="ResNet32",
        title="ResNet-32 for CIFAR",
        builder=CifarResNet,
        arguments={"depth": 32},
        paper=RESNET,
        params=464_154,
        macs=68.9e6,
        reported=_cifar10(7.51),
        source=TABLE_6,
        recipe="resnet_cifar",
        **CIFAR,
    ),
    Card(
        name="resnet44",
        label="ResNet44",
        title="ResNet-44 for CIFAR",
        builder=CifarResNet,
        arguments={"depth": 44},
        paper=RESNET,
        params=658_586,
        macs=97.2e6,
        reported=_cifar10(7.17),
        source=TABLE_6,
        recipe="resnet_cifar",
        **CIFAR,
    ),
    Card(
        name="resnet56",
        label="ResNet56",
        title="ResNet-56 for CIFAR",
        builder=CifarResNet,
        arguments={"depth": 56},
        paper=RESNET,
        params=853_018,
        macs=125.5e6,
        reported=_cifar10(6.97),
        source=TABLE_6,
        recipe="resnet_cifar",
        **CIFAR,
    ),
    Card(
        name="resnet110",
        label="ResNet110",
        title="ResNet-110 for CIFAR",
        builder=CifarResNet,
        arguments={"depth": 110},
        paper=RESNET,
        params=1_727_962,
        macs=252.9e6,
        reported=_cifar10(6.43),
        source=TABLE_6,
        recipe="resnet_cifar_warmup",
        **CIFAR,
    ),
    Card(
        name="resnet1202",
        label="ResNet1202",
        title="ResNet-1202 for CIFAR",
        builder=CifarResNet,
        arguments={"depth": 1202},
        paper=RESNET,
        params=19_421_274,
        macs=2.83e9,
        reported=_cifar10(7.93),
        source=TABLE_6,
        recipe="resnet_cifar_warmup",
        **CIFAR,
    ),
    Card(
        name="plain20",
        label="Plain20",
        title="Plain-20, ResNet-20 without shortcuts (Fig. 6)",
        builder=CifarResNet,
        arguments={"depth": 20, "residual": False},
        paper=RESNET,
        params=269_722,
        macs=40.6e6,
        reported={},
        source="He et al. 2016, Fig. 6 (curves only)",
        recipe="resnet_cifar",
        notes="Same layers as the option-A ResNet, hence the same count.",
        **CIFAR,
    ),
    Card(
        name="plain56",
        label="Plain56",
        title="Plain-56, ResNet-56 without shortcuts (Fig. 6)",
        builder=CifarResNet,
        arguments={"depth": 56, "residual": False},
        paper=RESNET,
        params=853_018,
        macs=125.5e6,
        reported={},
        source="He et al. 2016, Fig. 6 (curves only)",
        recipe="resnet_cifar",
        notes="Same layers as the option-A ResNet, hence the same count.",
        **CIFAR,
    ),
    Card(
        name="sd_resnet110",
        label="StochasticDepthResNet110",
        title="ResNet-110 with stochastic depth, p_l linear from 1 to p_L = 0.5",
        builder=CifarResNet,
        arguments={"depth": 110},
        defaults={"p_L": 0.5},
        paper=SD,
        params=1_727_962,
        macs=252.9e6,
        reported={"cifar10+_test_error": 5.25, "cifar100+_test_error": 24.98},
        source=SD_SOURCE,
        recipe="stochastic_depth",
        notes=SD_NOTES,
        **CIFAR,
    ),
    Card(
        name="sd_resnet1202",
        label="StochasticDepthResNet1202",
        title="ResNet-1202 with stochastic depth, p_l linear from 1 to p_L = 0.5",
        builder=CifarResNet,
        arguments={"depth": 1202},
        defaults={"p_L": 0.5},
        paper=SD,
        params=19_421_274,
        macs=2.83e9,
        reported=_cifar10(4.91),
        source=SD_SOURCE,
        recipe="stochastic_depth",
        notes=SD_NOTES,
        **CIFAR,
    ),
    Card(
        name="preact_resnet164",
        label="PreActResNet164",
        title="Pre-activation bottleneck ResNet-164 for CIFAR",
        builder=PreActResNet,
        arguments={"depth": 164},
        paper=PREACT,
        params=1_703_258,
        macs=244.5e6,
        reported={"cifar10+_test_error": 5.46, "cifar100+_test_error": 24.33},
        source=PREACT_SOURCE,
        recipe="preact_cifar",
        **CIFAR,
    ),
    Card(
        name="preact_resnet1001",
        label="PreActResNet1001",
        title="Pre-activation bottleneck ResNet-1001 for CIFAR",
        builder=PreActResNet,
        arguments={"depth": 1001},
        paper=PREACT,
        params=10_327_706,
        macs=1.49e9,
        reported={"cifar10+_test_error": 4.92, "cifar10+_test_error_batch64": 4.62, "cifar100+_test_error": 22.71},
        source=PREACT_SOURCE,
        recipe="preact_cifar",
        **CIFAR,
    ),
    Card(
        name="resnet18",
        label="ResNet18",
        title="ResNet-18 for ImageNet",
        builder=ResNet,
        arguments={"depth": 18},
        paper=RESNET,
        params=11_689_512,
        macs=1.814e9,
        reported=_imagenet(69.758, 89.078),
        source=TV,
        **IMAGENET,
    ),
    Card(
        name="resnet34",
        label="ResNet34",
        title="ResNet-34 for ImageNet",
        builder=ResNet,
        arguments={"depth": 34},
        paper=RESNET,
        params=21_797_672,
        macs=3.664e9,
        reported=_imagenet(73.314, 91.420),
        source=TV,
        **IMAGENET,
    ),
    Card(
        name="resnet50",
        label="ResNet50",
        title="ResNet-50 for ImageNet",
        builder=ResNet,
        arguments={"depth": 50},
        paper=RESNET,
        params=25_583_592,
        macs=3.858e9,
        reported=_imagenet(74.9, 92.1),
        source=KERAS_IO,
        **IMAGENET,
    ),
    Card(
        name="resnet101",
        label="ResNet101",
        title="ResNet-101 for ImageNet",
        builder=ResNet,
        arguments={"depth": 101},
        paper=RESNET,
        params=44_601_832,
        macs=7.570e9,
        reported=_imagenet(76.4, 92.8),
        source=KERAS_IO,
        **IMAGENET,
    ),
    Card(
        name="resnet152",
        label="ResNet152",
        title="ResNet-152 for ImageNet",
        builder=ResNet,
        arguments={"depth": 152},
        paper=RESNET,
        params=60_268_520,
        macs=11.282e9,
        reported=_imagenet(76.6, 93.1),
        source=KERAS_IO,
        **IMAGENET,
    ),
    Card(
        name="resnet50_v2",
        label="ResNet50V2",
        title="Pre-activation ResNet-50 for ImageNet",
        builder=ResNetV2,
        arguments={"depth": 50},
        paper=PREACT,
        params=25_568_360,
        macs=3.48e9,
        reported={},
        source=KERAS_IO,
        **IMAGENET,
    ),
    Card(
        name="resnet101_v2",
        label="ResNet101V2",
        title="Pre-activation ResNet-101 for ImageNet",
        builder=ResNetV2,
        arguments={"depth": 101},
        paper=PREACT,
        params=44_577_896,
        macs=7.194e9,
        reported={},
        source=KERAS_IO,
        **IMAGENET,
    ),
    Card(
        name="resnet152_v2",
        label="ResNet152V2",
        title="Pre-activation ResNet-152 for ImageNet",
        builder=ResNetV2,
        arguments={"depth": 152},
        paper=PREACT,
        params=60_236_904,
        macs=10.907e9,
        reported={"imagenet_top1_err_320crop": 21.1, "imagenet_top5_err_320crop": 5.5},
        source="He et al. ECCV 2016 [P*]",
        **IMAGENET,
    ),
)
NAMED = register_all(CARDS)
ResNet20, ResNet32, ResNet44, ResNet56 = NAMED["ResNet20"], NAMED["ResNet32"], NAMED["ResNet44"], NAMED["ResNet56"]
ResNet110, ResNet1202 = NAMED["ResNet110"], NAMED["ResNet1202"]
Plain20, Plain56 = NAMED["Plain20"], NAMED["Plain56"]
StochasticDepthResNet110 = NAMED["StochasticDepthResNet110"]
StochasticDepthResNet1202 = NAMED["StochasticDepthResNet1202"]
PreActResNet164, PreActResNet1001 = NAMED["PreActResNet164"], NAMED["PreActResNet1001"]
ResNet18, ResNet34, ResNet50 = NAMED["ResNet18"], NAMED["ResNet34"], NAMED["ResNet50"]
ResNet101, ResNet152 = NAMED["ResNet101"], NAMED["ResNet152"]
ResNet50V2, ResNet101V2, ResNet152V2 = NAMED["ResNet50V2"], NAMED["ResNet101V2"], NAMED["ResNet152V2"]
