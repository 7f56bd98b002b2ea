"""ShuffleNet V2 (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018, Table 5 and Fig. 3(c, d)) in torchvision's layout, so its weights convert."""

from __future__ import annotations

import keras

from keras_cnn import applications
from keras_cnn.layers import HE_FAN_OUT, TORCH_BN, ChannelShuffle, Style
from keras_cnn.registry import Paper, register, variant

PAPER_V2 = Paper(title="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
                 authors="Ma, Zhang, Zheng, Sun", venue="ECCV", year=2018)  # fmt: skip

REPEATS = (4, 8, 4)  # Table 5: units in stages 2, 3, 4
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
    x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="valid" if stride > 1 else "same", use_bias=False,
                                     name=f"{name}_conv")(x)  # fmt: skip
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


def ShuffleNetV2(
    width: float = 1.0,
    *,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str | None = None,
) -> keras.Model:
    """ShuffleNet V2 `width`x (0.5, 1, 1.5, 2; Table 5 of Ma et al., ECCV 2018): 3x3/2 conv, 3x3/2 max pool,
    three stages of shuffle units (4, 8, 4), 1x1 conv5, global pool, classifier. 2,278,604 trainable at 1x."""
    if width not in WIDTHS:
        raise ValueError(f"ShuffleNetV2 width must be one of {tuple(WIDTHS)}; received width={width!r}.")
    img_input = applications.model_input(
        input_tensor, input_shape, include_top=include_top, weights=weights, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, default_size=224, min_size=32,
    )  # fmt: skip
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
    return applications.finish(
        img_input, x, input_tensor=input_tensor, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, weights=weights, name=name or f"shufflenet_v2_x{width}",
        stages=stages,
    )  # fmt: skip


# width: (trainable params, MACs, torchvision acc@1) [TV]
_V2 = {0.5: (1_366_792, 0.04e9, 60.552), 1.0: (2_278_604, 0.145e9, 69.362), 1.5: (3_503_624, 0.30e9, 72.996),
       2.0: (7_393_996, 0.58e9, 76.230)}  # fmt: skip
ShuffleNetV2x0_5, ShuffleNetV2x1_0, ShuffleNetV2x1_5, ShuffleNetV2x2_0 = (
    variant(ShuffleNetV2, f"ShuffleNetV2x{str(w).replace('.', '_')}", f"ShuffleNet V2 {w}x (Ma et al. 2018, Table 5).",
            {"width": w}, name=f"shufflenet_v2_x{str(w).replace('.', '_')}")
    for w in WIDTHS
)  # fmt: skip
for _builder, (_width, (_params, _macs, _acc)) in zip(
    (ShuffleNetV2x0_5, ShuffleNetV2x1_0, ShuffleNetV2x1_5, ShuffleNetV2x2_0), _V2.items(), strict=True
):
    register(
        _builder.__name__.replace("ShuffleNetV2x", "shufflenet_v2_x"), paper=PAPER_V2, params=_params, macs=_macs,
        reported={"imagenet_top1_acc": _acc}, source="torchvision weights [TV]", recipe="torchvision_imagenet",
    )(_builder)  # fmt: skip
