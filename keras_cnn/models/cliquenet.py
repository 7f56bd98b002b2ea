"""CliqueNet (Yang, Zhong, Shen & Lin, "Convolutional Neural Networks with Alternately Updated Clique",
CVPR 2018), ported from the reference code iboing/CliqueNet: the TF CIFAR/SVHN model (3 blocks) and the
PyTorch ImageNet model (4 blocks, S0-S3), with the reference code's semantics (github.com/iboing/CliqueNet;
docs/models.md#cliquenet says how).

A clique block of n layers (Fig. 2 and Table 1 of the paper) has one kernel W(j->i) per directed edge
between its layers plus W(0->i) from the block input X0. Stage I builds each layer from X0 and the layers
before it; one stage-II pass then updates every layer, in order, from the latest version of all the others,
reusing the stage-I kernels and adding the backward ones (X0 is not an input in stage II). The block
passes its stage-II layers on and contributes X0 + stage-II layers to a multi-scale head.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import keras
from keras import ops

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers import HE_FAN_OUT, TORCH_BN, TORCH_LINEAR, AveragePooling2D, Style
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(
    title="Convolutional Neural Networks with Alternately Updated Clique",
    authors="Yang, Zhong, Shen, Lin",
    venue="CVPR",
    year=2018,
)

#: tf.contrib.layers.batch_norm as train.py calls it (decay 0.999, epsilon 1e-3).
TF_CONTRIB_BN = {"momentum": 0.999, "epsilon": 1e-3}
#: Keras' own BatchNormalization defaults, for constants="keras".
KERAS_DEFAULT_BN = {"momentum": 0.99, "epsilon": 1e-3}


@keras.saving.register_keras_serializable(package="keras_cnn")
class CliqueConv(keras.layers.Layer):
    """The convolution that updates clique layer i (Yang et al. 2018, Sec. 3.1; iboing/CliqueNet `utils.py`): it owns
    one kernel W(j->i), named `w{j}_{i}`, for every source j in {0, ..., n} other than i (c0 input maps for X0,
    `filters` for the others), each initialized on its own fan.

    Called with `sources=(j1, j2, ...)` on the BN-ReLU'd concatenation of those layers (in that order), it
    concatenates their kernels along the input axis and convolves once, like the reference code. Calling
    the same layer in stage I and stage II shares the forward kernels between the stages.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        *,
        layer: int,
        n: int,
        c0: int,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.layer, self.n, self.c0 = filters, kernel_size, layer, n, c0
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.edges = tuple(j for j in range(n + 1) if j != layer)

    def build(self, input_shape):
        self.kernels = {
            j: self.add_weight(
                name=f"w{j}_{self.layer}",
                shape=(self.kernel_size, self.kernel_size, self.c0 if j == 0 else self.filters, self.filters),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
            )
            for j in self.edges
        }

    def _check(self, input_shape, sources: Sequence[int]) -> None:
        unknown = [j for j in sources if j not in self.edges]
        if unknown or len(set(sources)) != len(sources):
            raise ValueError(f"{self.name}: sources {tuple(sources)} must be distinct members of {self.edges}.")
        channels = sum(self.c0 if j == 0 else self.filters for j in sources)
        if input_shape[-1] != channels:
            raise ValueError(
                f"{self.name}: sources {tuple(sources)} have {channels} channels; the input has {input_shape[-1]}."
            )

    def call(self, x, sources: Sequence[int]):
        self._check(x.shape, sources)
        kernel = ops.concatenate([self.kernels[j] for j in sources], axis=2)
        return ops.conv(x, kernel, padding="same")

    def macs(self, input_shape, output_shape) -> int:
        return math.prod(output_shape[1:3]) * self.kernel_size**2 * input_shape[-1] * self.filters

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "layer": self.layer,
            "n": self.n,
            "c0": self.c0,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


def clique_block(x0, n: int, k: int, style: Style, *, bottleneck: bool, name: str):
    """Stage I then one stage-II pass over n layers of k maps (the reference `loop_block`, "II+II").

    Every layer update is BN-ReLU -> CliqueConv -> dropout, with its own BN per stage and layer; with
    `bottleneck` the clique kernels are 1x1 and each update continues BN-ReLU -> 3x3 conv (k -> k, one kernel
    per layer shared by both stages) -> dropout. Returns (block feature [X0, X1..Xn], transit feature
    [X1..Xn]), both of stage II.
    """
    clique_convs = [
        CliqueConv(
            k, 1 if bottleneck else 3, layer=i, n=n, c0=x0.shape[-1], name=f"{name}_w_{i}", **_clique_kwargs(style)
        )
        for i in range(1, n + 1)
    ]
    bottleneck_convs = [style.conv_layer(k, 3, f"{name}_layer{i}_3x3") for i in range(1, n + 1)] if bottleneck else []
    latest = {0: x0}

    def update(i: int, sources: tuple[int, ...], stage: int) -> None:
        label = f"{name}_stage{stage}_layer{i}"
        inputs = [latest[j] for j in sources]
        t = keras.layers.Concatenate(name=f"{label}_concat")(inputs) if len(inputs) > 1 else inputs[0]
        t = style.dropout(clique_convs[i - 1](style.norm_act(t, label), sources=sources), label)
        if bottleneck:
            t = style.norm_act(t, f"{label}_b")
            t = style.dropout(bottleneck_convs[i - 1](t), f"{label}_b")
        latest[i] = t

    for i in range(1, n + 1):  # stage I: X0 and the layers before i
        update(i, (0, *range(1, i)), stage=1)
    for i in range(1, n + 1):  # stage II: every other layer, stage II for j < i, stage I for j > i
        update(i, tuple(j for j in range(1, n + 1) if j != i), stage=2)
    transit = keras.layers.Concatenate(name=f"{name}_transit")([latest[i] for i in range(1, n + 1)])
    block_feature = keras.layers.Concatenate(name=f"{name}_feature")([x0, transit])
    return block_feature, transit


def _clique_kwargs(style: Style) -> dict:
    return {
        "kernel_initializer": style.init.get("kernel_initializer", "glorot_uniform"),
        "kernel_regularizer": style.regularizer,
    }


def attention(x, style: Style, name: str):
    """Attentional transition (Sec. 3.3): GAP -> FC C/2 + ReLU -> FC C + sigmoid, scaling each channel."""
    channels = x.shape[-1]
    a = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gap")(x)
    a = style.dense(a, channels // 2, f"{name}_fc1", activation="relu", **style.dense_init)
    a = style.dense(a, channels, f"{name}_fc2", activation="sigmoid", **style.dense_init)
    return keras.layers.Multiply(name=f"{name}_scale")([x, a])


def transition(x, style: Style, *, attend: bool, name: str):
    """BN-ReLU -> 1x1 conv keeping the width -> dropout -> [attention] -> 2x2 average pooling."""
    x = style.dropout(style.conv(style.norm_act(x, name), x.shape[-1], 1, 1, name), name)
    if attend:
        x = attention(x, style, f"{name}_att")
    return AveragePooling2D(2, name=f"{name}_pool")(x)  # without dropout or attention: pools, then convolves


def compress(x, style: Style, name: str):
    """BN-ReLU -> 1x1 conv to floor(c/2) maps -> dropout, on a block feature before it is pooled."""
    return style.dropout(style.conv(style.norm_act(x, name), x.shape[-1] // 2, 1, 1, name), name)


class _CliqueStyle(Style):
    """Style plus the dense-layer initializer of the reference code (Xavier in TF, Torch Linear in PyTorch)."""

    def __init__(self, *, dense_init: dict, **kwargs):
        super().__init__(**kwargs)
        self.dense_init = dense_init


def _style(structure: str, constants: str, dropout_rate: float, weight_decay: float) -> _CliqueStyle:
    if constants == "keras":
        bn, init, dense_init = KERAS_DEFAULT_BN, {"kernel_initializer": "glorot_uniform"}, {}
    elif structure == "cifar":  # TF: contrib BN, MSRA (truncated normal, fan-in), Xavier FCs
        bn, init, dense_init = TF_CONTRIB_BN, {"kernel_initializer": "he_normal"}, {}
    else:  # PyTorch: torch BN, N(0, sqrt(2 / fan-out)) convs, torch Linear weights
        bn, init, dense_init = TORCH_BN, HE_FAN_OUT, TORCH_LINEAR
    return _CliqueStyle(bn=bn, init=init, dense_init=dense_init, dropout_rate=dropout_rate, weight_decay=weight_decay)


def _per_block(value, blocks: int, label: str) -> tuple[int, ...]:
    values = (value,) * blocks if isinstance(value, int) else tuple(value)
    if len(values) != blocks or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"{label} must be a positive integer or {blocks} of them (one per block); received {value!r}.")
    return values


def _layers_per_block(T, blocks: int, bottleneck: bool) -> tuple[int, ...]:
    """T as the paper counts it (all conv layers of the blocks; two per clique layer with bottleneck), or
    a sequence of clique layers per block as the ImageNet configs give them."""
    if isinstance(T, int) and not isinstance(T, bool):
        per = blocks * (2 if bottleneck else 1)
        if T % per or T // per < 2:
            raise ValueError(
                f"T must be a multiple of {per} with at least 2 clique layers per block ({blocks} blocks"
                f"{', 2 convs per layer with bottleneck' if bottleneck else ''}); received T={T!r}."
            )
        return (T // per,) * blocks
    layers = _per_block(T, blocks, "T (clique layers per block)")
    if min(layers) < 2:
        raise ValueError(f"Each clique block needs at least 2 layers; received T={T!r}.")
    return layers


_DEFAULTS = {  # structure -> k, T, attention, bottleneck, compression, dropout_rate, classes
    "cifar": (36, 12, False, False, False, 0.2, 10),
    "imagenet": ((40, 80, 160, 160), (6, 6, 6, 6), True, True, True, 0.0, 1000),  # S3
}


@applications.builder(classes=None)
def CliqueNet(
    contract: Contract,
    *,
    k: int | Sequence[int] | None = None,
    T: int | Sequence[int] | None = None,
    attention: bool | None = None,
    bottleneck: bool | None = None,
    compression: bool | None = None,
    dropout_rate: float | None = None,
    structure: Literal["auto", "cifar", "imagenet"] = "auto",
    constants: Literal["reference", "keras"] = "reference",
    weight_decay: float | None = None,
    multiscale: bool = False,
) -> keras.Model:
    """CliqueNet with k maps per clique layer and T layers (Yang et al. 2018, Tables 2-3; Fig. 3 head).

    structure "cifar" (the TF code): 3x3 stem of 64 maps, 3 blocks of T/3 layers (T/6 with bottleneck),
    dropout 0.2 after every conv but the stem; defaults k=36, T=12, 10 classes (935,994 trainable).
    structure "imagenet" (the PyTorch code): 7x7/2 stem, BN-ReLU, 3x3/2 max pool, 4 blocks, no dropout;
    k and T per block, defaults S3 (k=40/80/160/160, 6 layers each, attention, bottleneck, compression,
    1000 classes). "auto" takes "imagenet" for inputs of at least 112x112, else "cifar".

    attention (A) adds the channel attention to each transition, bottleneck (B) makes the clique kernels
    1x1 followed by a shared 3x3 conv, compression (C) halves each block feature before its pooling.
    The head concatenates the BN-ReLU'd, average-pooled block features of every block (shallow first) and
    classifies them with one dense layer. With include_top=False, pooling None returns the last block's map
    and pooling "avg"/"max" that map pooled (as wide as the map, the keras.applications contract);
    `multiscale=True` pools every block's map instead and returns the head's multi-scale vector.

    constants "reference" uses the reference code's BN constants and initializers (TF: BN momentum 0.999,
    eps 1e-3, truncated He fan-in convs per edge, Xavier FCs; PyTorch: Torch BN, He fan-out normal, Torch
    Linear) and its coupled weight decay 1e-4 as L2(5e-5) on every weight, bias, gamma and beta; "keras"
    uses Keras' BN defaults and Glorot-uniform kernels without weight decay. weight_decay overrides either
    (0 when the optimizer applies decay itself).
    """
    if structure not in ("auto", "cifar", "imagenet"):
        raise ValueError(f"structure must be 'auto', 'cifar' or 'imagenet'; received {structure!r}.")
    if constants not in ("reference", "keras"):
        raise ValueError(f"constants must be 'reference' or 'keras'; received {constants!r}.")
    if structure == "auto":
        shape = contract.input_shape
        shape = shape if shape is not None else getattr(contract.input_tensor, "shape", (None, None))[1:3]
        sides = [d for d in tuple(shape)[:2] if d is not None] if shape is not None else []
        structure = "imagenet" if sides and min(sides) >= 112 else "cifar"
    d_k, d_T, d_a, d_b, d_c, d_drop, d_classes = _DEFAULTS[structure]
    k, T = d_k if k is None else k, d_T if T is None else T
    attention_on = d_a if attention is None else attention
    bottleneck = d_b if bottleneck is None else bottleneck
    compression = d_c if compression is None else compression
    dropout_rate = d_drop if dropout_rate is None else dropout_rate
    if contract.classes is None:
        contract = dataclasses.replace(contract, classes=d_classes)
    if weight_decay is None:
        weight_decay = 1e-4 if constants == "reference" else 0.0
    imagenet = structure == "imagenet"
    blocks = 4 if imagenet else 3
    ks = _per_block(k, blocks, "k")
    layers = _layers_per_block(T, blocks, bottleneck)
    halvings = blocks - 1 + (2 if imagenet else 0)  # one per transition (+ the stem's two)
    img_input = contract.input(default_size=224 if imagenet else 32, min_size=2**halvings)
    style = _style(structure, constants, dropout_rate, weight_decay)
    if imagenet:
        _, x = style.imagenet_stem(img_input, 64, pool_name="pool1")
    else:
        x = style.conv(img_input, 64, 3, 1, "conv1")
    features, transits = [], []
    for b, (n, k_b) in enumerate(zip(layers, ks, strict=True), start=1):
        block_feature, transit = clique_block(x, n, k_b, style, bottleneck=bottleneck, name=f"block{b}")
        transits.append(transit)
        if compression:
            block_feature = compress(block_feature, style, f"block{b}_compress")
        features.append(style.norm_act(block_feature, f"block{b}_head"))
        if b < blocks:
            x = transition(transit, style, attend=attention_on, name=f"transition{b}")
    if contract.include_top or (multiscale and contract.pooling):
        x, stages = _multiscale_pool(features, "avg" if contract.include_top else contract.pooling), features
        contract = dataclasses.replace(contract, pooling=None)
    else:  # the earlier block heads are not part of this model: those stages are the blocks' outputs
        x, stages = features[-1], [*transits[:-1], features[-1]]

    def top(v, classes, activation):
        return style.dense(v, classes, "predictions", activation, dtype=applications.head_dtype(), **style.dense_init)

    return contract.finish(img_input, x, stages=stages, top=top, name="cliquenet")


def _multiscale_pool(features, pooling: str):
    """Each block's map pooled over its whole extent, concatenated shallow first (the reference head)."""
    pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    pooled = [pool(name=f"block{b}_{pooling}_pool")(f) for b, f in enumerate(features, start=1)]
    return keras.layers.Concatenate(name=f"multiscale_{pooling}_pool")(pooled)


# --- one card per registered name: the paper's figures (Yang et al. 2018, Tables 2-5) ------------------------
CIFAR_SOURCE = "[R:iboing/CliqueNet] paper Table 3 as reproduced in the repo (img/tab2.JPG); no augmentation"
CIFAR = {
    "input_size": (32, 32, 3),
    "classes": 10,
    "min_size": 4,
    "recipe": "cliquenet_cifar",
    "paper": PAPER,
    "source": CIFAR_SOURCE,
    "builder": CliqueNet,
}
IMAGENET = {
    "paper": PAPER,
    "min_size": 32,
    "recipe": "cliquenet_imagenet",
    "source": "[R:iboing/CliqueNet] img/tab3.JPG; configs from imagenet_pytorch/cliquenet.py history",
    "builder": CliqueNet,
}


def _cifar(k: int, T: int, abc: str = "") -> dict:
    """The arguments of a CIFAR/SVHN configuration (Table 3): k, T and which of attention, bottleneck and
    compression (A, B, C) it uses."""
    return {
        "k": k,
        "T": T,
        "structure": "cifar",
        "attention": "a" in abc,
        "bottleneck": "b" in abc,
        "compression": "c" in abc,
    }


def _cifar_errors(c10: float, c100: float, svhn: float) -> dict[str, float]:
    return {"cifar10_test_error": c10, "cifar100_test_error": c100, "svhn_test_error": svhn}


def _imagenet(k: tuple[int, ...], T: tuple[int, ...]) -> dict:
    """The arguments of an ImageNet configuration (Table 5): k and clique layers per block, with attentional
    transitions, bottleneck and compression."""
    return {"k": k, "T": T, "structure": "imagenet", "bottleneck": True, "compression": True}


def _no_attention(params: int) -> str:
    return f"attention=False builds the starred row of Table 5, {params:,} trainable."


CARDS = (
    Card(
        name="cliquenet_k36_t12",
        label="CliqueNetK36T12",
        title="CliqueNet (k=36, T=12) for CIFAR/SVHN",
        arguments=_cifar(36, 12),
        params=935_994,
        macs=0.455e9,
        reported=_cifar_errors(5.93, 27.32, 1.77),
        **CIFAR,
    ),
    Card(
        name="cliquenet_k64_t15",
        label="CliqueNetK64T15",
        title="CliqueNet (k=64, T=15) for CIFAR/SVHN",
        arguments=_cifar(64, 15),
        params=4_485_706,
        macs=2.103e9,
        reported=_cifar_errors(5.12, 23.98, 1.62),
        **CIFAR,
    ),
    Card(
        name="cliquenet_k80_t15",
        label="CliqueNetK80T15",
        title="CliqueNet (k=80, T=15) for CIFAR/SVHN",
        arguments=_cifar(80, 15),
        params=6_937_546,
        macs=3.226e9,
        reported=_cifar_errors(5.10, 23.32, 1.56),
        **CIFAR,
    ),
    Card(
        name="cliquenet_k80_t18",
        label="CliqueNetK80T18",
        title="CliqueNet (k=80, T=18) for CIFAR/SVHN",
        arguments=_cifar(80, 18),
        params=10_135_594,
        macs=4.727e9,
        reported=_cifar_errors(5.06, 23.14, 1.51),
        **CIFAR,
    ),
    Card(
        name="cliquenet_k36_t12_ac",
        label="CliqueNetK36T12AC",
        title="CliqueNet (k=36, T=12, A, C) for CIFAR/SVHN",
        arguments=_cifar(36, 12, "ac"),
        params=1_079_338,
        macs=0.491e9,
        reported=_cifar_errors(5.61, 25.55, 1.69),
        **CIFAR,
    ),
    Card(
        name="cliquenet_k80_t15_ac",
        label="CliqueNetK80T15AC",
        title="CliqueNet (k=80, T=15, A, C) for CIFAR/SVHN",
        arguments=_cifar(80, 15, "ac"),
        params=7_998_138,
        macs=3.438e9,
        reported=_cifar_errors(5.17, 22.78, 1.53),
        **CIFAR,
    ),
    Card(
        name="cliquenet_k150_t30_abc",
        label="CliqueNetK150T30ABC",
        title="CliqueNet (k=150, T=30, A, B, C) for CIFAR/SVHN",
        arguments=_cifar(150, 30, "abc"),
        params=10_480_938,
        macs=5.279e9,
        reported=_cifar_errors(5.06, 21.83, 1.64),
        notes="As released: the paper lists 10.02 M params / 8.49 G FLOPs, the released code gives 10,480,938 / "
        "10.56 G FLOPs (5.28 G MACs); no variant reproduces the paper row (Table 4).",
        **CIFAR,
    ),
    # Table 5 (img/tab3.JPG): top-1 / top-5 single-crop error; S0/S1 only without attention.
    Card(
        name="cliquenet_s0",
        label="CliqueNetS0",
        title="CliqueNet-S0 for ImageNet",
        arguments=_imagenet((36, 64, 100, 80), (5, 6, 6, 6)),
        params=6_245_330,
        macs=2.225e9,
        reported={"imagenet_top1_err_no_attention": 27.52, "imagenet_top5_err_no_attention": 8.98},
        notes=_no_attention(5_703_728),
        **IMAGENET,
    ),
    Card(
        name="cliquenet_s1",
        label="CliqueNetS1",
        title="CliqueNet-S1 for ImageNet",
        arguments=_imagenet((36, 80, 120, 100), (5, 6, 6, 6)),
        params=8_740_046,
        macs=2.906e9,
        reported={"imagenet_top1_err_no_attention": 26.21, "imagenet_top5_err_no_attention": 8.30},
        notes=_no_attention(7_956_776),
        **IMAGENET,
    ),
    Card(
        name="cliquenet_s2",
        label="CliqueNetS2",
        title="CliqueNet-S2 for ImageNet",
        arguments=_imagenet((36, 80, 150, 120), (5, 5, 6, 6)),
        params=11_008_376,
        macs=3.028e9,
        reported={"imagenet_top1_err": 24.82, "imagenet_top5_err": 7.51, "imagenet_top1_err_no_attention": 25.85},
        notes=_no_attention(10_003_756),
        **IMAGENET,
    ),
    Card(
        name="cliquenet_s3",
        label="CliqueNetS3",
        title="CliqueNet-S3 for ImageNet",
        arguments=_imagenet((40, 80, 160, 160), (6, 6, 6, 6)),
        params=14_383_024,
        macs=4.073e9,
        reported={"imagenet_top1_err": 24.01, "imagenet_top5_err": 7.15, "imagenet_top1_err_no_attention": 24.98},
        notes=_no_attention(13_170_904),
        **IMAGENET,
    ),
)
NAMED = register_all(CARDS)
CliqueNetK36T12, CliqueNetK64T15 = NAMED["CliqueNetK36T12"], NAMED["CliqueNetK64T15"]
CliqueNetK80T15, CliqueNetK80T18 = NAMED["CliqueNetK80T15"], NAMED["CliqueNetK80T18"]
CliqueNetK36T12AC, CliqueNetK80T15AC = NAMED["CliqueNetK36T12AC"], NAMED["CliqueNetK80T15AC"]
CliqueNetK150T30ABC = NAMED["CliqueNetK150T30ABC"]
CliqueNetS0, CliqueNetS1, CliqueNetS2, CliqueNetS3 = (NAMED[f"CliqueNetS{i}"] for i in range(4))
