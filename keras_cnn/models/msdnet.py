"""MSDNet, the multi-scale dense network with an exit after every block (Huang, Chen, Li, Wu, van der Maaten &
Weinberger, "Multi-Scale Dense Networks for Resource Efficient Image Classification", ICLR 2018, Fig. 2), as the
reference code builds it (gaohuang/MSDNet in Lua, kalviny/MSDNet-PyTorch).

A layer maps the feature maps of its scales (a dict: scale index -> tensor, fine to coarse) to new ones; the
model returns one classifier output per block, cheapest first. `keras_cnn.early_exit` evaluates them (anytime and
budgeted batch) and stops early at inference; `keras_cnn.exit_costs` gives the cumulative cost of every exit.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Literal

import keras

from keras_cnn import applications
from keras_cnn.layers import HE_FAN_OUT, TORCH_BN, TORCH_LINEAR, Style
from keras_cnn.registry import Paper, register, variant

PAPER = Paper(
    title="Multi-Scale Dense Networks for Resource Efficient Image Classification",
    authors="Huang, Chen, Li, Wu, van der Maaten, Weinberger",
    venue="ICLR",
    year=2018,
)

#: The reference defaults per structure: base width (`nChannels`), growth rate, and the per-scale channel
#: (`grFactor`) and bottleneck (`bnFactor`) multipliers, whose length is the number of scales S.
STRUCTURES = {
    "cifar": {"channels": 16, "growth_rate": 6, "scale_factors": (1, 2, 4), "bottleneck_factors": (1, 2, 4)},
    "imagenet": {"channels": 32, "growth_rate": 16, "scale_factors": (1, 2, 4, 4), "bottleneck_factors": (1, 2, 4, 4)},
}
#: Width of the two convolutions of a CIFAR exit (an ImageNet exit keeps its input's width).
CIFAR_EXIT_WIDTH = 128
StepMode = Literal["even", "lin_grow"]

Features = dict[int, keras.KerasTensor]


def block_steps(blocks: int, step: int, base: int, step_mode: StepMode) -> list[int]:
    """Layers per block: `base`, then `step` per block ("even") or step * i + 1 for block i ("lin_grow")."""
    return [base] + [step if step_mode == "even" else step * i + 1 for i in range(1, blocks)]


def output_scales(layers: int, scales: int) -> list[int]:
    """How many scales layers 1..L write under the reference's default `-prune max`: with interval ceil(L / S),
    layer l keeps S - floor((l - 1) / interval), so the finest scale is dropped once every interval layers
    (a layer reads what the layer before it wrote)."""
    interval = math.ceil(layers / scales)
    return [scales - (layer - 1) // interval for layer in range(1, layers + 1)]


def conv_bn_relu(x, filters: int, kernel: int, stride: int, name: str, style: Style):
    """`{name}_conv` (no bias, padded by kernel // 2 as the reference), `{name}_bn`, `{name}_relu`."""
    return style.norm_act(style.conv(x, filters, kernel, stride, name), name)


def conv_branch(x, filters: int, stride: int, bottleneck_factor: int | None, name: str, style: Style):
    """h (stride 1) or h~ (stride 2) of Fig. 2, post-activation as the reference's ConvBN: a 1x1 bottleneck to
    min(C_in, bottleneck_factor * filters) maps (none when `bottleneck_factor` is None), then the 3x3."""
    if bottleneck_factor is not None:
        x = conv_bn_relu(x, min(x.shape[-1], bottleneck_factor * filters), 1, 1, f"{name}_1", style)
    return conv_bn_relu(x, filters, 3, stride, f"{name}_2", style)


def first_layer(x, channels: int, scale_factors: Sequence[int], style: Style, *, imagenet: bool) -> Features:
    """Layer 1 of Fig. 2: scale 1 from the image (CIFAR: 3x3 conv; ImageNet: 7x7/2 conv with a bias, as in the
    PyTorch code, and 3x3/2 max pool), each coarser scale by a 3x3/2 conv of the one above; channels * g_s maps
    at scale s."""
    if imagenet:
        _, x = style.imagenet_stem(x, channels * scale_factors[0], use_bias=True, pool_name="pool1")
    else:
        x = conv_bn_relu(x, channels * scale_factors[0], 3, 1, "conv1", style)
    features = {0: x}
    for s in range(1, len(scale_factors)):
        x = features[s] = conv_bn_relu(x, channels * scale_factors[s], 3, 2, f"conv1_scale{s + 1}", style)
    return features


def msd_layer(
    features: Features,
    out_scales: int,
    growth_rate: int,
    style: Style,
    *,
    scale_factors: Sequence[int],
    bottleneck_factors: Sequence[int] | None,
    name: str,
) -> Features:
    """One layer of Fig. 2 on the coarsest `out_scales` scales: scale s becomes concat[x_s, h~(x_{s-1}),
    h(x_s)] with growth * g_s / 2 new maps from each path, or concat[x_s, h(x_s)] with growth * g_s maps where
    the scale above is not an input. When the finest input scale is dropped here, it feeds the new finest
    scale's h~ one last time (the concatenation order is the reference's)."""
    scales = len(scale_factors)
    factors = bottleneck_factors or (None,) * scales
    out = {}
    for s in range(scales - out_scales, scales):
        x, width, label = features[s], growth_rate * scale_factors[s], f"{name}_scale{s + 1}"
        if s - 1 in features:
            down = conv_branch(features[s - 1], width // 2, 2, factors[s - 1], f"{label}_down", style)
            parts = [x, down, conv_branch(x, width // 2, 1, factors[s], f"{label}_normal", style)]
        else:
            parts = [x, conv_branch(x, width, 1, factors[s], f"{label}_normal", style)]
        out[s] = keras.layers.Concatenate(name=f"{label}_concat")(parts)
    return out


def transition(features: Features, width: int, scale_factors: Sequence[int], style: Style, name: str) -> Features:
    """After a scale is dropped: a 1x1 conv-BN-ReLU at every remaining scale to width * g_s maps, width being
    floor(reduction * nIn) (the reference's `-reduction`, which inserts it for any reduction > 0)."""
    return {
        s: conv_bn_relu(x, width * scale_factors[s], 1, 1, f"{name}_scale{s + 1}", style) for s, x in features.items()
    }


def exit_classifier(x, classes: int, classifier_activation, *, style: Style, width: int | None, name: str):
    """Exit k, on the coarsest scale (the reference's ClassifierModule): two 3x3/2 conv-BN-ReLU of `width` maps
    (the input's width when None), 2x2 average pooling, flatten, a linear layer `{name}_predictions`."""
    width = width or x.shape[-1]
    x = conv_bn_relu(x, width, 3, 2, f"{name}_conv1", style)
    x = conv_bn_relu(x, width, 3, 2, f"{name}_conv2", style)
    x = keras.layers.AveragePooling2D(2, name=f"{name}_pool")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    head = applications.head_dtype()
    return style.dense(x, classes, f"{name}_predictions", activation=classifier_activation, dtype=head, **TORCH_LINEAR)


def _positive(label: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{label} must be a positive integer; received {value!r}.")


def _check(blocks, step, base, step_mode, structure, growth_rate, scale_factors, bottleneck_factors, reduction):
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {sorted(STRUCTURES)}; received structure={structure!r}.")
    if step_mode not in ("even", "lin_grow"):
        raise ValueError(f"step_mode must be 'even' or 'lin_grow'; received step_mode={step_mode!r}.")
    for label, value in (("blocks", blocks), ("step", step), ("base", base), ("growth_rate", growth_rate)):
        _positive(label, value)
    if not scale_factors or any(not isinstance(g, int) or g < 1 for g in scale_factors):
        raise ValueError(f"scale_factors must be positive integers, one per scale; received {scale_factors!r}.")
    if any(growth_rate * g % 2 for g in scale_factors[1:]):
        raise ValueError(
            f"growth_rate * scale_factors[s] must be even for s > 0 (the down and normal paths take half each); "
            f"received growth_rate={growth_rate}, scale_factors={tuple(scale_factors)}."
        )
    if len(bottleneck_factors) != len(scale_factors) or any(not isinstance(b, int) or b < 1
                                                            for b in bottleneck_factors):  # fmt: skip
        raise ValueError(
            f"bottleneck_factors needs one positive integer per scale ({len(scale_factors)}); "
            f"received {bottleneck_factors!r}."
        )
    if not 0.0 < reduction <= 1.0:
        raise ValueError(f"reduction must be in (0, 1]; received reduction={reduction!r}.")


@applications.keras_order
def MSDNet(
    blocks: int = 5,
    step: int = 4,
    base: int = 4,
    *,
    step_mode: StepMode = "even",
    structure: Literal["cifar", "imagenet"] = "imagenet",
    growth_rate: int | None = None,
    channels: int | None = None,
    scale_factors: Sequence[int] | None = None,
    bottleneck: bool = True,
    bottleneck_factors: Sequence[int] | None = None,
    reduction: float = 0.5,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 1000,
    classifier_activation="softmax",
    name: str = "msdnet",
) -> keras.Model:
    """MSDNet (Huang et al., ICLR 2018, Fig. 2) with `blocks` exits; the defaults are the ImageNet k=4 network.

    The reference flags map to: `blocks` = nBlocks, `step`/`base`/`step_mode` = step/base/stepmode (layers per
    block), `growth_rate`, `channels` = nChannels, `scale_factors` = grFactor, `bottleneck` and
    `bottleneck_factors` = bottleneck and bnFactor, `reduction`; None takes the structure's value (`STRUCTURES`).
    Scales are dropped as `-prune max` does, with a `reduction` transition after each drop. structure "cifar":
    3x3 stem, exits of 128 maps; "imagenet": 7x7/2 stem and 3x3/2 max pool, exits as wide as their input.

    With include_top the model has one output per block, `exit1_predictions` ... `exit{blocks}_predictions`,
    each reading the coarsest scale of its block; training sums their cross-entropies with weight 1 (the last
    exit is the main output). include_top=False returns the last block's coarsest scale.

    Choices where the Lua and PyTorch code differ: He fan-out normal convolutions and zero
    Linear biases (Lua; PyTorch's own init is never applied), PyTorch's ImageNet stem (width 32 and a bias on
    its 7x7 convolution, the network of the published ImageNet configurations and cost figures). The 2x2 average
    pool of an exit flattens into the classifier, so include_top needs a static input size; at 32x32 (CIFAR) and
    224x224 (ImageNet) it sees the reference's 2x2 maps.
    """
    defaults = STRUCTURES.get(structure, {})
    growth_rate = defaults.get("growth_rate") if growth_rate is None else growth_rate
    channels = defaults.get("channels") if channels is None else channels
    scale_factors = tuple(defaults.get("scale_factors", ()) if scale_factors is None else scale_factors)
    bottleneck_factors = tuple(defaults.get("bottleneck_factors", ()) if bottleneck_factors is None
                               else bottleneck_factors)  # fmt: skip
    _check(blocks, step, base, step_mode, structure, growth_rate, scale_factors, bottleneck_factors, reduction)
    _positive("channels", channels)
    imagenet, scales = structure == "imagenet", len(scale_factors)
    # The backbone halves the input once per coarser scale (and twice in the ImageNet stem); each exit then
    # halves the coarsest scale twice and needs a 2x2 map to pool. Without the exits, the backbone's is the limit.
    downsamplings = scales - 1 + (2 if imagenet else 0)
    img_input = applications.model_input(
        input_tensor, input_shape, include_top=include_top, weights=weights, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, default_size=224 if imagenet else 32,
        min_size=4 * 2**downsamplings + 1 if include_top else 2**downsamplings, flatten_head=True,
    )  # fmt: skip
    style = Style(bn=TORCH_BN, init=HE_FAN_OUT)
    features = first_layer(img_input, channels, scale_factors, style, imagenet=imagenet)
    stages = {**features}  # the last map of every scale, for the feature pyramid
    steps = block_steps(blocks, step, base, step_mode)
    keep = output_scales(sum(steps), scales)
    layer_kwargs = {"scale_factors": scale_factors, "bottleneck_factors": bottleneck_factors if bottleneck else None}
    head = functools.partial(exit_classifier, style=style, width=None if imagenet else CIFAR_EXIT_WIDTH)
    exits, width, layer = [], channels, 0
    for block, n in enumerate(steps, start=1):
        for _ in range(n):
            layer += 1
            dropped = len(features) > keep[layer - 1]
            features = msd_layer(features, keep[layer - 1], growth_rate, style, name=f"layer{layer}", **layer_kwargs)
            width += growth_rate
            if dropped:
                width = math.floor(reduction * width)
                features = transition(features, width, scale_factors, style, f"transition{layer}")
            stages.update(features)
        if include_top and block < blocks:
            exits.append(head(features[scales - 1], classes, classifier_activation, name=f"exit{block}"))
    return applications.finish(
        img_input, features[scales - 1], input_tensor=input_tensor, include_top=include_top, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation, weights=weights, name=name,
        stages=[stages[s] for s in sorted(stages)], top=functools.partial(head, name=f"exit{blocks}"), exits=exits,
    )  # fmt: skip


def block_outputs(model: keras.Model) -> list[list[keras.KerasTensor]]:
    """For every exit of an MSDNet, the maps of all its scales after that exit's block: what the reference
    computes before the exit runs (its forward pass runs whole blocks). For `keras_cnn.exit_costs`; found by
    layer name, so a model reloaded from disk works too."""
    states = []
    for k in range(1, len(model.outputs) + 1):
        try:
            source = model.get_layer(f"exit{k}_conv1_pad").input._keras_history.operation.name
        except ValueError as err:
            raise ValueError(f"{model.name!r} has no MSDNet exit {k} (layer 'exit{k}_conv1_pad'): {err}") from err
        last = re.fullmatch(r"((?:layer|transition)\d+)_scale\d+_(?:concat|relu)", source)
        if last is None:
            raise ValueError(f"Exit {k} of {model.name!r} reads {source!r}, which no MSDNet layer writes.")
        pattern = re.compile(rf"{last.group(1)}_scale\d+_(?:concat|relu)")
        states.append([layer.output for layer in model.layers if pattern.fullmatch(layer.name)])
    return states


# --- the published configurations (the reference READMEs' commands) -----------------------------
_COSTS = "cumulative op-counter cost per exit as the reference's op counter gives it, tested with keras_cnn.exit_costs"


def _named(
    registry_name: str, builder_name: str, doc: str, fixed: dict, *, params: int, macs: float, source: str,
    reported: dict | None = None, classes: int, structure: str,
):  # fmt: skip
    cifar = structure == "cifar"
    named = variant(MSDNet, builder_name, doc, {**fixed, "structure": structure}, classes=classes, name=registry_name)
    return register(
        registry_name, paper=PAPER, params=params, macs=macs, reported=reported or {}, source=source, notes=_COSTS,
        recipe="msdnet_cifar" if cifar else "msdnet_imagenet", input_size=(32, 32, 3) if cifar else (224, 224, 3),
        classes=classes,
    )(named)  # fmt: skip


MSDNetCifar10Anytime = _named(
    "msdnet_cifar10_anytime", "MSDNetCifar10Anytime",
    "MSDNet for CIFAR-10 anytime prediction (Huang et al. 2018): 10 blocks of 4, 2, ..., 2 layers (22), 10 exits.",
    {"blocks": 10, "step": 2, "base": 4, "step_mode": "even"}, params=4_839_544, macs=121.0e6, classes=10,
    structure="cifar", source="[R:gaohuang/MSDNet README] config; 4.840 M [computed]",
)  # fmt: skip
MSDNetCifar100Anytime = _named(
    "msdnet_cifar100_anytime", "MSDNetCifar100Anytime",
    "MSDNet for CIFAR-100 anytime prediction (Huang et al. 2018): 7 blocks of 4, 2, ..., 2 layers (16), 7 exits.",
    {"blocks": 7, "step": 2, "base": 4, "step_mode": "even"}, params=3_067_960, macs=75.5e6, classes=100,
    structure="cifar", source="[R:kalviny/MSDNet-PyTorch README] config; 3.068 M [computed]",
)  # fmt: skip
MSDNetCifar10Budget = _named(
    "msdnet_cifar10_budget", "MSDNetCifar10Budget",
    "MSDNet for CIFAR-10 budgeted batch classification (Huang et al. 2018): 7 blocks of 1, 2, ..., 7 layers.",
    {"blocks": 7, "step": 1, "base": 1, "step_mode": "lin_grow"}, params=3_885_394, macs=136.5e6, classes=10,
    structure="cifar", source="[R:gaohuang/MSDNet README] config; 3.885 M [computed]",
)  # fmt: skip
MSDNetCifar100Budget = _named(
    "msdnet_cifar100_budget", "MSDNetCifar100Budget",
    "MSDNet for CIFAR-100 budgeted batch classification (Huang et al. 2018): 5 blocks of 1, 2, ..., 5 layers.",
    {"blocks": 5, "step": 1, "base": 1, "step_mode": "lin_grow"}, params=2_078_924, macs=58.1e6, classes=100,
    structure="cifar", source="[R:kalviny/MSDNet-PyTorch README] config; 2.079 M [computed]",
)  # fmt: skip


def _imagenet(k: int, params: int, macs: float, reported: dict | None = None, source: str = ""):
    doc = f"MSDNet for ImageNet with k={k} (Huang et al. 2018): 5 blocks of {k} layers, 4 scales, 5 exits."
    return _named(
        f"msdnet_imagenet_k{k}", f"MSDNetImageNetK{k}", doc, {"blocks": 5, "step": k, "base": k, "step_mode": "even"},
        params=params, macs=macs, classes=1000, structure="imagenet", reported=reported,
        source=source or f"[R:kalviny/MSDNet-PyTorch] config (step=base={k}) [computed]",
    )  # fmt: skip


MSDNetImageNetK4 = _imagenet(4, 23_958_440, 1.356e9)
MSDNetImageNetK6 = _imagenet(6, 56_529_304, 2.735e9)
MSDNetImageNetK7 = _imagenet(
    7, 62_314_472, 3.246e9,
    {"imagenet_top1_acc_exit1": 62.90, "imagenet_top1_acc_exit3": 73.00, "imagenet_top1_acc_exit5": 74.59},
    "[R:kalviny/MSDNet-PyTorch] config; top-1 of the released checkpoint re-run by a third party "
    "(kalviny/MSDNet-PyTorch#10, budgeted-trained)",
)  # fmt: skip
