"""ShuffleNet (Zhang, Zhou, Lin & Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
Mobile Devices", CVPR 2018, Table 1 and Fig. 2) and ShuffleNet V2 (Ma et al., "ShuffleNet V2: Practical
Guidelines for Efficient CNN Architecture Design", ECCV 2018, Table 5 and Fig. 3(c, d)) in torchvision's
layout, so its weights convert."""

from __future__ import annotations

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers import HE_FAN_OUT, TORCH_BN, ChannelShuffle, Style
from keras_cnn.registry import Card, Paper, register_all

PAPER_V1 = Paper(
    title="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
    authors="Zhang, Zhou, Lin, Sun",
    venue="CVPR",
    year=2018,
)
PAPER_V2 = Paper(
    title="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    authors="Ma, Zhang, Zheng, Sun",
    venue="ECCV",
    year=2018,
)

REPEATS = (4, 8, 4)  # Table 1 (V1) and Table 5 (V2): units in stages 2, 3, 4
#: Table 1 of Zhang et al.: output channels of stages 2-4 per number of groups g, at width multiplier s = 1.
V1_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}
#: Table 5: output channels of conv1, stages 2-4 and conv5 per width multiplier.
WIDTHS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


def _depthwise(x, stride: int, style: Style, name: str):
    """3x3 depthwise convolution + BN (no ReLU after it, Fig. 3), padded like PyTorch."""
    if stride > 1:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    x = keras.layers.DepthwiseConv2D(
        3, strides=stride, padding="valid" if stride > 1 else "same", use_bias=False, name=f"{name}_conv"
    )(x)
    return style.norm_act(x, name, act=False)


def shuffle_unit(x, out_channels: int, stride: int, style: Style, name: str):
    """Fig. 3(c) (stride 1): split the channels in half, transform one half (1x1, 3x3 depthwise, 1x1), concat,
    shuffle. Fig. 3(d) (stride 2): both branches see all channels and each halves the resolution."""
    half = out_channels // 2

    def transform(t, branch: str):
        t = style.norm_act(style.conv(t, half, 1, 1, f"{name}_{branch}_pw1"), f"{name}_{branch}_pw1")
        t = _depthwise(t, stride, style, f"{name}_{branch}_dw")
        return style.norm_act(style.conv(t, half, 1, 1, f"{name}_{branch}_pw2"), f"{name}_{branch}_pw2")

    if stride == 1:
        kept, changed = x[..., :half], x[..., half:]
    else:
        kept = _depthwise(x, stride, style, f"{name}_branch1_dw")
        kept = style.norm_act(style.conv(kept, half, 1, 1, f"{name}_branch1_pw"), f"{name}_branch1_pw")
        changed = x
    x = keras.layers.Concatenate(name=f"{name}_concat")([kept, transform(changed, "branch2")])
    return ChannelShuffle(2, name=f"{name}_shuffle")(x)


def group_unit(x, out_channels: int, stride: int, g: int, style: Style, name: str, *, group_first: bool = True):
    """Fig. 2(b) (stride 1) and 2(c) (stride 2): 1x1 group conv to out/4 (BN, ReLU), channel shuffle, 3x3
    depthwise conv (BN), 1x1 group conv (BN); added to the input, or for stride 2 concatenated with a 3x3/2
    average pool of it (the branch then gives out - in channels); ReLU. Stage 2's first 1x1 is not grouped
    (Sec. 3.3: too few input channels)."""
    branch_out = out_channels - x.shape[-1] if stride > 1 else out_channels
    mid = out_channels // 4
    y = style.conv(x, mid, 1, 1, f"{name}_gconv1", groups=g if group_first else 1)
    y = style.norm_act(y, f"{name}_gconv1")
    if g > 1:
        y = ChannelShuffle(g, name=f"{name}_shuffle")(y)
    y = _depthwise(y, stride, style, f"{name}_dw")
    y = style.norm_act(style.conv(y, branch_out, 1, 1, f"{name}_gconv2", groups=g), f"{name}_gconv2", act=False)
    if stride == 1:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    else:
        shortcut = keras.layers.ZeroPadding2D(1, name=f"{name}_shortcut_pad")(x)  # averages count the zeros
        shortcut = keras.layers.AveragePooling2D(3, strides=2, name=f"{name}_shortcut_pool")(shortcut)
        y = keras.layers.Concatenate(name=f"{name}_concat")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


@applications.builder()
def ShuffleNet(
    contract: Contract,
    *,
    g: int = 3,
    s: float = 1.0,
) -> keras.Model:
    """ShuffleNet s x (g = `g`) as in Table 1 of Zhang et al. (CVPR 2018): 3x3/2 conv of 24·s, 3x3/2 max pool,
    stages of 4, 8, 4 units, global pool, classifier. 1x, g=3: 1,865,728 trainable and 137.5 M MACs (the
    authors' code: 1.9 M, 138 M; its classifier has no bias, 1,000 fewer); g=8: 2,434,768 (2.4 M)."""
    if g not in V1_WIDTHS:
        raise ValueError(f"ShuffleNet groups g must be one of {tuple(V1_WIDTHS)}; received g={g!r}.")
    widths = [int(c * s) for c in V1_WIDTHS[g]]
    inputs = [int(24 * s), *widths[:-1]]
    if s <= 0 or any((w // 4) % g or (w - i) % g for w, i in zip(widths, inputs, strict=True)):
        raise ValueError(f"Width multiplier s={s!r} gives stage widths {widths} that g={g} groups cannot split.")
    img_input = contract.input(default_size=224, min_size=32)
    style = Style(bn=TORCH_BN, init=HE_FAN_OUT)
    x = style.norm_act(style.conv(img_input, int(24 * s), 3, 2, "conv1"), "conv1")
    stages = [x]
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (repeats, out_channels) in enumerate(zip(REPEATS, widths, strict=True), start=2):
        for b in range(1, repeats + 1):
            x = group_unit(
                x,
                out_channels,
                2 if b == 1 else 1,
                g,
                style,
                f"stage{stage}_block{b}",
                group_first=not (stage == 2 and b == 1),
            )
        stages.append(x)
    return contract.finish(img_input, x, stages=stages, name=f"shufflenet_g{g}_x{s}")


@applications.builder()
def ShuffleNetV2(
    contract: Contract,
    *,
    width: float = 1.0,
) -> keras.Model:
    """ShuffleNet V2 `width`x (0.5, 1, 1.5, 2; Table 5 of Ma et al., ECCV 2018): 3x3/2 conv, 3x3/2 max pool,
    three stages of shuffle units (4, 8, 4), 1x1 conv5, global pool, classifier. 2,278,604 trainable at 1x."""
    if width not in WIDTHS:
        raise ValueError(f"ShuffleNetV2 width must be one of {tuple(WIDTHS)}; received width={width!r}.")
    img_input = contract.input(default_size=224, min_size=32)
    style = Style(bn=TORCH_BN, init=HE_FAN_OUT)
    channels = WIDTHS[width]
    x = style.norm_act(style.conv(img_input, channels[0], 3, 2, "conv1"), "conv1")
    stages = [x]
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)  # after a ReLU, zeros pad as PyTorch's -inf
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for s, (repeats, out_channels) in enumerate(zip(REPEATS, channels[1:4], strict=True), start=2):
        for b in range(1, repeats + 1):
            x = shuffle_unit(x, out_channels, 2 if b == 1 else 1, style, f"stage{s}_block{b}")
        stages.append(x)
    x = style.norm_act(style.conv(x, channels[4], 1, 1, "conv5"), "conv5")
    stages[-1] = x
    return contract.finish(img_input, x, name=f"shufflenet_v2_x{width}", stages=stages)


# --- one card per registered name: torchvision's V2 weights [TV]; V1 from the paper's Table 2 [M] ---------------
V2 = {
    "paper": PAPER_V2,
    "builder": ShuffleNetV2,
    "min_size": 32,
    "source": "torchvision weights [TV]",
    "recipe": "torchvision_imagenet",
}
V1 = {
    "paper": PAPER_V1,
    "builder": ShuffleNet,
    "min_size": 32,
    "recipe": "torchvision_imagenet",
    "source": "Zhang et al. 2018 Table 2 [M]; the authors' code counts 1.9 M / 2.4 M [R:megvii]",
    "notes": "Paper recipe: SGD, lr 0.5 linearly decayed to 0 over 3e5 iterations, batch 1024, weight decay 4e-5.",
}
CARDS = (
    Card(
        name="shufflenet_v2_x0_5",
        label="ShuffleNetV2x0_5",
        title="ShuffleNet V2 0.5x (Table 5)",
        arguments={"width": 0.5},
        params=1_366_792,
        macs=0.04e9,
        reported={"imagenet_top1_acc": 60.552},
        **V2,
    ),
    Card(
        name="shufflenet_v2_x1_0",
        label="ShuffleNetV2x1_0",
        title="ShuffleNet V2 1x (Table 5)",
        arguments={"width": 1.0},
        params=2_278_604,
        macs=0.145e9,
        reported={"imagenet_top1_acc": 69.362},
        **V2,
    ),
    Card(
        name="shufflenet_v2_x1_5",
        label="ShuffleNetV2x1_5",
        title="ShuffleNet V2 1.5x (Table 5)",
        arguments={"width": 1.5},
        params=3_503_624,
        macs=0.30e9,
        reported={"imagenet_top1_acc": 72.996},
        **V2,
    ),
    Card(
        name="shufflenet_v2_x2_0",
        label="ShuffleNetV2x2_0",
        title="ShuffleNet V2 2x (Table 5)",
        arguments={"width": 2.0},
        params=7_393_996,
        macs=0.58e9,
        reported={"imagenet_top1_acc": 76.230},
        **V2,
    ),
    # the paper's MFLOPs are MACs
    Card(
        name="shufflenet_v1",
        label="ShuffleNetV1",
        title="ShuffleNet 1x, g=3 (Table 1)",
        defaults={"g": 3, "s": 1.0},
        params=1_865_728,
        macs=140e6,
        reported={"imagenet_top1_err": 32.6},
        **V1,
    ),
    Card(
        name="shufflenet_v1_g8",
        label="ShuffleNetV1G8",
        title="ShuffleNet 1x, g=8 (Table 1)",
        defaults={"g": 8, "s": 1.0},
        params=2_434_768,
        macs=140e6,
        reported={"imagenet_top1_err": 32.0},
        **V1,
    ),
)
NAMED = register_all(CARDS)
ShuffleNetV2x0_5, ShuffleNetV2x1_0 = NAMED["ShuffleNetV2x0_5"], NAMED["ShuffleNetV2x1_0"]
ShuffleNetV2x1_5, ShuffleNetV2x2_0 = NAMED["ShuffleNetV2x1_5"], NAMED["ShuffleNetV2x2_0"]
ShuffleNetV1, ShuffleNetV1G8 = NAMED["ShuffleNetV1"], NAMED["ShuffleNetV1G8"]
