"""fold_batchnorm: an inference copy with each batch norm after a convolution folded into it (Ioffe & Szegedy
2015, Alg. 2: in inference y = gamma * (x - mean) / sqrt(var + eps) + beta, an affine map per channel)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn.io import load_model
from keras_cnn.layers import BatchNormalization, norm
from tests.helpers import live_ops, randomize_statistics


def norms(model: keras.Model) -> int:
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


# (name, input shape, batch norms left after folding): which batch norms follow a convolution is the paper's.
CASES = [
    ("resnet20", (32, 32, 3), 0),  # He et al. 2016: every convolution is followed by its batch norm (Conv2D)
    ("mobilenet", (32, 32, 3), 0),  # Howard et al. 2017, Fig. 3: depthwise and pointwise each then BN (Depthwise)
    ("inception_v3", (75, 75, 3), 0),  # every conv_bn; keras.applications' BN has no gamma (scale=False)
    # Chollet 2017, Fig. 5: separable convolutions, each then BN (SeparableConv2D); left are the BNs summed into a
    # tensor that the next block's ReLU and its shortcut both read (norm._summed_for_two): the 1x1 shortcuts of entry
    # blocks 2-4 (their separable branch is max-pooled before the sum) and the last BN of middle blocks 5-12.
    ("xception", (71, 71, 3), 3 + 8),
    # Huang et al. 2017, DenseNet-BC-100 (k=12): BN-ReLU-Conv(1x1)-BN-ReLU-Conv(3x3) in 3 blocks of 16 layers;
    # only the BN after each 1x1 follows a convolution: 3 x 16 + 2 transitions + the final BN stay.
    ("densenet_bc", (32, 32, 3), 3 * 16 + 2 + 1),
]


@pytest.mark.parametrize(("name", "shape", "left"), CASES, ids=[case[0] for case in CASES])
def test_a_folded_model_computes_what_the_built_one_does_in_inference(name, shape, left):
    rng = np.random.default_rng(40)
    model = keras_cnn.create_model(name, input_shape=shape, classes=10)
    randomize_statistics(model, rng)
    folded = keras_cnn.fold_batchnorm(model)
    assert norms(folded) == left and norms(model) > left
    x = rng.random((3, *shape), dtype=np.float32)
    built = model(x, training=False)  # eager: each batch norm as its own op, not folded in the graph
    np.testing.assert_allclose(folded.predict_on_batch(x), built, rtol=1e-4, atol=1e-6)
    assert folded.count_params() < model.count_params()  # 4 statistics per channel out, at most 1 bias in
    assert [layer.name for layer in folded.layers] == [layer.name for layer in model.layers]


def test_a_folded_mixed_bfloat16_model_keeps_its_policy():
    rng = np.random.default_rng(41)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras_cnn.create_model("resnet20", input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    finally:
        keras.config.set_dtype_policy(previous)
    randomize_statistics(model, rng)
    folded = keras_cnn.fold_batchnorm(model)
    conv = folded.get_layer(next(layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)))
    assert (conv.compute_dtype, conv.variable_dtype, conv.use_bias) == ("bfloat16", "float32", True)
    x = rng.random((4, 32, 32, 3), dtype=np.float32)
    built = np.asarray(model(x, training=False), "float32")  # eager: each batch norm as its own op
    served = folded.predict_on_batch(x).astype("float32")
    assert np.abs(served - built).max() <= 0.05 * np.abs(built).max()  # bfloat16 keeps 8 bits of mantissa


def test_only_a_convolution_read_by_its_batch_norm_alone_is_folded():
    rng = np.random.default_rng(42)
    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(4, 3, name="shared")(inputs)  # read by a batch norm and by the second output
    alone = keras.layers.Conv2D(4, 3, name="alone")(inputs)
    activated = keras.layers.Conv2D(4, 3, activation="relu", name="activated")(inputs)  # BN(relu(conv))
    outputs = [
        keras.layers.BatchNormalization(name="bn_shared")(shared),
        keras.layers.Flatten()(shared),
        keras.layers.BatchNormalization(name="bn_alone")(alone),
        keras.layers.BatchNormalization(name="bn_activated")(activated),
    ]
    model = keras.Model(inputs, outputs)
    randomize_statistics(model, rng)
    assert keras_cnn.fold.foldable_pairs(model) == {"alone": "bn_alone"}
    folded = keras_cnn.fold_batchnorm(model)
    x = rng.random((2, 8, 8, 3), dtype=np.float32)
    for ours, theirs in zip(folded.predict_on_batch(x), model.predict_on_batch(x), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    for kept in ("bn_shared", "bn_activated"):
        assert isinstance(folded.get_layer(kept), keras.layers.BatchNormalization)
    assert not isinstance(folded.get_layer("bn_alone"), keras.layers.BatchNormalization)


def test_a_folded_model_saves_and_loads_safely(tmp_path):
    rng = np.random.default_rng(43)
    model = keras_cnn.create_model("resnet20", input_shape=(32, 32, 3), classes=10)
    randomize_statistics(model, rng)
    folded = keras_cnn.fold_batchnorm(model)
    folded.save(tmp_path / "folded.keras")
    loaded = load_model(tmp_path / "folded.keras")  # safe_mode: no code is deserialized
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), folded.predict_on_batch(x))


def test_a_sequential_model_folds_and_a_subclassed_one_is_refused_by_name():
    rng = np.random.default_rng(44)
    layers = [
        keras.Input((8, 8, 3)),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        keras.layers.BatchNormalization(),
    ]
    sequential = keras.Sequential([*layers, keras.layers.ReLU()])
    randomize_statistics(sequential, rng)
    folded = keras_cnn.fold_batchnorm(sequential)
    assert [type(layer).__name__ for layer in folded.layers] == ["DepthwiseConv2D", "Folded", "ReLU"]
    x = rng.random((2, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(folded.predict_on_batch(x), sequential.predict_on_batch(x), rtol=1e-5, atol=1e-6)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.conv, self.norm = keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()

        def call(self, inputs):
            return self.norm(self.conv(inputs))

    model = Subclassed()
    model(x)
    with pytest.raises(TypeError, match="functional or Sequential model; 'sub' is a subclassed Subclassed"):
        keras_cnn.fold_batchnorm(model)
    with pytest.raises(TypeError, match=r"takes a keras\.Model; received a Conv2D"):
        keras_cnn.fold_batchnorm(keras.layers.Conv2D(4, 3))


# In a traced inference graph our BatchNormalization folds itself into the convolution op before it
# (keras_cnn.layers.norm.folded_into_conv); Keras' own layer, normalizing as the paper does, is the reference.
CONVS = {
    "conv": lambda: keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="conv"),
    "conv_bias_strided": lambda: keras.layers.Conv2D(6, 3, strides=2, name="conv"),
    "depthwise": lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="conv"),
    "separable": lambda: keras.layers.SeparableConv2D(6, 3, name="conv"),
}


def conv_norm(conv: str, norm_class, rng, *, second_reader: bool = False) -> keras.Model:
    """Input -> convolution -> batch norm -> ReLU (and the convolution's output flattened as a second output)."""
    inputs = keras.Input((7, 7, 4))
    mapped = CONVS[conv]()(inputs)
    outputs = keras.layers.ReLU()(norm_class(name="bn", epsilon=1e-3)(mapped))
    model = keras.Model(inputs, [outputs, keras.layers.Flatten()(mapped)] if second_reader else outputs)
    for weight in model.weights:  # the same draws for ours and Keras' (same layers, same order)
        weight.assign(rng.normal(0, 0.5, weight.shape) if weight.trainable else weight)
    randomize_statistics(model, rng)
    return model


def on_maps(ops: list, kind: str, batch: int = 3) -> int:
    """How many of `ops` whose type contains `kind` take the batch's feature maps (not weights) as input."""
    return sum(kind in op.type and op.inputs[0].shape[0] == batch for op in ops)


def twin_models(conv: str, policy: str, seed: int, **kwargs) -> tuple[keras.Model, keras.Model]:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return conv_norm(conv, BatchNormalization, np.random.default_rng(seed), **kwargs), conv_norm(
            conv, keras.layers.BatchNormalization, np.random.default_rng(seed), **kwargs
        )
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("conv", CONVS)
def test_a_traced_inference_graph_folds_the_batch_norm_into_its_convolution(conv, policy):
    ours, keras_own = twin_models(conv, policy, 45)
    x = tf.constant(np.random.default_rng(46).normal(1, 1, (3, 7, 7, 4)).astype("float32"))
    traced = tf.function(lambda x: ours(x, training=False))
    ops = live_ops(traced, x)
    assert on_maps(ops, "BatchNorm") == 0  # what is left normalizes weights (norm.folded_into_conv)
    assert on_maps(ops, "Conv2D") + on_maps(ops, "DepthwiseConv2dNative") == (2 if conv == "separable" else 1)
    expected = keras_own(x, training=False).numpy().astype("float32")
    tolerance = 1e-5 if policy == "float32" else 2**-6  # bfloat16 keeps 8 bits of mantissa
    scale = np.abs(expected).max()
    for got in (traced(x), ours.predict_on_batch(x), ours(x, training=False)):  # traced, Keras' predict, eager
        np.testing.assert_allclose(np.asarray(got, "float32"), expected, atol=tolerance * scale)


@pytest.mark.parametrize("conv", ["conv_bias_strided", "depthwise"])
def test_a_folded_inference_graph_has_the_gradients_of_the_batch_norm(conv):
    """Fine-tuning with batch norms in inference mode (frozen statistics) trains through the folded graph."""
    ours, keras_own = twin_models(conv, "float32", 47)
    x = tf.constant(np.random.default_rng(48).normal(1, 1, (3, 7, 7, 4)).astype("float32"))

    def gradients(model):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(model(x, training=False)))  # sin: every output gets its own weight
        return tape.gradient(loss, [x, *model.trainable_weights])

    assert on_maps(live_ops(tf.function(lambda x: ours(x, training=False)), x), "BatchNorm") == 0
    got, expected = tf.function(lambda: gradients(ours))(), gradients(keras_own)
    assert len(got) == 5  # x, the kernel, its bias, gamma, beta
    for ours_grad, keras_grad in zip(got, expected, strict=True):
        np.testing.assert_allclose(ours_grad, keras_grad, rtol=1e-4, atol=1e-5 * np.abs(keras_grad).max())


def test_a_convolution_read_by_another_layer_too_keeps_its_batch_norm_in_the_graph():
    ours, keras_own = twin_models("conv", "float32", 49, second_reader=True)
    x = tf.constant(np.random.default_rng(50).normal(1, 1, (3, 7, 7, 4)).astype("float32"))
    traced = tf.function(lambda x: ours(x, training=False))
    ops = live_ops(traced, x)
    assert on_maps(ops, "FusedBatchNormV3") == 1 and on_maps(ops, "Conv2D") == 1  # the convolution runs once
    for got, expected in zip(traced(x), keras_own(x, training=False), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_fold_in_graph_off_keeps_the_batch_norm_op():
    ours, _ = twin_models("conv", "float32", 51)
    x = tf.constant(np.zeros((1, 7, 7, 4), "float32"))
    previous, norm.FOLD_IN_GRAPH = norm.FOLD_IN_GRAPH, False
    try:
        ops = live_ops(tf.function(lambda x: ours(x, training=False)), x)
    finally:
        norm.FOLD_IN_GRAPH = previous
    assert on_maps(ops, "FusedBatchNormV3", batch=1) == 1


def residual_sum(read_twice: bool) -> keras.Model:
    """conv -> BN, plus the input, -> ReLU; with `read_twice`, the sum also goes on to a second sum."""
    inputs = keras.Input((7, 7, 4))
    summed = keras.layers.Add()([BatchNormalization(name="bn")(keras.layers.Conv2D(4, 1)(inputs)), inputs])
    activated = keras.layers.Activation("relu")(summed)
    outputs = keras.layers.Add()([keras.layers.Conv2D(4, 1)(activated), summed]) if read_twice else activated
    model = keras.Model(inputs, outputs)
    randomize_statistics(model, np.random.default_rng(52))
    return model


def test_a_batch_norm_summed_into_a_tensor_that_an_activation_and_another_layer_read_stays_in_the_graph():
    """Xception's residual sums: TensorFlow's remapper would fuse convolution, bias, sum and ReLU although the sum
    has another reader, fail, and skip its pass for the whole graph; so that batch norm is not folded."""
    x = tf.constant(np.random.default_rng(53).normal(1, 1, (3, 7, 7, 4)).astype("float32"))
    for read_twice, unfolded in ((True, 1), (False, 0)):
        model = residual_sum(read_twice)
        assert on_maps(live_ops(tf.function(lambda x, m=model: m(x, training=False)), x), "BatchNorm") == unfolded
        np.testing.assert_allclose(model.predict_on_batch(x), model(x, training=False), rtol=1e-5, atol=1e-5)


def test_a_weight_folded_xception_leaves_tensorflows_graph_optimizer_working():
    """With every batch norm folded, TensorFlow's remapper failed on Xception's residual sums ("remapper failed:
    ... Mutation::Apply error") and skipped its pass for the whole graph, as served from the SavedModel export."""
    script = (
        "import numpy as np, keras_cnn\n"
        "m = keras_cnn.fold_batchnorm(keras_cnn.create_model('xception', input_shape=(71, 71, 3), classes=10))\n"
        "m.predict_on_batch(np.ones((1, 71, 71, 3), 'float32'))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}  # the tests silence TensorFlow's log; this one reads it
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "meta_optimizer" in result.stderr or "oneDNN" in result.stderr  # the log is on
    assert "remapper failed" not in result.stderr
