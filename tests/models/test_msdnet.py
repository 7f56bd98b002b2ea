"""MSDNet against the paper and reference code (Huang et al. 2018; gaohuang/MSDNet, kalviny/MSDNet-PyTorch) and
`counts/msdnet_counts.txt`: per-exit costs in the reference's op-counter convention, cumulative parameters,
classifier widths, the scale-dropping schedule with its transitions, and the layer wiring."""

import numpy as np
import pytest

import keras_cnn
from keras_cnn.models.msdnet import block_outputs
from keras_cnn.recipes import RECIPES
from keras_cnn.training import compile_model, output_heads
from tests.helpers import shapes_only

# name: (cumulative ops per exit (M, 2 decimals), cumulative params per exit (M, 3 decimals), classifier inputs)
NOTES = {
    "msdnet_cifar10_anytime": (
        [15.13, 25.48, 37.75, 52.02, 62.12, 74.00, 87.65, 99.95, 110.02, 121.56],
        [0.422, 0.854, 1.347, 1.781, 2.221, 2.724, 3.288, 3.772, 4.274, 4.840],
        [160, 208, 256, 164, 212, 260, 308, 188, 236, 284],
    ),
    "msdnet_cifar100_anytime": (
        [15.14, 25.51, 37.10, 46.33, 57.34, 66.96, 75.94],
        [0.434, 0.877, 1.275, 1.696, 2.178, 2.603, 3.068],
        [160, 208, 140, 188, 236, 152, 200],
    ),
    "msdnet_cifar10_budget": (
        [6.85, 14.33, 27.26, 48.40, 76.37, 108.78, 137.20],
        [0.288, 0.627, 1.077, 1.681, 2.327, 2.983, 3.885],
        [88, 136, 208, 304, 260, 200, 368],
    ),
    "msdnet_cifar100_budget": (
        [6.86, 14.35, 27.54, 41.71, 58.48],
        [0.300, 0.650, 1.018, 1.492, 2.079],
        [88, 136, 104, 200, 208],
    ),
    "msdnet_imagenet_k4": (
        [339.90, 685.46, 1008.16, 1254.47, 1360.53],
        [4.239, 8.772, 13.073, 16.748, 23.958],
        [384, 384, 352, 304, 560],
    ),
    "msdnet_imagenet_k6": (
        [514.66, 1171.18, 1844.52, 2501.40, 2742.06],
        [7.077, 15.690, 24.014, 42.188, 56.529],
        [512, 544, 496, 880, 792],
    ),
    "msdnet_imagenet_k7": (
        [615.69, 1436.39, 2283.21, 2967.42, 3253.79],
        [8.759, 20.155, 31.730, 41.860, 62.314],
        [576, 640, 608, 528, 976],
    ),
}

# (layer, inScales, outScales, transition after it, base width nIn after it) from counts/msdnet_counts.txt
SCHEDULES = {
    "msdnet_cifar10_anytime": [
        (1, 3, 3, False, 22),
        (2, 3, 3, False, 28),
        (3, 3, 3, False, 34),
        (4, 3, 3, False, 40),
        (5, 3, 3, False, 46),
        (6, 3, 3, False, 52),
        (7, 3, 3, False, 58),
        (8, 3, 3, False, 64),
        (9, 3, 2, True, 35),
        (10, 2, 2, False, 41),
        (11, 2, 2, False, 47),
        (12, 2, 2, False, 53),
        (13, 2, 2, False, 59),
        (14, 2, 2, False, 65),
        (15, 2, 2, False, 71),
        (16, 2, 2, False, 77),
        (17, 2, 1, True, 41),
        (18, 1, 1, False, 47),
        (19, 1, 1, False, 53),
        (20, 1, 1, False, 59),
        (21, 1, 1, False, 65),
        (22, 1, 1, False, 71),
    ],
    "msdnet_imagenet_k4": [
        (1, 4, 4, False, 48),
        (2, 4, 4, False, 64),
        (3, 4, 4, False, 80),
        (4, 4, 4, False, 96),
        (5, 4, 4, False, 112),
        (6, 4, 3, True, 64),
        (7, 3, 3, False, 80),
        (8, 3, 3, False, 96),
        (9, 3, 3, False, 112),
        (10, 3, 3, False, 128),
        (11, 3, 2, True, 72),
        (12, 2, 2, False, 88),
        (13, 2, 2, False, 104),
        (14, 2, 2, False, 120),
        (15, 2, 2, False, 136),
        (16, 2, 1, True, 76),
        (17, 1, 1, False, 92),
        (18, 1, 1, False, 108),
        (19, 1, 1, False, 124),
        (20, 1, 1, False, 140),
    ],
}


def _layer_names(model) -> set[str]:
    return {layer.name for layer in model.layers}


def _schedule(model, scale_factors) -> list[tuple]:
    """(layer, inScales, outScales, transition, nIn) read off the built graph."""
    names, rows, layer = _layer_names(model), [], 1
    while f"layer{layer}_scale{len(scale_factors)}_concat" in names:
        out = [s for s in range(1, len(scale_factors) + 1) if f"layer{layer}_scale{s}_concat" in names]
        finest = out[0]
        reads_dropped = f"layer{layer}_scale{finest}_down_2_conv" in names  # the scale above it is an input
        transition = f"transition{layer}_scale{finest}_conv" in names
        last = f"transition{layer}_scale{finest}_relu" if transition else f"layer{layer}_scale{finest}_concat"
        width = model.get_layer(last).output.shape[-1] // scale_factors[finest - 1]
        rows.append((layer, len(out) + reads_dropped, len(out), transition, width))
        layer += 1
    return rows


@pytest.mark.parametrize("name", list(NOTES))
def test_exit_costs_params_and_classifier_widths_equal_the_porting_notes(name):
    ops, params, widths = NOTES[name]
    with shapes_only():
        model = keras_cnn.create_model(name)
    info = keras_cnn.model_info(name)
    assert round(keras_cnn.trainable_params(model) / 1e6, 3) == params[-1]
    assert model.output_names == [f"exit{k}_predictions" for k in range(1, len(ops) + 1)]
    assert all(shape == (None, info.classes) for shape in model.output_shape)
    costs = keras_cnn.exit_costs(model, block_outputs(model))  # the reference runs whole blocks
    assert [round(c.ops / 1e6, 2) for c in costs] == ops
    assert [round(c.params / 1e6, 3) for c in costs] == params
    assert [model.get_layer(f"exit{k}_conv1_pad").input.shape[-1] for k in range(1, len(ops) + 1)] == widths
    # What an exit itself depends on (EarlyExit's cost) is never more, and the whole network is the same.
    lazy = keras_cnn.exit_costs(model)
    assert all(a.ops <= b.ops for a, b in zip(lazy, costs, strict=True)) and lazy[-1] == costs[-1]
    if name in SCHEDULES:
        factors = (1, 2, 4, 4) if "imagenet" in name else (1, 2, 4)
        assert _schedule(model, factors) == SCHEDULES[name]


@shapes_only()
def test_layer_wiring_concat_order_and_bottleneck_widths():
    """Huang et al. 2018, Fig. 2 and the reference code: scale s > 1 is concat[x_s, h~(x_{s-1}), h(x_s)];
    CIFAR bottlenecks (growth 6,
    bnFactor 1-2-4): scale 1 1x1 to 6, scale 2 down path min(nIn, 1*6) = 6 and normal path min(2*nIn, 2*6) = 12."""
    model = keras_cnn.MSDNetCifar10Anytime()
    concat = model.get_layer("layer2_scale2_concat")
    sources = [t._keras_history.operation.name for t in concat._inbound_nodes[0].input_tensors]
    assert sources == ["layer1_scale2_concat", "layer2_scale2_down_2_relu", "layer2_scale2_normal_2_relu"]
    first = model.get_layer("layer1_scale1_concat")._inbound_nodes[0].input_tensors
    assert [t._keras_history.operation.name for t in first] == ["conv1_relu", "layer1_scale1_normal_2_relu"]
    filters = {
        n: model.get_layer(f"layer1_{n}_1_conv").filters for n in ("scale1_normal", "scale2_down", "scale2_normal")
    }
    assert filters == {"scale1_normal": 6, "scale2_down": 6, "scale2_normal": 12}
    # Post-activation and no conv biases (Lua and PyTorch), He fan-out init, Torch BN constants.
    conv = model.get_layer("layer1_scale1_normal_2_conv")
    assert not conv.use_bias and conv.kernel_initializer.mode == "fan_out"
    bn = model.get_layer("layer1_scale1_normal_2_bn")
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)
    # The scale drop after layer 9 reads the dropped finest scale once more, then a transition halves nIn.
    dropping = model.get_layer("layer9_scale2_concat")._inbound_nodes[0].input_tensors
    assert [t._keras_history.operation.name for t in dropping] == [
        "layer8_scale2_concat",
        "layer9_scale2_down_2_relu",
        "layer9_scale2_normal_2_relu",
    ]
    assert "layer9_scale1_concat" not in _layer_names(model)
    assert model.get_layer("transition9_scale2_conv").filters == 35 * 2


def test_exits_train_with_equal_weights_and_the_last_is_the_main_output():
    model = keras_cnn.MSDNet(
        blocks=3, step=1, base=1, structure="cifar", channels=8, growth_rate=4, input_shape=(20, 20, 3), classes=4
    )
    assert output_heads(model) == (model.output_names, "exit3_predictions")
    compile_model(model, "sgd", recipe=RECIPES["msdnet_cifar"])
    x = np.random.default_rng(0).random((4, 20, 20, 3), dtype=np.float32)
    y = np.array([0, 1, 2, 3])
    logs = model.evaluate(x, (y, y, y), verbose=0, return_dict=True)
    parts = [logs[f"{name}_loss"] for name in model.output_names]
    assert logs["loss"] == pytest.approx(sum(parts), rel=1e-5)


@shapes_only()
def test_feature_extractor_and_pyramid_follow_the_scales():
    model = keras_cnn.MSDNetCifar10Anytime(include_top=False)
    assert model.output_shape == (None, 8, 8, 284)  # the coarsest scale after the last layer
    pyramid = keras_cnn.feature_extractor(model)
    # The last map of each scale before layers 9 and 17 drop it, and the coarsest scale after layer 22.
    assert [tuple(o.shape[1:]) for o in pyramid.outputs] == [(32, 32, 64), (16, 16, 154), (8, 8, 284)]
    assert pyramid.stage_names == ["layer8_scale1_concat", "layer16_scale2_concat", "layer22_scale3_concat"]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="structure must be one of"):
        keras_cnn.MSDNet(structure="svhn")
    with pytest.raises(ValueError, match="step_mode must be 'even' or 'lin_grow'"):
        keras_cnn.MSDNet(step_mode="linear")
    with pytest.raises(ValueError, match="must be even"):
        keras_cnn.MSDNet(structure="cifar", growth_rate=5, scale_factors=(1, 3, 9), bottleneck_factors=(1, 3, 9))
    with pytest.raises(ValueError, match="one positive integer per scale"):
        keras_cnn.MSDNet(bottleneck_factors=(1, 2))
    with pytest.raises(ValueError, match="blocks must be a positive integer"):
        keras_cnn.MSDNet(blocks=0)
    with pytest.raises(ValueError, match="at least 129"):
        keras_cnn.MSDNetImageNetK4(input_shape=(128, 128, 3))
    with pytest.raises(TypeError, match="fixes"):
        keras_cnn.MSDNetCifar10Anytime(blocks=3)
    with pytest.raises(ValueError, match="has no MSDNet exit 1"):
        block_outputs(keras_cnn.ResNet20())
    small = keras_cnn.MSDNet(blocks=2, step=1, base=1, structure="cifar", bottleneck=False, input_shape=(17, 17, 3))
    assert small.output_shape == [(None, 1000), (None, 1000)]


@pytest.mark.parametrize(("name", "halvings"), [("msdnet_imagenet_k4", 3 + 2), ("msdnet_cifar10_anytime", 2)])
def test_without_the_exits_the_backbone_sets_the_minimum_size(name, halvings):
    """ImageNet: 4 scales (3 halvings) after a 7x7/2 stem and a 3x3/2 pool; CIFAR: 3 scales. The exits need
    two more halvings and a 2x2 map (129 px on ImageNet), the backbone only a 1x1 coarsest map."""
    smallest = 2**halvings
    model = keras_cnn.create_model(name, include_top=False, pooling="avg", input_shape=(smallest, smallest, 3))
    assert len(model.output_shape) == 2
    with pytest.raises(ValueError, match=f"at least {smallest} "):
        keras_cnn.create_model(name, include_top=False, input_shape=(smallest - 1, smallest - 1, 3))
    with pytest.raises(ValueError, match=f"at least {4 * smallest + 1} "):
        keras_cnn.create_model(name, input_shape=(smallest, smallest, 3))
