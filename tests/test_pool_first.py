"""Average pooling after a 1x1 convolution pools first in a traced graph (keras_cnn.layers.pooling.pooled_first):
the outputs and gradients are Keras' own AveragePooling2D's, with the convolution on the pooled maps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn.layers import AveragePooling2D, Conv2D
from keras_cnn.layers import conv as conv_module
from tests.helpers import live_ops


def conv_pool(
    pool_class,
    rng,
    *,
    size=5,
    kernel_size=1,
    strides=1,
    activation=None,
    use_bias=True,
    padding="valid",
    conv_class=keras.layers.Conv2D,
):
    """Input (size, size, 4) -> `conv_class`(6) -> `pool_class`(2): random weights from `rng`, the same for each
    class."""
    inputs = keras.Input((size, size, 4))
    conv = conv_class(6, kernel_size, strides, activation=activation, use_bias=use_bias, name="conv")
    outputs = pool_class(2, padding=padding, name="pool")(conv(inputs))
    model = keras.Model(inputs, outputs)
    model.set_weights([rng.normal(0, 1, w.shape).astype("float32") for w in model.get_weights()])
    return model


def convolved_sizes(model, x, training: bool) -> list[int]:
    """The height of the maps each live Conv2D op of the traced model convolves."""
    ops = live_ops(tf.function(lambda x: model(x, training=training)), x)
    return [op.inputs[0].shape[1] for op in ops if op.type == "Conv2D"]


def outputs_and_gradients(model, x, training: bool) -> list[np.ndarray]:
    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(model(x, training=training), tf.float32)
            loss = tf.reduce_sum(
                y * tf.range(1.0, 1.0 + tf.cast(tf.size(y), tf.float32), dtype=tf.float32)[: y.shape[-1]]
            )
        return [y, *tape.gradient(loss, [x, *model.trainable_weights])]

    return [np.float32(t) for t in run(x)]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(("padding", "pooled"), [("valid", 2), ("same", 3)])  # 5x5: "same" has partial windows
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_a_traced_graph_pools_before_the_one_by_one_convolution(policy, use_bias, padding, pooled, training):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        ours = conv_pool(AveragePooling2D, np.random.default_rng(3), use_bias=use_bias, padding=padding)
        peer = conv_pool(keras.layers.AveragePooling2D, np.random.default_rng(3), use_bias=use_bias, padding=padding)
    finally:
        keras.config.set_dtype_policy(previous)
    x = tf.constant(np.random.default_rng(4).normal(0, 1, (2, 5, 5, 4)).astype("float32"))
    assert convolved_sizes(ours, x, training) == [pooled]  # only the convolution of the pooled maps runs
    assert convolved_sizes(peer, x, training) == [5]
    tol = 1e-5 if policy == "float32" else 3e-2
    for got, want in zip(
        outputs_and_gradients(ours, x, training), outputs_and_gradients(peer, x, training), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    np.testing.assert_allclose(np.float32(ours(x)), np.float32(peer(x)), rtol=tol, atol=tol)  # eager: as built


def test_a_convolution_with_the_matmul_kernel_gradient_still_pools_first(monkeypatch):
    """In bfloat16 training keras_cnn's Conv2D may run a 1x1 convolution under its own gradient
    (`keras_cnn.layers.conv.pointwise_conv`); the pooling still finds it and convolves the pooled maps."""
    monkeypatch.setattr(conv_module, "MATMUL_KERNEL_GRADIENT", True)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        ours = conv_pool(AveragePooling2D, np.random.default_rng(3), use_bias=False, conv_class=Conv2D)
        peer = conv_pool(keras.layers.AveragePooling2D, np.random.default_rng(3), use_bias=False)
    finally:
        keras.config.set_dtype_policy(previous)
    x = tf.constant(np.random.default_rng(4).normal(0, 1, (2, 5, 5, 4)).astype("float32"))
    run = tf.function(lambda x: ours(x, training=True))
    assert "IdentityN" in {op.type for op in run.get_concrete_function(x).graph.get_operations()}  # the custom one
    assert convolved_sizes(ours, x, True) == [2]
    for got, want in zip(outputs_and_gradients(ours, x, True), outputs_and_gradients(peer, x, True), strict=True):
        np.testing.assert_allclose(got, want, rtol=3e-2, atol=3e-2 * np.abs(want).max())


@pytest.mark.parametrize(
    "kwargs",
    [{"kernel_size": 3}, {"strides": 2, "size": 8}, {"activation": "relu"}],  # none commutes with the pooling
)
def test_convolutions_that_do_not_commute_with_the_pooling_run_as_built(kwargs):
    ours = conv_pool(AveragePooling2D, np.random.default_rng(5), **kwargs)
    peer = conv_pool(keras.layers.AveragePooling2D, np.random.default_rng(5), **kwargs)
    size = kwargs.get("size", 5)
    x = tf.constant(np.random.default_rng(6).normal(0, 1, (2, size, size, 4)).astype("float32"))
    assert convolved_sizes(ours, x, False) == [size]
    np.testing.assert_allclose(ours.predict_on_batch(x), peer.predict_on_batch(x), rtol=1e-5, atol=1e-5)


def test_a_convolution_another_layer_reads_runs_once_at_full_size():
    inputs = keras.Input((5, 5, 4))
    y = keras.layers.Conv2D(6, 1, name="conv")(inputs)
    model = keras.Model(inputs, [AveragePooling2D(2)(y), keras.layers.ReLU()(y)])
    x = tf.constant(np.ones((2, 5, 5, 4), "float32"))
    assert convolved_sizes(model, x, False) == [5]


def test_densenet_transitions_convolve_the_pooled_maps_and_keep_their_outputs(tmp_path):
    """DenseNet-BC-100-12's two transitions (Huang et al. 2017: 216 and 300 maps at 32x32 and 16x16) convolve 16x16
    and 8x8 maps in the traced graph; logits equal the eager model's (each layer as built) and survive saving."""
    keras.utils.set_random_seed(7)
    model = keras_cnn.create_model("densenet_bc", input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    x = tf.constant(np.random.default_rng(8).random((2, 32, 32, 3)).astype("float32"))
    ops = live_ops(tf.function(lambda x: model(x, training=False)), x)
    transitions = sorted(
        tuple(op.inputs[0].shape[1:]) for op in ops if op.type.endswith("Conv2D") and "pool" in op.name
    )
    assert transitions == [(8, 8, 300), (16, 16, 216)]
    eager = model(x, training=False)
    np.testing.assert_allclose(model.predict_on_batch(x), eager, rtol=1e-4, atol=1e-4)
    path = tmp_path / "densenet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("pool2_pool"), AveragePooling2D)
    np.testing.assert_allclose(loaded.predict_on_batch(x), eager, rtol=1e-4, atol=1e-4)
