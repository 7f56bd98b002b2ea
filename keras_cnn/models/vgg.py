"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015, Table 1 configurations A, B, D, E)."""

from __future__ import annotations

import keras

from keras_cnn import applications
from keras_cnn.layers.norm import BatchNormalization
from keras_cnn.registry import Paper, register, variant

PAPER = Paper(
    title="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    authors="Simonyan, Zisserman",
    venue="ICLR",
    year=2015,
)

#: Table 1: 3x3 convolutions per block for configurations A (11), B (13), D (16) and E (19).
CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)


@applications.keras_order
def VGG(
    depth: int = 16,
    *,
    batch_norm: bool = False,
    dropout_rate: float = 0.5,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str | None = None,
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
    img_input = applications.model_input(
        input_tensor, input_shape, include_top=include_top, weights=weights, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, default_size=224, min_size=32, flatten_head=True,
    )  # fmt: skip
    x, stages = img_input, []
    for b, (convs, width) in enumerate(zip(CONFIGS[depth], WIDTHS, strict=True), start=1):
        for i in range(1, convs + 1):
            label = f"block{b}_conv{i}"
            if batch_norm:
                x = keras.layers.Conv2D(width, 3, padding="same", name=label)(x)
                x = BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{label}_bn")(x)
                x = keras.layers.Activation("relu", name=f"{label}_relu")(x)
            else:
                x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=label)(x)
        stages.append(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)

    def top(x, classes, classifier_activation):
        return applications.mlp_classifier(
            x, classes, classifier_activation, widths=(4096, 4096), dropout_rate=dropout_rate
        )

    return applications.finish(
        img_input, x, input_tensor=input_tensor, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, weights=weights, stages=stages, top=top,
        name=name or f"vgg{depth}{'_bn' if batch_norm else ''}",
    )  # fmt: skip


# depth: (params, MACs, torchvision acc@1, params with BN, acc@1 with BN): torchvision's cards [TV], computed [C].
_FIGURES = {
    11: (132_863_336, 7.61e9, 69.02, 132_868_840, 70.37),
    13: (133_047_848, 11.31e9, 69.93, 133_053_736, 71.59),
    16: (138_357_544, 15.47e9, 71.59, 138_365_992, 73.36),
    19: (143_667_240, 19.63e9, 72.38, 143_678_248, 74.22),
}
VGG11, VGG13, VGG16, VGG19 = (
    variant(VGG, f"VGG{d}", f"VGG-{d}, configuration {'ABDE'[i]} of Simonyan & Zisserman (ICLR 2015, Table 1).",
            {"depth": d}, name=f"vgg{d}")
    for i, d in enumerate(CONFIGS)
)  # fmt: skip
for _depth, _builder in zip(CONFIGS, (VGG11, VGG13, VGG16, VGG19), strict=True):
    _params, _macs, _acc, _params_bn, _acc_bn = _FIGURES[_depth]
    register(
        f"vgg{_depth}", paper=PAPER, params=_params, macs=_macs, reported={"imagenet_top1_acc": _acc},
        source="torchvision weights [TV]", recipe="vgg",
    )(_builder)  # fmt: skip
    register(
        f"vgg{_depth}_bn", paper=PAPER, params=_params_bn, macs=_macs, reported={"imagenet_top1_acc": _acc_bn},
        source="torchvision weights [TV]; BN is not in the paper", recipe="torchvision_imagenet",
        batch_norm=True, name=f"vgg{_depth}_bn",
    )(_builder)  # fmt: skip
