"""DenseNet and DenseNet-BC (Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017, Table 1 (ImageNet) and Table 2 (CIFAR)), as in liuzhuang13/DenseNet."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers import HE_FAN_OUT, KERAS_BN, TORCH_BN, AveragePooling2D, Style
from keras_cnn.layers.recompute import RecomputedBottleneck
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(
    title="Densely Connected Convolutional Networks",
    authors="Huang, Liu, van der Maaten, Weinberger",
    venue="CVPR",
    year=2017,
)


def dense_block(x, n: int, k: int, style: Style, *, bottleneck: bool, memory_efficient: bool, name: str):
    """n composite layers H_l (Sec. 3): [BN-ReLU-1x1 conv (4k)-] BN-ReLU-3x3 conv (k), each fed the
    concatenation of every earlier map in the block (input first). Memory-efficient mode keeps the list of
    maps and recomputes each layer's concat-BN-ReLU-conv in the backward pass, with the bottleneck's BN-ReLU
    too unless dropout sits between them (a recomputed dropout would draw a new mask)."""
    features = [x]
    for i in range(1, n + 1):
        label = f"{name}_block{i}"
        first_filters, first_kernel = (4 * k, 1) if bottleneck else (k, 3)
        first_conv = f"{label}_1" if bottleneck else f"{label}_2"
        fused_bn = memory_efficient and bottleneck and not style.dropout_rate
        if memory_efficient:
            y = RecomputedBottleneck(
                first_filters,
                first_kernel,
                bn_name=f"{label}_0_bn",
                conv_name=f"{first_conv}_conv",
                bn=style.bn,
                init=style.init,
                post_bn_name=f"{label}_1_bn" if fused_bn else None,
                name=f"{label}_recomputed",
            )(features)
        else:
            y = style.conv(style.norm_act(x, f"{label}_0"), first_filters, first_kernel, 1, first_conv)
        if bottleneck:
            if not fused_bn:
                y = style.norm_act(style.dropout(y, f"{label}_1"), f"{label}_1")
            y = style.conv(y, k, 3, 1, f"{label}_2")
        y = style.dropout(y, f"{label}_2")
        features.append(y)
        if not memory_efficient:
            x = keras.layers.Concatenate(name=f"{label}_concat")([x, y])
    if memory_efficient:
        x = keras.layers.Concatenate(name=f"{name}_concat")(features)
    return x


def transition(x, theta: float, style: Style, name: str):
    """BN-ReLU-1x1 conv to floor(theta * c) maps, then 2x2 average pooling (Sec. 3, compression)."""
    x = style.norm_act(x, name)
    x = style.conv(x, int(x.shape[-1] * theta), 1, 1, name)
    x = style.dropout(x, name)
    return AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)  # in traced graphs: pools, then convolves


@applications.builder()
def DenseNet(
    contract: Contract,
    *,
    blocks: Sequence[int] = (6, 12, 24, 16),
    growth_rate: int = 32,
    theta: float = 0.5,
    bottleneck: bool = True,
    stem: str = "imagenet",
    stem_channels: int | None = None,
    dropout_rate: float = 0.0,
    memory_efficient: bool = False,
) -> keras.Model:
    """A DenseNet of dense blocks with `blocks[i]` layers of growth rate k = `growth_rate` (Huang et al. 2017).

    stem "imagenet": 7x7/2 conv with `stem_channels` (default 2k) maps, BN-ReLU, 3x3/2 max pool, with
    keras.applications' layer names, order and BN constants, so its DenseNet121/169/201 files load.
    stem "cifar": one 3x3 conv with `stem_channels` (16 for DenseNet, 2k for DenseNet-BC) and Torch BN
    constants. theta is the transition compression, bottleneck adds the 1x1 (4k) conv (the B in BC),
    dropout_rate follows each conv but the first (the paper's no-augmentation runs use 0.2).
    memory_efficient=True recomputes each layer's concat-BN-ReLU-conv(-BN-ReLU) in the backward pass (Pleiss et al.
    2017): same outputs and gradients, training memory linear instead of quadratic in depth.
    """
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' or 'cifar'; received stem={stem!r}.")
    if not blocks or any(not isinstance(n, int) or n < 1 for n in blocks):
        raise ValueError(f"blocks must be a non-empty sequence of positive layer counts; received {blocks!r}.")
    if not isinstance(growth_rate, int) or growth_rate < 1:
        raise ValueError(f"growth_rate k must be a positive integer; received {growth_rate!r}.")
    if not 0.0 < theta <= 1.0:
        raise ValueError(f"Compression theta must be in (0, 1]; received theta={theta!r}.")
    imagenet = stem == "imagenet"
    halvings = len(blocks) - 1 + (2 if imagenet else 0)  # one per transition (+ the stem's two)
    img_input = contract.input(default_size=224 if imagenet else 32, min_size=2**halvings)
    style = Style(bn=KERAS_BN if imagenet else TORCH_BN, init={} if imagenet else HE_FAN_OUT, dropout_rate=dropout_rate)
    stem_channels = stem_channels or 2 * growth_rate
    if imagenet:
        stem_map, x = style.imagenet_stem(img_input, stem_channels, pool_name="pool1")
        stages = [stem_map]
    else:
        x = style.conv(img_input, stem_channels, 3, 1, "conv1")
        stages = [x]
    for b, n in enumerate(blocks, start=2):
        x = dense_block(
            x, n, growth_rate, style, bottleneck=bottleneck, memory_efficient=memory_efficient, name=f"conv{b}"
        )
        if b < len(blocks) + 1:
            stages.append(x)
            x = transition(x, theta, style, f"pool{b}")
    x = style.norm_act(x, "")
    stages.append(x)
    weights = contract.weights
    if not memory_efficient or weights is None:
        return contract.finish(img_input, x, stages=stages, name="densenet")
    model = dataclasses.replace(contract, weights=None).finish(img_input, x, stages=stages, name="densenet")
    plain = {
        "blocks": blocks,
        "growth_rate": growth_rate,
        "theta": theta,
        "bottleneck": bottleneck,
        "stem": stem,
        "stem_channels": stem_channels,
        "dropout_rate": dropout_rate,
    }
    arguments = contract.arguments(input_tensor=None, input_shape=tuple(img_input.shape[1:]), name=model.name)
    _load_into_memory_efficient(model, weights, lambda: DenseNet(**arguments, **plain))
    return model


def _load_into_memory_efficient(model: keras.Model, weights, build_plain) -> None:
    """A file saved from a memory-efficient model loads as it is; a normal-mode file (ours or
    keras.applications') loads into the plain twin, whose weights come in the same flat order."""
    try:
        with warnings.catch_warnings():  # a normal-mode file warns about every container it cannot match
            warnings.simplefilter("ignore")
            model.load_weights(os.fspath(weights))
    except ValueError:
        model.set_weights(build_plain().get_weights())


@applications.builder(classes=10)
def DenseNetBC(
    contract: Contract,
    *,
    L: int = 100,
    k: int = 12,
    theta: float = 0.5,
    bottleneck: bool = True,
    dropout_rate: float = 0.0,
    memory_efficient: bool = False,
) -> keras.Model:
    """CIFAR DenseNet of depth L and growth rate k (Huang et al. 2017, Sec. 4 and Table 2): three dense blocks
    of (L - 4) / 3 convolutions each ((L - 4) / 6 bottleneck layers when `bottleneck`), transitions with
    compression theta, a 3x3 stem of 16 maps (plain DenseNet) or 2k (DenseNet-B/C/BC). Defaults:
    DenseNet-BC (L=100, k=12, theta=0.5), 769,162 trainable at 10 classes.
    """
    convs_per_layer = 2 if bottleneck else 1
    if not isinstance(L, int) or (L - 4) % (3 * convs_per_layer) or L < 4 + 3 * convs_per_layer:
        raise ValueError(
            f"DenseNet depth L must be 3 * {convs_per_layer} * n + 4 with n >= 1 "
            f"({'100, 190, 250' if bottleneck else '40, 100'}); received L={L!r}."
        )
    n = (L - 4) // (3 * convs_per_layer)
    plain = not bottleneck and theta == 1.0
    name = contract.name or (f"densenet{L}" if plain else f"densenet_bc_{L}_{k}")
    return DenseNet(
        **contract.arguments(name=name),
        blocks=(n, n, n),
        growth_rate=k,
        theta=theta,
        bottleneck=bottleneck,
        stem="cifar",
        stem_channels=16 if plain else 2 * k,
        dropout_rate=dropout_rate,
        memory_efficient=memory_efficient,
    )


# --- one card per registered name: the published figures (Huang et al. 2017, Tables 1-2) ---------
CIFAR = {
    "input_size": (32, 32, 3),
    "classes": 10,
    "min_size": 4,
    "recipe": "densenet_cifar",
    "paper": PAPER,
    "source": "[R:liuzhuang13/DenseNet] README / paper Table 2",
    "builder": DenseNetBC,
}
IMAGENET = {"paper": PAPER, "min_size": 32, "recipe": "densenet_imagenet", "builder": DenseNet}
KERAS_IO = "keras.io applications table [K]"
PLAIN = {"theta": 1.0, "bottleneck": False}  # DenseNet without B and C


def _errors(c10: float | None, c10_aug: float, c100: float | None, c100_aug: float) -> dict[str, float]:
    figures = {
        "cifar10_test_error": c10,
        "cifar10+_test_error": c10_aug,
        "cifar100_test_error": c100,
        "cifar100+_test_error": c100_aug,
    }
    return {key: value for key, value in figures.items() if value is not None}


def _imagenet(blocks: tuple[int, ...]) -> dict:
    return {"blocks": blocks, "growth_rate": 32}


CARDS = (
    Card(
        name="densenet40",
        label="DenseNet40",
        title="DenseNet (L=40, k=12) for CIFAR, 16-map stem (Table 2)",
        arguments={"L": 40, "k": 12, **PLAIN},
        params=1_019_722,
        macs=265e6,
        reported=_errors(7.00, 5.24, 27.55, 24.42),
        **CIFAR,
    ),
    Card(
        name="densenet100",
        label="DenseNet100",
        title="DenseNet (L=100, k=12) for CIFAR (Table 2)",
        arguments={"L": 100, "k": 12, **PLAIN},
        params=6_979_642,
        macs=1.77e9,
        reported=_errors(5.77, 4.10, 23.79, 20.20),
        notes="Published as 7.0 M; computed 6.980 M (the paper rounds).",
        **CIFAR,
    ),
    Card(
        name="densenet_bc",
        params=769_162,
        macs=288e6,
        reported=_errors(5.92, 4.51, 24.15, 22.27),
        notes="Alias of densenet_bc_100_12.",
        **CIFAR,
    ),
    Card(name="densenet_bc_100_12", params=769_162, macs=288e6, reported=_errors(5.92, 4.51, 24.15, 22.27), **CIFAR),
    Card(
        name="densenet_bc_250_24",
        arguments={"L": 250, "k": 24},
        params=15_324_406,
        macs=5.42e9,
        reported=_errors(5.19, 3.62, 19.64, 17.60),
        **CIFAR,
    ),
    Card(
        name="densenet_bc_190_40",
        arguments={"L": 190, "k": 40},
        params=25_624_430,
        macs=9.30e9,
        reported=_errors(None, 3.46, None, 17.18),
        **CIFAR,
    ),
    Card(
        name="densenet121",
        label="DenseNet121",
        title="DenseNet-121 (k=32, theta=0.5, bottleneck) for ImageNet",
        arguments=_imagenet((6, 12, 24, 16)),
        params=7_978_856,
        macs=2.834e9,
        reported={"imagenet_top1_acc": 75.0, "imagenet_top5_acc": 92.3},
        source=KERAS_IO,
        **IMAGENET,
    ),
    Card(
        name="densenet169",
        label="DenseNet169",
        title="DenseNet-169 (k=32, theta=0.5, bottleneck) for ImageNet",
        arguments=_imagenet((6, 12, 32, 32)),
        params=14_149_480,
        macs=3.360e9,
        reported={"imagenet_top1_acc": 76.2, "imagenet_top5_acc": 93.2},
        source=KERAS_IO,
        **IMAGENET,
    ),
    Card(
        name="densenet201",
        label="DenseNet201",
        title="DenseNet-201 (k=32, theta=0.5, bottleneck) for ImageNet",
        arguments=_imagenet((6, 12, 48, 32)),
        params=20_013_928,
        macs=4.291e9,
        reported={"imagenet_top1_acc": 77.3, "imagenet_top5_acc": 93.6},
        source=KERAS_IO,
        **IMAGENET,
    ),
    Card(
        name="densenet264",
        label="DenseNet264",
        title="DenseNet-264 (k=32, theta=0.5, bottleneck) for ImageNet",
        arguments=_imagenet((6, 12, 64, 48)),
        params=33_337_704,
        macs=5.75e9,
        reported={"imagenet_top1_err": 22.15, "imagenet_top1_err_10crop": 20.80},
        source="paper [P*]",
        **IMAGENET,
    ),
)
NAMED = register_all(CARDS)
DenseNet40, DenseNet100 = NAMED["DenseNet40"], NAMED["DenseNet100"]
DenseNet121, DenseNet169 = NAMED["DenseNet121"], NAMED["DenseNet169"]
DenseNet201, DenseNet264 = NAMED["DenseNet201"], NAMED["DenseNet264"]
