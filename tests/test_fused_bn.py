"""The fused BatchNormalization computes what Keras' layer computes (Ioffe & Szegedy 2015, Algorithm 1, and
Keras' moving-average update with the biased batch variance), through TensorFlow's one fused kernel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn import onednn
from keras_cnn.layers import BatchNormalization, norm


def _pair(rng, channels: int, **kwargs):
    """Our layer and Keras' own with the same random gamma, beta and moving statistics."""
    ours, peer = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    weights = None
    for layer in (ours, peer):
        layer.build((None, 4, 4, channels))
        weights = weights or [
            rng.normal(1, 0.3, channels).astype("float32")
            if "variance" not in w.path
            else rng.uniform(0.5, 2, channels).astype("float32")
            for w in layer.weights
        ]
        layer.set_weights(weights)
    return ours, peer, weights


@pytest.mark.parametrize("epsilon", [1e-5, 1e-3])  # 1e-5 is below the 1.001e-5 that tf.nn.fused_batch_norm forces
def test_training_step_normalizes_by_the_batch_and_moves_statistics_as_keras(epsilon):
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, (6, 5, 5, 7)).astype("float32")
    ours, _, (gamma, beta, moving_mean, moving_var) = _pair(rng, 7, momentum=0.9, epsilon=epsilon)
    y = np.asarray(ours(x, training=True))
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased variance, as the paper normalizes
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + epsilon) + beta, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean.numpy(), 0.9 * moving_mean + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(ours.moving_variance.numpy(), 0.9 * moving_var + 0.1 * var, rtol=1e-5)
    y = np.asarray(ours(x, training=False))
    expected = gamma * (x - ours.moving_mean.numpy()) / np.sqrt(ours.moving_variance.numpy() + epsilon) + beta
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("channels", "size"),
    [(5, 3), (5, 4), (12, 4), (16, 3)],  # bfloat16: the float32 kernel, views of 16 and 4 positions, then the bf16 one
)
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_outputs_statistics_and_gradients_equal_keras_layer(policy, channels, size):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        rng = np.random.default_rng(1)
        ours, peer, _ = _pair(rng, channels, momentum=0.99, epsilon=1.001e-5)
        x = rng.normal(0, 1, (4, size, size, channels)).astype("float32")
        x += 3 * np.arange(size * size).reshape(1, size, size, 1) % 4  # positions differ in mean, as groups would
        x = tf.constant(x)
        grads = []
        for layer in (ours, peer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, "float32") ** 3)
            grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
            assert y.dtype == layer.compute_dtype
        tol = 1e-4 if policy == "float32" else 2e-2
        for g_ours, g_peer in zip(*grads, strict=True):
            np.testing.assert_allclose(g_ours, g_peer, rtol=tol, atol=tol * np.abs(g_peer).max())
        for ours_var, peer_var in zip(ours.non_trainable_weights, peer.non_trainable_weights, strict=True):
            np.testing.assert_allclose(ours_var.numpy(), peer_var.numpy(), rtol=1e-5)
        np.testing.assert_allclose(
            np.float32(ours(x, training=False)), np.float32(peer(x, training=False)), rtol=tol, atol=tol
        )
    finally:
        keras.config.set_dtype_policy(previous)


def _traced_ops(layer, *, training: bool, dtype: str = "float32", channels: int = 3, size: int = 4) -> list:
    """The ops of `layer` traced on a (2, size, size, channels) batch."""
    layer.build((None, size, size, channels))
    spec = tf.TensorSpec((2, size, size, channels), dtype)
    return tf.function(lambda x: layer(x, training=training)).get_concrete_function(spec).graph.get_operations()


def _op_types(layer, **kwargs) -> set[str]:
    return {op.type for op in _traced_ops(layer, **kwargs)}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("axis", [-1, 3])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_four_dimensional_channels_last_inputs_run_the_fused_kernel(training, axis, policy):
    """Channels last, named either way, in each dtype the kernel takes; float64 and axis 1 fall back."""
    ops = _traced_ops(BatchNormalization(axis=axis, dtype=policy), training=training)
    assert "FusedBatchNormV3" in {op.type for op in ops}
    moments = [op for op in ops if op.type == "Mean" and op.inputs[0].shape.rank == 4]
    assert not moments  # the kernel's statistics, not Keras' moments over the batch


@pytest.mark.parametrize(
    ("channels", "training", "policy", "fused"),
    [
        (127, False, "float32", True),
        (128, False, "float32", False),
        (128, True, "float32", True),
        (512, True, "float32", True),
        (128, False, "mixed_bfloat16", True),
        (2048, False, "mixed_bfloat16", True),
    ],
)
def test_float32_inference_on_128_channels_or_more_uses_keras_multiply_add(
    monkeypatch, channels, training, policy, fused
):
    """Wide float32 layers at inference under the rule (measured faster there on an AVX2 CPU: ResNet-50,
    DenseNet-BC); training stays fused, and so does bfloat16, whose kernel ran 1.5-2.5x faster than the
    multiply-add on 128-2048 channels. Without the rule (None) every width runs the kernel."""
    monkeypatch.setattr(norm, "WIDE", 128)
    assert (
        "FusedBatchNormV3" in _op_types(BatchNormalization(dtype=policy), training=training, channels=channels)
    ) is fused
    monkeypatch.setattr(norm, "WIDE", None)
    assert "FusedBatchNormV3" in _op_types(BatchNormalization(dtype=policy), training=training, channels=channels)


@pytest.mark.parametrize(
    ("flags", "wide"),
    [({"avx2", "fma"}, 128), ({"avx2", "avx512f", "avx512_bf16"}, None), (set(), 128)],
)
def test_the_wide_rule_holds_on_cpus_without_avx512_only(flags, wide):
    """Where it was measured (AVX2); with AVX-512 the kernel on whole blocks beat the multiply-add."""
    assert norm.wide_rule(frozenset(flags)) == wide
    assert norm.WIDE == norm.wide_rule(onednn.cpu_flags())  # this machine's rule


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    ("policy", "channels", "size", "kernel", "view_channels"),
    [
        ("mixed_bfloat16", 16, 4, "bfloat16", 16),
        ("mixed_bfloat16", 96, 4, "bfloat16", 96),
        ("mixed_bfloat16", 12, 4, "bfloat16", 48),
        ("mixed_bfloat16", 120, 4, "bfloat16", 240),
        ("mixed_bfloat16", 5, 4, "bfloat16", 80),
        ("mixed_bfloat16", 12, 3, "float32", 12),
        ("mixed_bfloat16", 5, 2, "float32", 5),
        ("float32", 16, 4, "float32", 16),
        ("float32", 12, 4, "float32", 48),
        ("float32", 132, 4, "float32", 528),
        ("float32", 12, 3, "float32", 12),
    ],
)
def test_off_the_16_channel_block_the_kernel_runs_on_a_view_of_whole_blocks(
    monkeypatch, policy, channels, size, kernel, view_channels, training
):
    """oneDNN's kernels are slow unless the channels fill blocks of 16: C channels at g = 16 / gcd(C, 16)
    positions at a time do; where the H*W positions do not split into such groups, a bfloat16 layer runs the
    float32 kernel and a float32 layer the kernel on its input as it is. The output keeps the layer's dtype."""
    monkeypatch.setattr(norm, "WIDE", None)  # float32 inference on 132 channels: the kernel, not the multiply-add
    layer = BatchNormalization(dtype=policy)
    dtype = layer.compute_dtype
    ops = _traced_ops(layer, training=training, dtype=dtype, channels=channels, size=size)
    kernels = [op for op in ops if op.type == "FusedBatchNormV3"]
    assert {op.get_attr("T").name for op in kernels} == {kernel}
    assert {op.inputs[0].shape[-1] for op in kernels} == {view_channels}
    fn = tf.function(lambda x: layer(x, training=training))
    assert fn(tf.ones((2, size, size, channels), dtype)).dtype == dtype


@pytest.mark.parametrize("wide", [128, None])
def test_wide_inference_computes_what_the_fused_kernel_computes(monkeypatch, wide):
    monkeypatch.setattr(norm, "WIDE", wide)
    rng = np.random.default_rng(3)
    ours, _, (gamma, beta, mean, var) = _pair(rng, 160, epsilon=1e-3)
    x = rng.normal(1, 2, (2, 4, 4, 160)).astype("float32")
    np.testing.assert_allclose(ours(x, training=False), gamma * (x - mean) / np.sqrt(var + 1e-3) + beta, atol=1e-4)


@pytest.mark.parametrize("axis, dtype", [(1, "float32"), (-1, "float64")])
def test_channels_first_and_float64_use_keras_computation(axis, dtype):
    assert "FusedBatchNormV3" not in _op_types(BatchNormalization(axis=axis, dtype=dtype), training=True, dtype=dtype)


def test_frozen_layer_and_other_ranks_fall_back_to_keras():
    rng = np.random.default_rng(2)
    ours, peer, _ = _pair(rng, 3)
    ours.trainable = peer.trainable = False  # fine-tuning: training=True still uses the moving statistics
    x = rng.normal(0, 1, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(ours(x, training=True), peer(x, training=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.moving_mean.numpy(), peer.moving_mean.numpy())
    dense = BatchNormalization()
    z = rng.normal(2, 3, (8, 6)).astype("float32")
    np.testing.assert_allclose(dense(z, training=True), (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-3), atol=1e-4)


def test_every_family_uses_the_fused_layer_and_it_saves():
    model = keras_cnn.create_model("resnet20", input_shape=(32, 32, 3))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 19 and all(type(layer) is BatchNormalization for layer in norms)
    config = keras.saving.serialize_keras_object(norms[0])
    assert config["registered_name"] == "keras_cnn>BatchNormalization"
    assert isinstance(keras.saving.deserialize_keras_object(config), BatchNormalization)


def test_a_masked_batch_is_normalized_by_its_unmasked_positions_as_keras_does():
    rng = np.random.default_rng(3)
    ours, peer, _ = _pair(rng, 3)
    x = rng.normal(2, 3, (2, 4, 4, 3)).astype("float32")
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2] = True  # half the positions; the statistics differ from the whole batch's
    y = np.asarray(ours(x, training=True, mask=mask))
    np.testing.assert_allclose(y, peer(x, training=True, mask=mask), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.moving_mean.numpy(), peer.moving_mean.numpy(), rtol=1e-6)
    kept = x[mask]
    np.testing.assert_allclose(
        y[mask],
        (kept - kept.mean(0)) / np.sqrt(kept.var(0) + 1e-3) * ours.gamma.numpy() + ours.beta.numpy(),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("scale, center", [(False, True), (True, False), (False, False)])
def test_without_gamma_or_beta_it_normalizes_as_keras_layer(scale, center):
    """scale=False: gamma is 1; center=False: beta is 0 (and the layer has no such variable)."""
    rng = np.random.default_rng(4)
    ours, peer, _ = _pair(rng, 3, scale=scale, center=center)
    x = rng.normal(1, 2, (2, 4, 4, 3)).astype("float32")
    for training in (True, False):
        np.testing.assert_allclose(ours(x, training=training), peer(x, training=training), rtol=1e-5, atol=1e-5)
    assert len(ours.trainable_weights) == scale + center


def test_integer_images_are_normalized_as_keras_layer_does():
    """Keras casts only floating inputs before `call`; raw uint8 pixels reach the layer as they are."""
    rng = np.random.default_rng(5)
    ours, peer, _ = _pair(rng, 3)
    x = rng.integers(0, 256, (2, 4, 4, 3)).astype("uint8")
    for training in (True, False):
        y = ours(x, training=training)
        assert y.dtype == "float32"
        np.testing.assert_allclose(y, peer(x, training=training), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 1, 1, 3), (1, 1, 3, 3)])
def test_one_two_and_three_values_per_channel_move_the_variance_as_keras(shape):
    """The kernel reports the unbiased variance, n / (n - 1) times the biased one Keras moves by: for n = 1
    it divides by zero, and the moving variance must still take the biased 0."""
    rng = np.random.default_rng(6)
    ours, peer, _ = _pair(rng, 3, momentum=0.5)
    x = rng.normal(0, 2, shape).astype("float32")
    ours(x, training=True), peer(x, training=True)
    np.testing.assert_allclose(ours.moving_variance.numpy(), peer.moving_variance.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.moving_mean.numpy(), peer.moving_mean.numpy(), rtol=1e-5)
