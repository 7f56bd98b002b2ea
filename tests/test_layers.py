import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn.layers import LocalResponseNormalization, ZeroChannelPad
from keras_cnn.models.lenet import (
    C3_TABLE,
    ConnectionTableConv2D,
    EuclideanRBF,
    MAPCriterion,
    Subsampling2D,
    scaled_tanh,
)


def test_lrn_matches_tensorflows_op_with_the_paper_constants():
    x = np.random.default_rng(0).normal(0, 3, (2, 5, 5, 12)).astype("float32")
    expected = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75)
    np.testing.assert_allclose(LocalResponseNormalization()(x), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="odd window"):
        LocalResponseNormalization(n=4)


def test_zero_channel_pad_appends_zero_maps():
    x = np.random.rand(1, 2, 2, 3).astype("float32")
    y = np.asarray(ZeroChannelPad(5)(x))
    np.testing.assert_array_equal(y[..., :3], x)
    assert y.shape == (1, 2, 2, 5) and not y[..., 3:].any()


def test_zero_channel_pad_keeps_equal_channels_and_refuses_to_shrink():
    x = np.random.rand(1, 2, 2, 3).astype("float32")
    np.testing.assert_array_equal(ZeroChannelPad(3)(x), x)
    with pytest.raises(ValueError, match="ZeroChannelPad cannot shrink 3 channels to 2"):
        ZeroChannelPad(2)(x)


def test_option_a_shortcut_subsamples_and_pads_only_where_the_stage_changes():
    names = [layer.name for layer in keras_cnn.ResNet20().layers]
    # He et al. 2016, Sec. 4.2: 16 -> 32 -> 64 maps, halved maps at the first block of stages 2 and 3
    assert [n for n in names if n.endswith(("_0_pool", "_0_pad"))] == [
        "conv3_block1_0_pool",
        "conv3_block1_0_pad",
        "conv4_block1_0_pool",
        "conv4_block1_0_pad",
    ]


def test_option_a_shortcut_has_no_parameters_and_subsamples():
    model = keras_cnn.ResNet20(include_top=False)
    shortcut = keras.Model(model.inputs, model.get_layer("conv3_block1_0_pad").output)
    stage = keras.Model(model.inputs, model.get_layer("conv2_block3_out").output)
    x = np.random.rand(1, 32, 32, 3).astype("float32")
    np.testing.assert_array_equal(np.asarray(shortcut(x))[..., :16], np.asarray(stage(x))[:, ::2, ::2, :])


def test_c3_connection_table_has_the_papers_1516_parameters_and_sparsity():
    layer = ConnectionTableConv2D(C3_TABLE)
    x = tf.constant(np.random.rand(1, 14, 14, 6).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x)[..., 0])  # map 0 reads S2 maps 0, 1, 2 only
    grad = tape.gradient(loss, x).numpy()
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == 1516
    assert np.abs(grad[..., :3]).sum() > 0 and not grad[..., 3:].any()


#: LeCun et al. 1998, Table I: which S2 map (row) feeds which C3 map (column).
TABLE_I = (
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
)


def test_c3_is_table_i_of_the_paper():
    assert [set(row) for row in C3_TABLE] == [{i for i in range(6) if TABLE_I[i][j] == "X"} for j in range(16)]


def test_c3_output_map_j_is_the_convolution_of_its_table_inputs_with_its_own_kernel():
    layer = ConnectionTableConv2D(C3_TABLE)
    x = np.random.default_rng(0).normal(size=(2, 14, 14, 6)).astype("float32")
    layer.build(x.shape)
    layer.bias.assign(np.arange(16, dtype="float32"))
    y = np.asarray(layer(x))
    for j, row in enumerate(C3_TABLE):
        expected = tf.nn.conv2d(x[..., list(row)], layer.kernels[j], 1, "VALID")[..., 0] + j
        np.testing.assert_allclose(y[..., j], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="reads input map 6; the input has maps 0 to 5"):
        ConnectionTableConv2D(((0, 6),)).build((1, 14, 14, 6))


def test_subsampling_is_coefficient_times_window_sum_plus_bias():
    layer = Subsampling2D()
    x = np.random.rand(1, 4, 4, 2).astype("float32")
    layer.build(x.shape)
    layer.coefficient.assign([2.0, -1.0])
    layer.bias.assign([0.5, 0.0])
    window_sum = x.reshape(1, 2, 2, 2, 2, 2).sum(axis=(2, 4))
    np.testing.assert_allclose(layer(x), window_sum * [2.0, -1.0] + [0.5, 0.0], rtol=1e-6)


def test_rbf_output_is_minus_squared_distance_to_fixed_codes():
    layer = EuclideanRBF(10)
    x = np.random.rand(3, 84).astype("float32")
    y = np.asarray(layer(x))
    centers = layer.centers.numpy()
    np.testing.assert_allclose(y, -((x[:, :, None] - centers[None]) ** 2).sum(axis=1), rtol=1e-5)
    assert set(np.unique(centers)) == {-1.0, 1.0} and not layer.trainable_weights


def _paper_criterion(y, labels, j):
    """LeCun et al. 1998, Eq. 9 for one pattern: y_D + log(e^-j + sum_i e^-y_i), y the RBF penalties."""
    return y[np.arange(len(y)), labels] + np.log(np.exp(-j) + np.exp(-y).sum(axis=1))


@pytest.mark.parametrize("j", [0.5, 10.0])
def test_map_criterion_is_the_papers_equation_9_on_the_logits(j):
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 30, (6, 10))  # penalties around and above j, where the rubbish class matters
    labels = rng.integers(0, 10, 6)
    expected = _paper_criterion(y, labels, j).mean()
    loss = MAPCriterion(j=j)
    np.testing.assert_allclose(float(loss(labels, -y)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss(np.eye(10)[labels], -y)), expected, rtol=1e-5)  # one-hot labels
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(loss(labels, -y)) > float(ce(labels, -y))  # the rubbish class adds mass to the denominator


@pytest.mark.parametrize("j", [0, -1, float("nan"), float("inf")])
def test_map_criterion_refuses_a_j_that_is_not_positive_and_finite(j):
    with pytest.raises(ValueError, match=r"j must be a positive finite number; received"):
        MAPCriterion(j=j)


def test_map_criterion_saves_with_the_model_and_loads_in_safe_mode(tmp_path):
    model = keras_cnn.LeNet5(classifier_activation=None)
    model.compile("sgd", loss=MAPCriterion(j=7.0))
    model.save(tmp_path / "lenet.keras")
    loaded = keras.saving.load_model(tmp_path / "lenet.keras", safe_mode=True)
    assert isinstance(loaded.loss, MAPCriterion) and loaded.loss.j == 7.0


def test_the_paper_variant_trains_on_its_criterion_and_the_modern_one_on_cross_entropy():
    card = keras_cnn.model_info("lenet5")
    assert isinstance(card.criterion(), MAPCriterion) and card.criterion(variant="paper").j == 10.0
    assert card.criterion(variant="modern") is None


def test_scaled_tanh_constants():
    assert float(scaled_tanh(1.0)) == pytest.approx(1.0, abs=1e-3)  # f(1) = 1, Appendix A
    assert float(scaled_tanh(100.0)) == pytest.approx(1.7159)


def test_lenet_variants_and_their_counts():
    assert keras_cnn.trainable_params(keras_cnn.LeNet5()) == 60_000
    assert keras_cnn.trainable_params(keras_cnn.LeNet5(variant="modern")) == 61_706
    with pytest.raises(ValueError, match="Unknown LeNet-5 variant='tutorial'"):
        keras_cnn.LeNet5(variant="tutorial")


def test_group_norm_option():
    model = keras_cnn.ResNet20(norm="group")
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    groups = {layer.groups for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)}
    assert groups == {16, 32}  # G = 32, or every channel of the 16-map stage
    assert keras_cnn.trainable_params(model) == 269_722
    with pytest.raises(ValueError, match=r"Unknown norm='layer'; allowed values are \('batch', 'group'\)"):
        keras_cnn.ResNet20(norm="layer")


def test_group_norm_takes_the_families_epsilon_name_and_regularizers():
    """Wu & He 2018: G = 32, or the largest divisor of the channel count below it; the BN constants' epsilon
    and the style's L2 on gamma and beta carry over (momentum has no meaning without moving statistics)."""
    from keras_cnn.layers import norm_layer

    l2 = keras.regularizers.L2(1e-4)
    layer = norm_layer("group", "block_bn", 24, momentum=0.9, epsilon=1e-3, gamma_regularizer=l2, beta_regularizer=l2)
    assert isinstance(layer, keras.layers.GroupNormalization)
    assert (layer.name, layer.groups, layer.epsilon) == ("block_bn", 8, 1e-3)
    assert layer.gamma_regularizer is l2 and layer.beta_regularizer is l2
    plain = norm_layer("group", "gn", 64)
    assert (plain.groups, plain.epsilon, plain.gamma_regularizer, plain.beta_regularizer) == (32, 1e-5, None, None)
    assert norm_layer("group", "gn", 64, groups=4).groups == 4
    batch = norm_layer("batch", "bn", 64, momentum=0.9, epsilon=1e-5)
    assert (type(batch).__name__, batch.name, batch.momentum, batch.epsilon) == ("BatchNormalization", "bn", 0.9, 1e-5)


def test_alexnet_v1_convs_are_grouped_as_the_two_gpus():
    model = keras_cnn.AlexNetV1()
    assert [model.get_layer(f"conv{i}_conv").groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    assert [layer.name for layer in model.layers if isinstance(layer, LocalResponseNormalization)] == [
        "conv1_lrn",
        "conv2_lrn",
    ]


def test_adaptive_pool_uses_pytorchs_windows_and_enlarges_small_maps():
    from keras_cnn.layers import AdaptiveAveragePooling

    x = np.arange(13, dtype="float32").reshape(1, 13, 1, 1) * np.ones((1, 1, 13, 1), "float32")
    y = np.asarray(AdaptiveAveragePooling(6)(x))[0, :, 0, 0]
    # torch.nn.AdaptiveAvgPool2d(6) on 13 rows averages rows 0-2, 2-4, 4-6, 6-8, 8-10, 10-12.
    np.testing.assert_allclose(y, [1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
    one = np.full((1, 1, 1, 2), 4.0, "float32")
    np.testing.assert_array_equal(AdaptiveAveragePooling(6)(one), np.full((1, 6, 6, 2), 4.0))


def test_channel_shuffle_interleaves_the_groups():
    from keras_cnn.layers import ChannelShuffle

    x = np.arange(6, dtype="float32").reshape(1, 1, 1, 6)
    np.testing.assert_array_equal(np.asarray(ChannelShuffle(2)(x)).ravel(), [0, 3, 1, 4, 2, 5])
    np.testing.assert_array_equal(np.asarray(ChannelShuffle(3)(x)).ravel(), [0, 2, 4, 1, 3, 5])
    with pytest.raises(ValueError, match="6 channels do not split into 4 groups"):
        ChannelShuffle(4)(x)


def test_adaptive_pool_matches_torch_on_non_square_maps_and_needs_a_static_size():
    import torch

    from keras_cnn.layers import AdaptiveAveragePooling

    x = np.random.default_rng(0).normal(size=(2, 7, 11, 3)).astype("float32")
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), (3, 5))
    layer = AdaptiveAveragePooling((3, 5))
    y = np.asarray(layer(x))
    np.testing.assert_allclose(y, expected.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)
    assert layer.compute_output_shape(x.shape) == y.shape
    for shape in ((None, None, None, 3), (None, 7, None, 3)):
        traced = tf.function(layer, input_signature=[tf.TensorSpec(shape)])
        with pytest.raises(
            ValueError, match=rf"needs a static spatial size; received \({shape[0]}, {shape[1]}, None, 3\)"
        ):
            traced.get_concrete_function()


def test_channel_shuffle_keeps_every_position_of_a_non_square_batch():
    from keras_cnn.layers import ChannelShuffle

    x = np.random.default_rng(0).normal(size=(2, 3, 5, 6)).astype("float32")
    # Zhang et al. 2018, Sec. 3.1: reshape the channels to (g, n), transpose to (n, g), flatten.
    np.testing.assert_array_equal(ChannelShuffle(3)(x), x[..., [0, 2, 4, 1, 3, 5]])


@pytest.mark.parametrize(
    "make",
    [
        lambda: LocalResponseNormalization(n=3, k=1.0, alpha=2e-4, beta=0.5),
        lambda: ZeroChannelPad(8),
        lambda: ConnectionTableConv2D(C3_TABLE[:4], kernel_size=3),
        lambda: keras_cnn.layers.AdaptiveAveragePooling((2, 3)),
        lambda: keras_cnn.layers.ChannelShuffle(2),
    ],
    ids=["lrn", "zero_pad", "c3", "adaptive_pool", "shuffle"],
)
def test_layers_round_trip_through_their_config(make):
    layer = make()
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 6)).astype("float32")
    y = np.asarray(layer(x))
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), y, rtol=1e-6)


def test_style_refuses_negative_decay_and_dropout_of_one():
    from keras_cnn.layers import TORCH_BN, Style

    with pytest.raises(ValueError, match=r"weight_decay must be >= 0; received -0\.1\."):
        Style(bn=TORCH_BN, init={}, weight_decay=-0.1)
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"dropout_rate must be in \[0, 1\); received {rate}\."):
            Style(bn=TORCH_BN, init={}, dropout_rate=rate)
    assert Style(bn=TORCH_BN, init={}, dropout_rate=0.0).regularizer is None
    with pytest.raises(ValueError, match=r"Unknown norm='instance'"):
        Style(bn=TORCH_BN, init={}, norm="instance")


def test_style_convolutions_pad_like_torch_and_regularize_what_they_carry():
    """Symmetric (k-1)/2 padding (an explicit pad before a strided conv, 'same' otherwise), no bias and one
    group unless asked, and the style's L2(wd / 2) on the kernel and on a bias when there is one."""
    from keras_cnn.layers import TORCH_BN, Style

    style = Style(bn=TORCH_BN, init={}, weight_decay=2e-4)
    plain = style.conv_layer(8, 3, "c")
    assert (plain.use_bias, plain.groups, plain.padding, plain.strides) == (False, 1, "same", (1, 1))
    assert plain.kernel_regularizer is style.regularizer and plain.bias_regularizer is None
    assert style.regularizer.l2 == pytest.approx(1e-4)
    biased = style.conv_layer(8, 1, "b", use_bias=True, groups=2, stride=2)
    assert (biased.use_bias, biased.groups, biased.padding, biased.strides) == (True, 2, "valid", (2, 2))
    assert biased.bias_regularizer is style.regularizer
    x = keras.Input((9, 9, 4))
    y = style.conv(x, 8, 7, 2, "stem")
    assert y.shape == (None, 5, 5, 8)  # floor((9 + 2 * 3 - 7) / 2) + 1
    assert Style(bn=TORCH_BN, init={}).regularizer is None
    he = Style(bn=TORCH_BN, init={"kernel_initializer": "he_normal"}).conv_layer(8, 3, "h")
    assert isinstance(he.kernel_initializer, keras.initializers.HeNormal)
