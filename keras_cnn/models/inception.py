"""The Inception family in keras.applications' layout, so its weight files load and the outputs match:
Inception-v3 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016, Table 1
and Figs. 5-7) and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and
the Impact of Residual Connections on Learning", AAAI 2017, Figs. 15-19)."""

from __future__ import annotations

import keras

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers.conv import Conv2D
from keras_cnn.layers.norm import BatchNormalization
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(
    title="Rethinking the Inception Architecture for Computer Vision", authors="Szegedy et al.", venue="CVPR", year=2016
)
PAPER_V4 = Paper(
    title="Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
    authors="Szegedy, Ioffe, Vanhoucke, Alemi",
    venue="AAAI",
    year=2017,
)


def _conv_bn(x, filters: int, kernel: tuple[int, int], name: str | None = None, *, stride: int = 1, padding="same"):
    """Convolution without bias, BN without scale (the ReLU follows), ReLU: named `{name}`, `{name}_bn`,
    `{name}_ac` (Inception-ResNet-v2's named ones), or, as keras.applications leaves most of them, unnamed:
    Keras then numbers them in creation order (`conv2d`, `conv2d_1`, ... in a fresh session, the names of
    keras.applications' model) and never reuses a name already taken, a user's layers' included."""
    names = (name, f"{name}_bn", f"{name}_ac") if name else (None, None, None)
    x = Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False, name=names[0])(x)
    x = BatchNormalization(scale=False, name=names[1])(x)
    return keras.layers.Activation("relu", name=names[2])(x)


def stem(x) -> tuple:
    """Table 1's first rows (299 -> 35): 3x3/2, 3x3 and 3x3 (64) convolutions, 3x3/2 max pool, 1x1 (80) and 3x3
    (192) convolutions, 3x3/2 max pool. Returns the 35x35 map and the two stage outputs before the pools."""
    x = _conv_bn(x, 32, (3, 3), stride=2, padding="valid")
    x = _conv_bn(x, 32, (3, 3), padding="valid")
    first = _conv_bn(x, 64, (3, 3))
    x = keras.layers.MaxPooling2D(3, strides=2)(first)
    x = _conv_bn(x, 80, (1, 1), padding="valid")
    second = _conv_bn(x, 192, (3, 3), padding="valid")
    return keras.layers.MaxPooling2D(3, strides=2)(second), [first, second]


def _avg_pool_branch(x, filters: int):
    x = keras.layers.AveragePooling2D(3, strides=1, padding="same")(x)
    return _conv_bn(x, filters, (1, 1))


def module_a(x, pool_filters: int, name: str, *, filters_1x1: int = 64):
    """Fig. 5 (the 5x5 kept as in the released model): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1; 35x35
    (Inception-ResNet-v2's mixed_5b with a 96-map 1x1)."""
    b1 = _conv_bn(x, filters_1x1, (1, 1))
    b5 = _conv_bn(_conv_bn(x, 48, (1, 1)), 64, (5, 5))
    b3 = _conv_bn(_conv_bn(_conv_bn(x, 64, (1, 1)), 96, (3, 3)), 96, (3, 3))
    return keras.layers.Concatenate(name=name)([b1, b5, b3, _avg_pool_branch(x, pool_filters)])


#: The grid reductions by output name: per path, the (filters, kernel) of each convolution.
REDUCTIONS = {
    "mixed3": [[(384, (3, 3))], [(64, (1, 1)), (96, (3, 3)), (96, (3, 3))]],  # Inception-v3, 35 -> 17 (Fig. 10)
    "mixed8": [[(192, (1, 1)), (320, (3, 3))], [(192, (1, 1)), (192, (1, 7)), (192, (7, 1)), (192, (3, 3))]],  # 17 -> 8
    "mixed_6a": [[(384, (3, 3))], [(256, (1, 1)), (256, (3, 3)), (384, (3, 3))]],  # Inception-ResNet-v2 (Fig. 7)
    "mixed_7a": [
        [(256, (1, 1)), (384, (3, 3))],
        [(256, (1, 1)), (288, (3, 3))],
        [(256, (1, 1)), (288, (3, 3)), (320, (3, 3))],
    ],  # Fig. 18
}


def _conv_path(x, path, *, reduce: bool = False):
    """The (filters, kernel) convolutions of one branch in order, "same" and stride 1; with `reduce` the last
    one is stride 2 and "valid" (a grid reduction's)."""
    for i, (filters, kernel) in enumerate(path):
        last = reduce and i == len(path) - 1
        x = _conv_bn(x, filters, kernel, stride=2 if last else 1, padding="valid" if last else "same")
    return x


def reduction(x, name: str):
    """Grid reduction `name` of `REDUCTIONS`: convolution paths whose last convolution is 3x3/2 "valid", beside
    3x3/2 max pooling, concatenated."""
    branches = [_conv_path(x, path, reduce=True) for path in REDUCTIONS[name]]
    return keras.layers.Concatenate(name=name)([*branches, keras.layers.MaxPooling2D(3, strides=2)(x)])


def module_c(x, c7: int, name: str):
    """Fig. 6: 7x7 factorized into 1x7 and 7x1 with `c7` inner channels; 17x17."""
    b1 = _conv_bn(x, 192, (1, 1))
    b7 = _conv_bn(x, c7, (1, 1))
    b7 = _conv_bn(_conv_bn(b7, c7, (1, 7)), 192, (7, 1))
    bd = _conv_bn(x, c7, (1, 1))
    for kernel in ((7, 1), (1, 7), (7, 1)):
        bd = _conv_bn(bd, c7, kernel)
    bd = _conv_bn(bd, 192, (1, 7))
    return keras.layers.Concatenate(name=name)([b1, b7, bd, _avg_pool_branch(x, 192)])


def module_e(x, index: int):
    """Fig. 7: the 3x3s split into parallel 1x3 and 3x1 (expanded filter bank); 8x8."""
    b1 = _conv_bn(x, 320, (1, 1))
    b3 = _conv_bn(x, 384, (1, 1))
    b3 = keras.layers.Concatenate(name=f"mixed9_{index}")([_conv_bn(b3, 384, (1, 3)), _conv_bn(b3, 384, (3, 1))])
    bd = _conv_bn(_conv_bn(x, 448, (1, 1)), 384, (3, 3))
    bd = keras.layers.Concatenate()([_conv_bn(bd, 384, (1, 3)), _conv_bn(bd, 384, (3, 1))])
    return keras.layers.Concatenate(name=f"mixed{9 + index}")([b1, b3, bd, _avg_pool_branch(x, 192)])


@applications.builder(name="inception_v3")
def InceptionV3(
    contract: Contract,
) -> keras.Model:
    """Inception-v3 (Szegedy et al., CVPR 2016, Table 1) as keras.applications builds it: 299x299, no
    auxiliary classifier, BN without scale. 23,817,352 trainable at 1000 classes (23,851,784 in all)."""
    img_input = contract.input(default_size=299, min_size=75)
    x, stages = stem(img_input)
    for i, pool_filters in enumerate((32, 64, 64)):
        x = module_a(x, pool_filters, f"mixed{i}")
    stages.append(x)
    x = reduction(x, "mixed3")
    for i, c7 in enumerate((128, 160, 160, 192), start=4):
        x = module_c(x, c7, f"mixed{i}")
    stages.append(x)
    x = reduction(x, "mixed8")
    for i in range(2):
        x = module_e(x, i)
    stages.append(x)
    return contract.finish(img_input, x, stages=stages)


# --- Inception-ResNet-v2 -----------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_cnn")
class ScaledResidual(keras.layers.Layer):
    """`x + scale * residual`, called on `[x, residual]`: the residual scaling of Sec. 3.3 (0.1-0.3), which kept
    the wide Inception-ResNets from dying early in training."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        x, residual = inputs
        return x + self.scale * residual

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


#: Branch widths of the three residual blocks (TF-slim's, which keras.applications follows): per branch, the
#: (filters, kernel) of each convolution in order.
RESIDUAL_BLOCKS = {
    "block35": [[(32, (1, 1))], [(32, (1, 1)), (32, (3, 3))], [(32, (1, 1)), (48, (3, 3)), (64, (3, 3))]],  # Fig. 16
    "block17": [[(192, (1, 1))], [(128, (1, 1)), (160, (1, 7)), (192, (7, 1))]],  # Fig. 17
    "block8": [[(192, (1, 1))], [(192, (1, 1)), (224, (1, 3)), (256, (3, 1))]],  # Fig. 19
}


def inception_resnet_block(x, kind: str, index: int, scale: float, *, activation: bool = True):
    """Figs. 16, 17, 19: parallel branches, concatenated (`{kind}_{index}_mixed`), a 1x1 linear convolution with
    bias back to the input width (`_conv`), scaled and added to the input, then ReLU (`_ac`) unless the last."""
    block = f"{kind}_{index}"
    branches = [_conv_path(x, branch) for branch in RESIDUAL_BLOCKS[kind]]
    mixed = keras.layers.Concatenate(name=f"{block}_mixed")(branches)
    up = Conv2D(x.shape[-1], 1, use_bias=True, name=f"{block}_conv")(mixed)
    x = ScaledResidual(scale, name=f"{block}_scale")([x, up])
    return keras.layers.Activation("relu", name=f"{block}_ac")(x) if activation else x


@applications.builder(name="inception_resnet_v2")
def InceptionResNetV2(
    contract: Contract,
) -> keras.Model:
    """Inception-ResNet-v2 (Szegedy et al., AAAI 2017, Fig. 15 schema) as TF-slim and keras.applications build
    it: 299x299; Inception-v3's stem and a 35x35 mixed module (mixed_5b) where the paper has the Fig. 3 stem;
    10 x block35 (scale 0.17), reduction A, 20 x block17 (0.1), reduction B, 10 x block8 (0.2, the last
    unscaled and without ReLU), a 1x1 conv to 1536. 55,813,192 trainable at 1000 classes (55,873,736 in all)."""
    img_input = contract.input(default_size=299, min_size=75)
    x, stages = stem(img_input)
    x = module_a(x, 64, "mixed_5b", filters_1x1=96)
    for index in range(1, 11):
        x = inception_resnet_block(x, "block35", index, 0.17)
    stages.append(x)
    x = reduction(x, "mixed_6a")
    for index in range(1, 21):
        x = inception_resnet_block(x, "block17", index, 0.1)
    stages.append(x)
    x = reduction(x, "mixed_7a")
    for index in range(1, 11):
        x = inception_resnet_block(x, "block8", index, 1.0 if index == 10 else 0.2, activation=index < 10)
    x = _conv_bn(x, 1536, (1, 1), "conv_7b")
    stages.append(x)
    return contract.finish(img_input, x, stages=stages)


CARDS = (
    Card(
        name="inception_v3",
        builder=InceptionV3,
        min_size=75,
        paper=PAPER,
        params=23_817_352,
        macs=5.713e9,
        input_size=(299, 299, 3),
        reported={"imagenet_top1_acc": 77.9, "imagenet_top5_acc": 93.7},
        source="keras.applications [K][KC]",
        recipe="torchvision_imagenet",
        notes="Paper recipe: RMSprop (decay 0.9, epsilon 1.0), lr 0.045 x 0.94 every 2 epochs, label smoothing 0.1, "
        "an auxiliary classifier on the last 17x17 layer (not in keras.applications, hence not here).",
    ),
    Card(
        name="inception_resnet_v2",
        builder=InceptionResNetV2,
        min_size=75,
        paper=PAPER_V4,
        params=55_813_192,
        macs=13.16e9,
        input_size=(299, 299, 3),
        reported={"imagenet_top1_acc": 80.3, "imagenet_top5_acc": 95.3, "imagenet_top1_err_144crop": 17.8},
        source="keras.applications [K][KC]; 144-crop error paper Table 5 [P*]",
        recipe="torchvision_imagenet",
        notes="Paper recipe: RMSProp (decay 0.9, epsilon 1.0), lr 0.045 x 0.94 every 2 epochs, 20 replicas, "
        "residual scaling 0.1-0.3.",
    ),
)
register_all(CARDS)
