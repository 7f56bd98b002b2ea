"""keras_cnn.layers.Conv2D: Keras' Conv2D, with a 1x1 kernel's gradient as one matrix product in bfloat16 training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.layers import conv
from keras_cnn.layers.conv import Conv2D, amx_rule

BF16_STEP = 2.0**-8  # bfloat16 keeps 8 significant bits: one rounding is at most half of this, relatively


@pytest.fixture
def bf16_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


def test_the_matmul_gradient_is_on_where_it_was_measured():
    assert amx_rule(frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
    assert not amx_rule(frozenset({"avx512f", "avx512_bf16"})) and not amx_rule(frozenset())


def _pair(kernel: int = 1, strides: int = 1, use_bias: bool = False):
    """Ours and Keras' Conv2D with the same weights, 16 -> 32 channels on 4 x 8 x 8 inputs."""
    ours = Conv2D(32, kernel, strides=strides, use_bias=use_bias, bias_initializer="glorot_uniform")
    theirs = keras.layers.Conv2D(32, kernel, strides=strides, use_bias=use_bias)
    ours.build((4, 8, 8, 16))
    theirs.build((4, 8, 8, 16))
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def _step(layer, x, weights, training: bool = True):
    """(outputs, input gradient, kernel (and bias) gradient) of sum(outputs * weights), and the traced op types."""

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
        return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]

    values = [np.asarray(tf.cast(v, tf.float32), dtype=np.float64) for v in step(x)]
    return values, {op.type for op in step.get_concrete_function(x).graph.get_operations()}


def test_a_pointwise_training_step_takes_its_kernel_gradient_from_one_matmul(bf16_policy, monkeypatch):
    """dW = X^T dY, to one bfloat16 rounding of the exact float64 product; the outputs and the input gradient are
    Keras' own, bit for bit."""
    monkeypatch.setattr(conv, "MATMUL_KERNEL_GRADIENT", True)
    rng = np.random.default_rng(0)
    ours, theirs = _pair()
    x = tf.cast(rng.normal(size=(4, 8, 8, 16)), tf.bfloat16)  # exact bfloat16 values on both sides
    dy = tf.cast(tf.cast(rng.normal(size=(4, 8, 8, 32)), tf.bfloat16), tf.float32)
    (y, dx, dk), ops = _step(ours, tf.cast(x, tf.float32), dy)
    (y_k, dx_k, dk_k), ops_k = _step(theirs, tf.cast(x, tf.float32), dy)
    assert "MatMul" in ops and "Conv2DBackpropFilter" not in ops
    assert "Conv2DBackpropFilter" in ops_k
    np.testing.assert_array_equal(y, y_k)
    np.testing.assert_array_equal(dx, dx_k)
    x64, dy64 = np.asarray(tf.cast(x, tf.float64)).reshape(-1, 16), np.asarray(dy, np.float64).reshape(-1, 32)
    exact = (x64.T @ dy64).reshape(1, 1, 16, 32)
    for grad in (dk, dk_k):
        np.testing.assert_allclose(grad, exact, rtol=BF16_STEP, atol=BF16_STEP * np.abs(exact).max())


@pytest.mark.parametrize(
    ("kernel", "strides", "use_bias", "policy", "training"),
    [
        (1, 1, False, "mixed_bfloat16", False),  # inference: the op the batch-norm fold looks for
        (3, 1, False, "mixed_bfloat16", True),  # not 1x1
        (1, 2, False, "mixed_bfloat16", True),  # strided
        (1, 1, True, "mixed_bfloat16", True),  # a bias: oneDNN sums its gradient in the weight-gradient pass
        (1, 1, False, "float32", True),  # float32: TensorFlow's op measured as fast
    ],
)
def test_other_convolutions_run_keras_own(kernel, strides, use_bias, policy, training, monkeypatch):
    monkeypatch.setattr(conv, "MATMUL_KERNEL_GRADIENT", True)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        ours, theirs = _pair(kernel, strides, use_bias)
        x = tf.random.stateless_normal((4, 8, 8, 16), seed=(1, 2))
        weights = tf.ones(ours.compute_output_shape((4, 8, 8, 16)))
        (y, *grads), ops = _step(ours, x, weights, training)
        (y_k, *grads_k), ops_k = _step(theirs, x, weights, training)
    finally:
        keras.config.set_dtype_policy(previous)
    assert ops == ops_k and "IdentityN" not in ops
    for a, b in zip([y, *grads], [y_k, *grads_k], strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_switch_off_keeps_tensorflows_gradient_op(bf16_policy, monkeypatch):
    monkeypatch.setattr(conv, "MATMUL_KERNEL_GRADIENT", False)
    ours, _ = _pair()
    _, ops = _step(ours, tf.random.stateless_normal((4, 8, 8, 16), seed=(3, 4)), tf.ones((4, 8, 8, 32)))
    assert "Conv2DBackpropFilter" in ops and "MatMul" not in ops


def test_the_builders_convolutions_are_ours_and_save_as_ours(tmp_path):
    import keras_cnn

    model = keras_cnn.create_model("densenet_bc", input_shape=(32, 32, 3), classes=10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 99 and all(type(layer) is Conv2D for layer in convs)  # L = 100: 99 convolutions, 1 dense
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert all(type(layer) is Conv2D for layer in reloaded.layers if isinstance(layer, keras.layers.Conv2D))
