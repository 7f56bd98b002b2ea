"""DenseNet / DenseNet-BC structure and the memory-efficient mode (Huang et al. 2017; Pleiss et al. 2017)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn.layers.recompute import RecomputedBottleneck
from tests.helpers import shapes_only


def _train_step(model, x, y):
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out))
    return out.numpy(), [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]


def _both_modes_in_float64(kwargs: dict):
    """A normal and a memory-efficient DenseNet-BC built under a float64 policy (restored after)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        return keras_cnn.DenseNetBC(**kwargs), keras_cnn.DenseNetBC(memory_efficient=True, **kwargs)
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize(
    "kwargs", [{"L": 40, "k": 12, "bottleneck": True}, {"L": 22, "k": 6, "theta": 1.0, "bottleneck": False}]
)
def test_memory_efficient_mode_matches_the_normal_mode(kwargs):
    """In float64, so that float32 round-off (amplified by 40 training-mode BN layers on a batch of 4, and
    different in the recomputed graph) cannot pass for, or hide, a difference in what is computed."""
    kwargs |= {"input_shape": (16, 16, 3), "classes": 5}
    normal, efficient = _both_modes_in_float64(kwargs)
    assert [w.name for w in normal.weights] == [w.name for w in efficient.weights]
    recomputed = [layer for layer in efficient.layers if isinstance(layer, RecomputedBottleneck)]
    assert recomputed and all((layer.post_norm is not None) == kwargs["bottleneck"] for layer in recomputed)
    efficient.set_weights(normal.get_weights())
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 16, 16, 3)), np.array([0, 1, 2, 3])
    out_n, grads_n = _train_step(normal, x, y)
    out_e, grads_e = _train_step(efficient, x, y)
    assert normal.get_layer("conv1_conv").kernel.dtype == "float64"
    np.testing.assert_allclose(out_e, out_n, rtol=1e-9, atol=1e-12)
    for g_e, g_n in zip(grads_e, grads_n, strict=True):
        np.testing.assert_allclose(g_e, g_n, rtol=1e-7, atol=1e-10)
    # moving statistics updated once per step, exactly as the plain BN layers do (no double update)
    for w_e, w_n in zip(efficient.non_trainable_weights, normal.non_trainable_weights, strict=True):
        np.testing.assert_allclose(w_e.numpy(), w_n.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(efficient(x, training=False), normal(x, training=False), rtol=1e-9, atol=1e-12)


def test_dropout_keeps_the_bottleneck_bn_out_of_the_recomputation():
    """A recomputed dropout would draw a different mask, so with dropout only concat-BN-ReLU-1x1 is recomputed."""
    model = keras_cnn.DenseNetBC(L=40, k=12, input_shape=(16, 16, 3), dropout_rate=0.2, memory_efficient=True)
    recomputed = [layer for layer in model.layers if isinstance(layer, RecomputedBottleneck)]
    assert recomputed and all(layer.post_norm is None for layer in recomputed)
    assert isinstance(model.get_layer("conv2_block1_1_drop"), keras.layers.Dropout)
    plain = keras_cnn.DenseNetBC(L=40, k=12, input_shape=(16, 16, 3), dropout_rate=0.2)
    assert [w.name for w in plain.weights] == [w.name for w in model.weights]


def test_memory_efficient_model_loads_normal_weight_files_and_round_trips(tmp_path):
    normal = keras_cnn.DenseNetBC(L=40, k=12, input_shape=(16, 16, 3))
    normal.save_weights(tmp_path / "normal.weights.h5")
    efficient = keras_cnn.DenseNetBC(
        L=40, k=12, input_shape=(16, 16, 3), memory_efficient=True, weights=tmp_path / "normal.weights.h5"
    )
    x = np.random.default_rng(1).random((2, 16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(efficient(x, training=False), normal(x, training=False), atol=1e-6)
    efficient.save_weights(tmp_path / "efficient.weights.h5")
    again = keras_cnn.DenseNetBC(
        L=40, k=12, input_shape=(16, 16, 3), memory_efficient=True, weights=tmp_path / "efficient.weights.h5"
    )
    np.testing.assert_array_equal(again(x, training=False), efficient(x, training=False))
    normal_again = keras_cnn.DenseNetBC(L=40, k=12, input_shape=(16, 16, 3))
    normal_again.set_weights(again.get_weights())
    np.testing.assert_allclose(normal_again(x, training=False), normal(x, training=False), atol=1e-6)
    with pytest.raises(ValueError, match="does not fit"):
        keras_cnn.DenseNetBC(
            L=40,
            k=12,
            input_shape=(16, 16, 3),
            classes=3,
            memory_efficient=True,
            weights=tmp_path / "efficient.weights.h5",
        )
    efficient.save(tmp_path / "efficient.keras")
    reloaded = keras.saving.load_model(tmp_path / "efficient.keras", safe_mode=True)
    np.testing.assert_array_equal(reloaded(x, training=False), efficient(x, training=False))


def test_memory_efficient_model_trains_with_fit_as_the_normal_one():
    """Two epochs of `fit` from the same weights end at the same weights and BN statistics in both modes (float64,
    as above), and the weights moved."""
    kwargs = {"L": 40, "k": 12, "input_shape": (16, 16, 3), "classes": 3}
    normal, efficient = _both_modes_in_float64(kwargs)
    start = normal.get_weights()
    efficient.set_weights(start)
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 16, 16, 3)), rng.integers(0, 3, 8)
    for model in (normal, efficient):
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(normal.get_weights(), efficient.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)
    assert max(float(np.abs(a - w0).max()) for a, w0 in zip(normal.get_weights(), start, strict=True)) > 1e-3


@shapes_only()
def test_cifar_structure_stem_growth_and_compression():
    basic = keras_cnn.DenseNet40()
    assert basic.get_layer("conv1_conv").filters == 16  # plain DenseNet stem
    assert basic.get_layer("conv2_block12_concat").output.shape[-1] == 16 + 12 * 12
    bc = keras_cnn.DenseNetBC()
    assert bc.get_layer("conv1_conv").filters == 24  # 2k for DenseNet-BC
    assert bc.get_layer("conv2_block1_1_conv").filters == 48  # bottleneck 4k
    block = bc.get_layer("conv2_block16_concat").output.shape[-1]
    assert block == 24 + 16 * 12 and bc.get_layer("pool2_conv").filters == block // 2
    assert (
        bc.get_layer("bn").output.shape[-1] == 342
    )  # final channels: 24 + 3 * 16 * 12, compressed by 0.5 at each transition
    dropped = keras_cnn.DenseNetBC(dropout_rate=0.2)
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in dropped.layers) == 3 * 16 * 2 + 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"L": 41}, "DenseNet depth L must be 3 \\* 2 \\* n \\+ 4"),
        ({"theta": 0.0}, "theta must be in"),
        ({"k": 0}, "growth_rate k must be a positive integer"),
        ({"L": 41, "bottleneck": False}, "40, 100"),
    ],
)
def test_bad_densenet_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_cnn.DenseNetBC(**kwargs)
    with pytest.raises(ValueError, match="stem must be 'imagenet' or 'cifar'"):
        keras_cnn.DenseNet(stem="mnist")
    with pytest.raises(ValueError, match="blocks must be a non-empty sequence"):
        keras_cnn.DenseNet(blocks=())


def test_recomputed_bottleneck_round_trips_its_initializer_and_counts_its_convolution():
    from keras_cnn.layers import HE_FAN_OUT, TORCH_BN

    layer = RecomputedBottleneck(8, 3, bn_name="b", conv_name="c", bn=TORCH_BN, init=HE_FAN_OUT, post_bn_name="p")
    clone = RecomputedBottleneck.from_config(layer.get_config())
    assert (
        clone.conv.kernel_initializer.get_config()
        == keras.initializers.get(HE_FAN_OUT["kernel_initializer"]).get_config()
    )
    assert (clone.norm.epsilon, clone.norm.momentum, clone.post_norm.name) == (1e-5, 0.9, "p")
    layer.build([(1, 5, 5, 4), (1, 5, 5, 6)])
    assert layer.macs([(1, 5, 5, 4), (1, 5, 5, 6)], (1, 5, 5, 8)) == 5 * 5 * (3 * 3 * 10 * 8)  # H W k^2 C_in C_out
