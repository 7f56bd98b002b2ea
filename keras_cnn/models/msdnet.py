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
from keras_cnn.applications import Contract
from keras_cnn.layers import HE_FAN_OUT, TORCH_BN, TORCH_LINEAR, Style
from keras_cnn.registry import Card, Paper, register_all

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
    if len(bottleneck_factors) != len(scale_factors) or any(
        not isinstance(b, int) or b < 1 for b in bottleneck_factors
    ):
        raise ValueError(
            f"bottleneck_factors needs one positive integer per scale ({len(scale_factors)}); "
            f"received {bottleneck_factors!r}."
        )
    if not 0.0 < reduction <= 1.0:
        raise ValueError(f"reduction must be in (0, 1]; received reduction={reduction!r}.")


@applications.builder()
def MSDNet(
    contract: Contract,
    *,
    blocks: int = 5,
    step: int = 4,
    base: int = 4,
    step_mode: StepMode = "even",
    structure: Literal["cifar", "imagenet"] = "imagenet",
    growth_rate: int | None = None,
    channels: int | None = None,
    scale_factors: Sequence[int] | None = None,
    bottleneck: bool = True,
    bottleneck_factors: Sequence[int] | None = None,
    reduction: float = 0.5,
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
    bottleneck_factors = tuple(
        defaults.get("bottleneck_factors", ()) if bottleneck_factors is None else bottleneck_factors
    )
    _check(blocks, step, base, step_mode, structure, growth_rate, scale_factors, bottleneck_factors, reduction)
    _positive("channels", channels)
    imagenet, scales = structure == "imagenet", len(scale_factors)
    # The backbone halves the input once per coarser scale (and twice in the ImageNet stem); each exit then
    # halves the coarsest scale twice and needs a 2x2 map to pool. Without the exits, the backbone's is the limit.
    downsamplings = scales - 1 + (2 if imagenet else 0)
    min_size = 4 * 2**downsamplings + 1 if contract.include_top else 2**downsamplings
    img_input = contract.input(default_size=224 if imagenet else 32, min_size=min_size, flatten_head=True)
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
        if contract.include_top and block < blocks:
            exit_ = head(features[scales - 1], contract.classes, contract.classifier_activation, name=f"exit{block}")
            exits.append(exit_)
    return contract.finish(
        img_input,
        features[scales - 1],
        stages=[stages[s] for s in sorted(stages)],
        top=functools.partial(head, name=f"exit{blocks}"),
        exits=exits,
        name="msdnet",
    )


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


# --- one card per published configuration (the reference READMEs' commands) -----------------------------
COSTS = "cumulative op-counter cost per exit as the reference's op counter gives it, tested with keras_cnn.exit_costs"
GAO, KALVINY = "[R:gaohuang/MSDNet README]", "[R:kalviny/MSDNet-PyTorch README]"
CIFAR = {
    "paper": PAPER,
    "builder": MSDNet,
    "notes": COSTS,
    "recipe": "msdnet_cifar",
    "input_size": (32, 32, 3),
    "min_size": 17,
}
IMAGENET = {"paper": PAPER, "builder": MSDNet, "notes": COSTS, "recipe": "msdnet_imagenet", "min_size": 129}


def _layers(blocks: int, step: int, base: int, step_mode: str, structure: str) -> dict:
    """The arguments of a configuration: `blocks` exits, layers per block from base, step and step_mode."""
    return {"blocks": blocks, "step": step, "base": base, "step_mode": step_mode, "structure": structure}


CARDS = (
    Card(
        name="msdnet_cifar10_anytime",
        label="MSDNetCifar10Anytime",
        title="MSDNet for CIFAR-10 anytime prediction: 10 blocks of 4, 2, ..., 2 layers (22), 10 exits",
        arguments=_layers(10, 2, 4, "even", "cifar"),
        defaults={"classes": 10},
        classes=10,
        params=4_839_544,
        macs=121.0e6,
        reported={},
        source=f"{GAO} config; 4.840 M [computed]",
        **CIFAR,
    ),
    Card(
        name="msdnet_cifar100_anytime",
        label="MSDNetCifar100Anytime",
        title="MSDNet for CIFAR-100 anytime prediction: 7 blocks of 4, 2, ..., 2 layers (16), 7 exits",
        arguments=_layers(7, 2, 4, "even", "cifar"),
        defaults={"classes": 100},
        classes=100,
        params=3_067_960,
        macs=75.5e6,
        reported={},
        source=f"{KALVINY} config; 3.068 M [computed]",
        **CIFAR,
    ),
    Card(
        name="msdnet_cifar10_budget",
        label="MSDNetCifar10Budget",
        title="MSDNet for CIFAR-10 budgeted batch classification: 7 blocks of 1, 2, ..., 7 layers",
        arguments=_layers(7, 1, 1, "lin_grow", "cifar"),
        defaults={"classes": 10},
        classes=10,
        params=3_885_394,
        macs=136.5e6,
        reported={},
        source=f"{GAO} config; 3.885 M [computed]",
        **CIFAR,
    ),
    Card(
        name="msdnet_cifar100_budget",
        label="MSDNetCifar100Budget",
        title="MSDNet for CIFAR-100 budgeted batch classification: 5 blocks of 1, 2, ..., 5 layers",
        arguments=_layers(5, 1, 1, "lin_grow", "cifar"),
        defaults={"classes": 100},
        classes=100,
        params=2_078_924,
        macs=58.1e6,
        reported={},
        source=f"{KALVINY} config; 2.079 M [computed]",
        **CIFAR,
    ),
    Card(
        name="msdnet_imagenet_k4",
        label="MSDNetImageNetK4",
        title="MSDNet for ImageNet with k=4: 5 blocks of 4 layers, 4 scales, 5 exits",
        arguments=_layers(5, 4, 4, "even", "imagenet"),
        params=23_958_440,
        macs=1.356e9,
        reported={},
        source="[R:kalviny/MSDNet-PyTorch] config (step=base=4) [computed]",
        **IMAGENET,
    ),
    Card(
        name="msdnet_imagenet_k6",
        label="MSDNetImageNetK6",
        title="MSDNet for ImageNet with k=6: 5 blocks of 6 layers, 4 scales, 5 exits",
        arguments=_layers(5, 6, 6, "even", "imagenet"),
        params=56_529_304,
        macs=2.735e9,
        reported={},
        source="[R:kalviny/MSDNet-PyTorch] config (step=base=6) [computed]",
        **IMAGENET,
    ),
    Card(
        name="msdnet_imagenet_k7",
        label="MSDNetImageNetK7",
        title="MSDNet for ImageNet with k=7: 5 blocks of 7 layers, 4 scales, 5 exits",
        arguments=_layers(5, 7, 7, "even", "imagenet"),
        params=62_314_472,
        macs=3.246e9,
        reported={"imagenet_top1_acc_exit1": 62.90, "imagenet_top1_acc_exit3": 73.00, "imagenet_top1_acc_exit5": 74.59},
        source="[R:kalviny/MSDNet-PyTorch] config; top-1 of the released checkpoint re-run by a third party "
        "(kalviny/MSDNet-PyTorch#10, budgeted-trained)",
        **IMAGENET,
    ),
)
NAMED = register_all(CARDS)
MSDNetCifar10Anytime, MSDNetCifar100Anytime = NAMED["MSDNetCifar10Anytime"], NAMED["MSDNetCifar100Anytime"]
MSDNetCifar10Budget, MSDNetCifar100Budget = NAMED["MSDNetCifar10Budget"], NAMED["MSDNetCifar100Budget"]
MSDNetImageNetK4, MSDNetImageNetK6 = NAMED["MSDNetImageNetK4"], NAMED["MSDNetImageNetK6"]
MSDNetImageNetK7 = NAMED["MSDNetImageNetK7"]
